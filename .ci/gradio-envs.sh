#!/usr/bin/env bash
# Builds the venvs tests/webui/test_ui_gradio_versions.py uses to check the Wan tab builder on the
# hosts' gradio: .venv-gradio3 (A1111 v1.10.1) and .venv-gradio4 (Forge), with the hosts'
# own pins for what gradio pulls in (requirements_versions.txt of each WebUI). No torch:
# building the UI must not need it. Safe to re-run: an existing, working venv is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

# Both WebUIs run on Python 3.10; fall back to the default python3 where it is absent.
find_python() {
  local c
  for c in python3.10 $(command -v pyenv >/dev/null && ls -d "$(pyenv root)"/versions/3.10*/bin/python3.10 2>/dev/null); do
    if "$c" -c "" 2>/dev/null; then echo "$c"; return; fi
  done
  echo python3
}
PY=$(find_python)

make_env() {  # make_env DIR gradio==VERSION PIN...
  local dir=$1 want=${2#gradio==}; shift
  if [ "$("$dir/bin/python" -c 'import gradio; print(gradio.__version__)' 2>/dev/null)" = "$want" ]; then
    echo "$dir: ready (gradio $want)"
    return
  fi
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  if ! "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" > "$dir/pip.log" 2>&1; then
    grep -v '^WARNING: Location' "$dir/pip.log" | tail -20
    rm -rf "$dir"
    return 1
  fi
  echo "$dir: gradio $("$dir/bin/python" -c 'import gradio; print(gradio.__version__)')"
}

# A1111 v1.10.1 requirements_versions.txt, plus what a real A1111 install resolves to for the
# packages it leaves unpinned (pydantic 1 for fastapi 0.94, huggingface_hub < 1 for gradio 3).
make_env .venv-gradio3 gradio==3.41.2 fastapi==0.94.0 httpx==0.24.1 numpy==1.26.2 Pillow==9.5.0 \
  pydantic==1.10.27 huggingface_hub==0.36.2 tqdm==4.66.1 uvicorn==0.54.0
# Forge requirements_versions.txt.
make_env .venv-gradio4 gradio==4.40.0 fastapi==0.104.1 httpx==0.24.1 numpy==1.26.2 Pillow==9.5.0 \
  pydantic==2.8.2 huggingface_hub==0.26.2 tqdm==4.66.1 uvicorn==0.54.0
