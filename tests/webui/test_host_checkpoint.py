"""The host's SD checkpoint around a Wan job (webui.host_checkpoint), against small real modules
shaped like each host's ``modules.sd_models``: A1111 (None until a checkpoint loads, unload and
reload), Forge Neo (a placeholder model, no ``reload_model_weights``) and a reload that fails."""
from __future__ import annotations

import importlib.util
import textwrap

from deforum_wan.webui.host_checkpoint import HostCheckpoint

A1111 = """
calls = []

class SdModelData:
    def __init__(self):
        self.sd_model = None

model_data = SdModelData()

class Checkpoint:
    sd_checkpoint_info = "v1-5-pruned-emaonly.safetensors"

def load():
    model_data.sd_model = Checkpoint()

def unload_model_weights(sd_model=None, info=None):
    calls.append("unload")

def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    calls.append("reload")
"""

# Neo: the model data starts as a placeholder object, and reload_model_weights is gone.
NEO = """
calls = []

class FakeInitialModel:
    def __init__(self):
        self.cond_stage_model = None

class SdModelData:
    def __init__(self):
        self.sd_model = FakeInitialModel()

model_data = SdModelData()

class Checkpoint:
    sd_checkpoint_info = "wan2.1_t2v_1.3B_fp16.safetensors"

def load():
    model_data.sd_model = Checkpoint()

def unload_model_weights(sd_model=None, info=None):
    calls.append("unload")
"""

BROKEN_RELOAD = A1111 + """
def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    raise RuntimeError("checkpoint file moved")
"""


def module(tmp_path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def job(checkpoint: HostCheckpoint) -> None:
    checkpoint.unload()
    checkpoint.reload()


def test_a1111_unloads_a_loaded_checkpoint_and_reloads_it(tmp_path, capsys):
    sd_models = module(tmp_path, "a1111_sd_models", A1111)
    checkpoint = HostCheckpoint(sd_models)
    job(checkpoint)
    assert sd_models.calls == []  # no checkpoint loaded yet: nothing to unload or reload
    sd_models.load()
    job(checkpoint)
    assert sd_models.calls == ["unload", "reload"]
    job(HostCheckpoint(sd_models, enabled=lambda: False))  # the wan_unload_sd option off
    assert sd_models.calls == ["unload", "reload"]
    assert capsys.readouterr().err == ""


def test_neo_placeholder_is_left_alone_and_a_missing_reload_is_not_called(tmp_path, capsys):
    sd_models = module(tmp_path, "neo_sd_models", NEO)
    checkpoint = HostCheckpoint(sd_models)
    job(checkpoint)
    assert sd_models.calls == []  # the placeholder is no checkpoint
    sd_models.load()
    job(checkpoint)
    assert sd_models.calls == ["unload"]  # Neo loads its checkpoint again when it needs it
    assert checkpoint.unloaded is False and capsys.readouterr().err == ""


def test_a_failing_reload_is_one_line_without_a_traceback(tmp_path, capsys):
    sd_models = module(tmp_path, "broken_sd_models", BROKEN_RELOAD)
    sd_models.load()
    checkpoint = HostCheckpoint(sd_models)
    job(checkpoint)
    err = capsys.readouterr().err
    assert err == ("deforum-wan: the SD checkpoint was not reloaded (RuntimeError: checkpoint file moved);"
                   " it loads on the next generation\n")
    job(checkpoint)
    assert sd_models.calls == ["unload", "unload"]
