#!/usr/bin/env bash
# The GPU report on full-size random Wan models: for a bare GPU machine with no network and no
# weights, in one short run (about 8-10 minutes on an H100/H200; BUDGET_S stops starting steps).
#
#   bash benchmarks/gpu_wheels.sh          # here, once: the wheels it lacks, into .whl/
#   bash benchmarks/run_gpu_random.sh OUT  # there, carrying .whl: the whole device command is
# device command: bash benchmarks/run_gpu_random.sh "$OUT"
#
# Steps (each bench prints ratios measured side by side in its own run):
#   1. T2V-1.3B, one SIZE x FRAMES window: every preset and quality with float8 weight storage (time,
#      speedup, passes MagCache skips, peak VRAM), and the warm pair with VACE-1.3B with and without
#      the shared encoder and VAE
#   2. T2V-1.3B: our loop over bare diffusers calls on the same window
#   3. TI2V-5B at TI2V_SIZE x TI2V_FRAMES, quality
#   4. T2V-1.3B's transformer as a bf16 folder, an fp8 file, GGUF Q8_0 and Q4_K, written here from the
#      random model: load time, peak RSS while loading, time per step, peak VRAM (FORMAT_STEPS steps)
#   5. drift: bench --drift, one still T2V-1.3B shot of DRIFT_WINDOWS windows per wan_color_match
#      (off, deforum, lab): random weights say nothing about Wan's drift; the row is its cost, the
#      time per window of rendering, of the drift measure and of the colour correction (only
#      where 120 s of the budget are left, and stopped at 120 s)
#   6. the official backend's first window, or its exact failure
# Writes OUT/<date>-<gpu>-random.json and .md (commit them to benchmarks/results/) and each step's
# JSON and log. Environment: WHEELS (.whl), PYTHON (python3), BUDGET_S (480), SIZE (832x480), FRAMES
# (81), STEPS (10: per-step figures scale to the 50 of quality), TI2V_SIZE (1280x704), TI2V_FRAMES
# (121), TI2V_STEPS (4), FORMAT_STEPS (2), PRESETS (all,quality+wan_layerwise_fp8=true), DRIFT_WINDOWS (3),
# DRIFT_STEPS (2), ALLOW_CPU=1 (runs on the CPU at the scaled architecture).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: run_gpu_random.sh OUTDIR}
mkdir -p "$out"
PY=${PYTHON:-python3}
start=$SECONDS
if ! "$PY" -c 'import diffusers, imageio_ffmpeg, gguf' 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/deforum-wan-site \
        "${WHEELS:-.whl}"/*.whl || exit 1
    export PYTHONPATH="/tmp/deforum-wan-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/scripts:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -z "${ALLOW_CPU:-}" ]; then
    "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU (ALLOW_CPU=1 runs scaled)")' || exit 1
fi
case=(--random-weights --window --size "${SIZE:-832x480}" --frames "${FRAMES:-81}" --steps "${STEPS:-10}" --repeat 1)
step() {  # [RESERVE=S] [LIMIT=S] step NAME ARGS...: one bench, unless the budget is spent (or lacks S)
    local name=$1; shift
    if (( SECONDS - start + ${RESERVE:-0} > ${BUDGET_S:-480} )); then
        echo "$name: skipped (budget spent)" | tee "$out/$name.skipped"; return
    fi
    echo "== $name ($(( SECONDS - start )) s)"
    ${LIMIT:+timeout "$LIMIT"} "$PY" -m deforum_wan bench "$@" --json-file "$out/$name.json" > "$out/$name.log" 2>&1 \
        || echo "$name: failed, see $name.log"
    tail -n 25 "$out/$name.log"
}
step t2v-presets --model wan2.1-t2v-1.3b "${case[@]}" --preset "${PRESETS:-all,quality+wan_layerwise_fp8=true}" --presets-only --warmup 1 --pair
step t2v-loop --model wan2.1-t2v-1.3b "${case[@]}" --skip-rss
step ti2v --model wan2.2-ti2v-5b --random-weights --window --size "${TI2V_SIZE:-1280x704}" --frames "${TI2V_FRAMES:-121}" \
    --steps "${TI2V_STEPS:-4}" --repeat 1 --preset quality --presets-only --warmup 1
step formats --model wan2.1-t2v-1.3b "${case[@]:0:6}" --steps "${FORMAT_STEPS:-2}" --formats
# the drift row (bench's short 1-second windows) only where 2 minutes of the budget are left, and
# never longer: the script stays under BUDGET_S plus the official step
RESERVE=120 LIMIT=120 step drift --model wan2.1-t2v-1.3b --random-weights --drift --windows "${DRIFT_WINDOWS:-3}" --size "${SIZE:-832x480}" \
    --steps "${DRIFT_STEPS:-2}"
echo "== official ($(( SECONDS - start )) s)"
"$PY" -m deforum_wan bench official "$out/official.json" "${SIZE:-832x480}" > "$out/official.log" 2>&1
tail -n 5 "$out/official.log"
"$PY" -m deforum_wan bench report "$out" && cat "$out"/*-random.md
echo "done in $(( SECONDS - start )) s"
