"""Run by tests/test_download.py with a WebUI's own Python and huggingface_hub (no torch, no
pytest): the Wan tab's Download code on the repo tests/hub_server.py serves. Prints one JSON line.

Usage: python webui_download_check.py MODELS_DIR REPO MODE, MODE one of
  go    start, and wait for the download to end;
  stop  start, and press Stop download once the bar shows some bytes but not all;
  say   start only (what the tab says when it cannot start).
"""
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import huggingface_hub

from deforum_wan.models.registry import MODELS, get_model
from deforum_wan.webui.downloads import Downloads

models, repo, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
spec = dataclasses.replace(get_model("wan2.1-t2v-1.3b"), id="served-t2v", diffusers_repo=repo,
                           continue_with=None, continue_with_480p=None)
MODELS[spec.id] = spec
downloads = Downloads(models)
said = downloads.start(spec.id)
bars, stopped = [], None
deadline = time.monotonic() + 60
while mode != "say" and downloads.running and time.monotonic() < deadline:
    bar = downloads.html()
    bars.append(bar)
    m = re.search(r'<progress value="(\d+)" max="(\d+)"', bar)
    if mode == "stop" and stopped is None and m and 0 < int(m[1]) < int(m[2]):
        stopped = downloads.stop()
    time.sleep(0.05)
print(json.dumps({"hub": huggingface_hub.__version__, "said": said, "bars": bars, "stopped": stopped,
                  "running": downloads.running, "final": downloads.html()}))
