#!/usr/bin/env bash
# wan_camera guide's free/lock shares, calibrated on this machine's CUDA GPU with real weights:
# each Deforum settings file given is rendered (its camera and prompts, 832x480, 49 frames,
# Wan2.1 T2V-1.3B continued by VACE-1.3B for the vace row) with wan_camera off, guide at its
# defaults, guide at every GRID pair and vace, side by side (bench --camera). Per file:
# benchmarks/results/<date>-<gpu>-camera-<file>.json and .md: time, camera adherence (px and
# degrees between OpenCV's motion and Deforum's path) and PSNR/SSIM against the uncamera'd
# render. The defaults (config/planner.py GUIDE_FREE, GUIDE_LOCK) are set from these tables:
# the pair with the lowest px error whose SSIM against off stays at or above 0.6.
#
#   benchmarks/camera_calibration.sh FILE [FILE ...]
#
# Needs: the CUDA build of torch and the weights (python -m deforum_wan download
# wan2.1-t2v-1.3b wan2.1-vace-1.3b). Environment: PYTHON (default python), MODELS_DIR,
# GRID (default below), FRAMES (49), STEPS (30), SIZE (832x480).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 SETTINGS_FILE [SETTINGS_FILE ...]" >&2; exit 2; }
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "camera_calibration.sh needs a CUDA GPU")'
gpu=$("$PY" -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-"))')
grid=${GRID:-0.0:0.05,0.02:0.05,0.02:0.1,0.04:0.1,0.04:0.2,0.08:0.2,0.1:0.3}
models=()
if [ -n "${MODELS_DIR:-}" ]; then models=(--models-dir "$MODELS_DIR"); fi
mkdir -p benchmarks/results
for file in "$@"; do
    name=$(basename "${file%.*}" | tr -c 'A-Za-z0-9_-' '-' | sed 's/-*$//')
    out="benchmarks/results/$(date +%Y-%m-%d)-$gpu-camera-$name"
    "$PY" -m deforum_wan bench --camera --settings "$file" --model wan2.1-t2v-1.3b --vace-model wan2.1-vace-1.3b \
        --size "${SIZE:-832x480}" --frames "${FRAMES:-49}" --steps "${STEPS:-30}" --repeat 1 --grid "$grid" \
        "${models[@]}" --json-file "$out.json" --md "$out.md"
    echo "wrote $out.json and $out.md"
done
