"""The command line's one progress bar, drawn from render events (``deforum_wan.events``):
the denoising steps of one render or of a whole batch, with warnings and notes above it."""
from __future__ import annotations

import sys

from ..events import reduce


class ProgressBar:
    """``bar.event(key, event)`` for each event of the render named ``key``.

    Each render's progress is ``events.reduce`` of its events, from its ``planned`` or
    ``started`` event on; the total is the sum of their ``steps_total`` (a backend that runs
    its own step count corrects its window's share at its first step). ``enabled=False``
    draws nothing but still prints.
    """

    def __init__(self, desc: str, *, many: bool = False, enabled: bool = True):
        self.many = many
        self.renders: dict[str, dict] = {}  # key -> events.reduce state
        self.bar = None
        self.desc, self.enabled = desc, enabled  # the bar appears once it knows its total
        self._postfix = ""

    def event(self, key: str, event: dict) -> None:
        kind = event.get("event")
        label = f"{key}: " if self.many else ""
        for warning in (event.get("warnings") or []) if kind == "started" else []:
            self.write(f"{label}warning: {warning}")
        if kind in ("warning", "note"):
            self.write(f"{label}{'warning: ' if kind == 'warning' else ''}{event.get('message', '')}")
        before = self.renders.get(key)
        if before is None and kind not in ("planned", "started"):
            return  # a render's progress starts with its plan
        state = self.renders[key] = reduce(before, event)
        was = before or {}
        if state["status"] == "interrupted" and was.get("status") != "interrupted":
            self.write(f"{label}interrupted: keeping {state['frames_written']} frames")
        # the postfix follows a new load or a new step (a render's loads and steps in one line)
        if state["phase"].startswith("loading") and (state["phase"], state["model"]) != (was.get("phase"),
                                                                                          was.get("model")):
            self._postfix = f"loading {state['model']}"
        elif state["step"] and (state["window"], state["step"]) != (was.get("window"), was.get("step")):
            self._postfix = f"window {state['window'] + 1}/{len(state['window_steps'])}"
        self._refresh()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def _refresh(self) -> None:
        total = sum(r["steps_total"] for r in self.renders.values())
        if self.bar is None and self.enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", desc=self.desc, file=sys.stderr, dynamic_ncols=True)
        if self.bar is None:
            return
        self.bar.total = total
        self.bar.n = sum(r["steps_done"] for r in self.renders.values())
        if self.many:
            counts = {s: sum(r["status"] == s for r in self.renders.values()) for s in ("running", "done", "failed")}
            self._postfix = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        self.bar.set_postfix_str(self._postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
