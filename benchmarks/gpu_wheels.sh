#!/usr/bin/env bash
# Wheels a bare GPU machine lacks for run_gpu_random.sh (it has torch, transformers, accelerate,
# safetensors, peft, opencv, huggingface_hub; gguf reads and writes the GGUF rows' files), for its Python 3.12 on x86-64, into .whl/ (ignored
# by git; carried along with the command). imageio-ffmpeg 0.5.1: its ffmpeg is older than the one
# requirements.txt pins, but its wheel (27 MB) fits a 64 MiB carry and 0.8.1's (68 MB) does not.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux2010_x86_64 --platform manylinux1_x86_64 -d .whl \
    diffusers==0.42.1 importlib_metadata==8.7.0 imageio-ffmpeg==0.5.1 gguf==0.19.0
du -sh .whl
