#!/usr/bin/env bash
# The speed and memory targets measured on this machine's CUDA GPU, Wan2.1 T2V-1.3B, one 832x480x81 window at
# the model's 50 steps, in two runs (each fits a 10-minute slot on an H100):
#   1. our loop against bare diffusers calls -> benchmarks/results/<date>-<gpu>-loop.json
#   2. every speed preset -> benchmarks/results/<date>-<gpu>.json (bench --json) and .md (the
#      table and the targets, with the GPU name).
# STEP=loop or STEP=presets runs one of them.
#
# Needs: the CUDA build of torch, the weights (python -m deforum_wan download wan2.1-t2v-1.3b),
# optionally sageattention / flash-attn / triton for the fast and balanced presets.
# Environment: PYTHON (default python), MODELS_DIR (else DEFORUM_WAN_MODELS_DIR or the default),
# REPEAT (timed runs per variant, default 1), PRESETS (default all), STEP (loop | presets; default both).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}"

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "run_gpu.sh needs a CUDA GPU")'
gpu=$("$PY" -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-"))')
out="benchmarks/results/$(date +%Y-%m-%d)-$gpu"
mkdir -p benchmarks/results

models=()
if [ -n "${MODELS_DIR:-}" ]; then models=(--models-dir "$MODELS_DIR"); fi
case="--model wan2.1-t2v-1.3b --window --size 832x480 --frames 81"
if [ "${STEP:-loop}" != presets ]; then
    # shellcheck disable=SC2086
    "$PY" -m deforum_wan bench $case --repeat "${REPEAT:-1}" "${models[@]}" --json > "$out-loop.json.tmp"
    mv "$out-loop.json.tmp" "$out-loop.json"
    "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print("loop/bare =", r["loop_over_bare"],
"(%s s / %s s); target:" % (r["loop_s"], r["bare_diffusers_s"]), r["targets"]["loop_over_bare"])' "$out-loop.json"
    echo "wrote $out-loop.json"
fi
if [ "${STEP:-presets}" != loop ]; then
    # shellcheck disable=SC2086
    "$PY" -m deforum_wan bench $case --preset "${PRESETS:-all}" --presets-only --repeat "${REPEAT:-1}" \
        --warmup 1 "${models[@]}" --json --md "$out.md" > "$out.json.tmp"
    mv "$out.json.tmp" "$out.json"
    cat "$out.md"
    echo "wrote $out.json and $out.md"
fi
