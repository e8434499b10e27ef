#!/usr/bin/env bash
# Issue 7's measurement: every speed preset on Wan2.1 T2V-1.3B, one 832x480x81 window at the
# model's 50 steps, on this machine's CUDA GPU. Writes benchmarks/results/<date>-<gpu>.json
# (bench --json) and .md (the table, with the GPU name), then prints the table.
#
# Needs: the CUDA build of torch, the weights (python -m deforum_wan download wan2.1-t2v-1.3b),
# optionally sageattention / flash-attn / triton for the fast and balanced presets.
# Environment: PYTHON (default python), MODELS_DIR (else DEFORUM_WAN_MODELS_DIR or the default),
# REPEAT (timed runs per preset, default 1), PRESETS (default all).
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
"$PY" -m deforum_wan bench --model wan2.1-t2v-1.3b --window --size 832x480 --frames 81 \
    --preset "${PRESETS:-all}" --presets-only --repeat "${REPEAT:-1}" --warmup 1 \
    "${models[@]}" --json --md "$out.md" > "$out.json.tmp"
mv "$out.json.tmp" "$out.json"
cat "$out.md"
echo "wrote $out.json and $out.md"
