"""The host's SD checkpoint around a Wan job: unloaded before (its memory goes to Wan), put back
after, asking the host's ``modules.sd_models`` what it can do rather than assuming A1111's.

A1111 v1.10 keeps ``model_data.sd_model`` None until a checkpoint loads and has
``unload_model_weights``/``reload_model_weights``; Forge starts it as a placeholder
(``FakeInitialModel``) and loads checkpoints on demand; Forge Neo has no
``reload_model_weights`` at all. Only a real checkpoint (one with ``sd_checkpoint_info``) is
unloaded, only one this unloaded is reloaded, and a failure is one line in the console."""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Callable


class HostCheckpoint:
    def __init__(self, sd_models: ModuleType, enabled: Callable[[], bool] = lambda: True, log=None):
        self.sd_models = sd_models
        self.enabled = enabled
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.unloaded = False

    def loaded(self) -> bool:
        """A real checkpoint is in memory (``model_data.sd_model``: ``shared.sd_model`` would load one)."""
        model = getattr(getattr(self.sd_models, "model_data", None), "sd_model", None)
        return getattr(model, "sd_checkpoint_info", None) is not None

    def unload(self) -> None:
        unload = getattr(self.sd_models, "unload_model_weights", None)
        if not (callable(unload) and self.enabled() and self.loaded()):
            return
        try:
            unload()
        except Exception as exc:
            self.log(f"deforum-wan: the SD checkpoint stays loaded ({type(exc).__name__}: {exc})")
            return
        self.unloaded = True

    def reload(self) -> None:
        """Put back what ``unload`` took; a host without ``reload_model_weights`` (Forge Neo)
        loads its checkpoint itself when it next needs one."""
        if not self.unloaded:
            return
        self.unloaded = False
        reload = getattr(self.sd_models, "reload_model_weights", None)
        if not callable(reload):
            return
        try:
            reload()
        except Exception as exc:
            self.log(f"deforum-wan: the SD checkpoint was not reloaded ({type(exc).__name__}: {exc});"
                     " it loads on the next generation")
