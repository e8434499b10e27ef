"""``render --models-dir DIR``: a ``wan_model`` file is looked for in DIR, the folder the command
names, not only in $DEFORUM_WAN_MODELS_DIR."""
from __future__ import annotations

import json
import shutil

from helpers import to_original_name

from deforum_wan.models.places import EXTRA_DIRS_ENV

RUN = {"max_frames": 5, "W": 32, "H": 32, "prompts": {"0": "a red fox"}, "steps": 2, "seed": 3,
       "cfg_scale_schedule": "0: (5)", "animation_mode": "None", "wan_model": "wan_tiny.safetensors"}


def test_render_finds_a_file_in_the_models_dir_it_is_given(tiny_models_dir, tmp_path, monkeypatch):
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file

    from deforum_wan.cli.main import main

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir / "tiny-random", models / "tiny-random")  # its other parts
    (models / "diffusion_models").mkdir()
    state = WanTransformer3DModel.from_pretrained(tiny_models_dir / "tiny-random" / "transformer").state_dict()
    save_file({to_original_name(k): v.to(torch.bfloat16) for k, v in state.items()},
              models / "diffusion_models" / "wan_tiny.safetensors")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(elsewhere))  # the file is not here
    monkeypatch.delenv(EXTRA_DIRS_ENV, raising=False)
    settings = tmp_path / "run.json"
    settings.write_text(json.dumps(RUN), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["render", str(settings), "--outdir", str(out), "--models-dir", str(models)]) == 0
    assert len(list(out.rglob("*.mp4"))) == 1
