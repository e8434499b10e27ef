"""The command line's one progress bar, drawn from render events (``deforum_wan.events``):
the denoising steps of one render or of a whole batch, with warnings and notes above it."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class _Render:
    window_steps: list[int]
    done: set[int] = field(default_factory=set)
    current: tuple[int, int] | None = None  # (window, step) of the running window
    status: str = "queued"

    def steps_done(self) -> int:
        running = self.current[1] if self.current and self.current[0] not in self.done else 0
        return sum(self.window_steps[w] for w in self.done if w < len(self.window_steps)) + running


class ProgressBar:
    """``bar.event(key, event)`` for each event of the render named ``key``.

    The total is the sum of every render's window steps, known from its ``planned`` or
    ``started`` event; a backend that runs its own step count (a distilled LoRA) corrects
    its window's share at its first step. ``enabled=False`` draws nothing but still prints.
    """

    def __init__(self, desc: str, *, many: bool = False, enabled: bool = True):
        self.many = many
        self.renders: dict[str, _Render] = {}
        self.bar = None
        self.desc, self.enabled = desc, enabled  # the bar appears once it knows its total
        self._postfix = ""

    def event(self, key: str, event: dict) -> None:
        kind = event.get("event")
        render = self.renders.get(key)
        label = f"{key}: " if self.many else ""
        if kind in ("planned", "started") and (render is None or kind == "started"):
            steps = [int(s) for s in event.get("window_steps") or []]
            render = self.renders[key] = _Render(steps or (render.window_steps if render else []))
            if kind == "started":
                render.status = "running"
                render.done = set(range(int(event.get("resume_from_window", 0))))
                for warning in event.get("warnings") or []:
                    self.write(f"{label}warning: {warning}")
        elif render is None:
            if kind in ("note", "warning"):
                self.write(f"{label}{'warning: ' if kind == 'warning' else ''}{event.get('message', '')}")
            return
        elif kind == "loading":
            self._postfix = f"loading {event.get('model')}"
        elif kind == "step":
            window, steps = int(event["window"]), int(event.get("steps", 0))
            if window < len(render.window_steps) and steps and steps != render.window_steps[window]:
                render.window_steps[window] = steps
            render.current = (window, int(event["step"]))
            self._postfix = f"window {window + 1}/{len(render.window_steps)}"
        elif kind == "window_done":
            render.done.add(int(event["window"]))
            render.current = None
        elif kind in ("warning", "note"):
            self.write(f"{label}{'warning: ' if kind == 'warning' else ''}{event.get('message', '')}")
        elif kind == "interrupted":
            render.status = "interrupted"
            self.write(f"{label}interrupted: keeping {event.get('frames', 0)} frames")
        elif kind in ("done", "job_done"):
            render.status = event.get("status", "done")
            if render.status == "done":
                render.done = set(range(len(render.window_steps)))
        self._refresh()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def _refresh(self) -> None:
        total = sum(sum(r.window_steps) for r in self.renders.values())
        if self.bar is None and self.enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", desc=self.desc, file=sys.stderr, dynamic_ncols=True)
        if self.bar is None:
            return
        self.bar.total = total
        self.bar.n = sum(r.steps_done() for r in self.renders.values())
        if self.many:
            counts = {s: sum(r.status == s for r in self.renders.values()) for s in ("running", "done", "failed")}
            self._postfix = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        self.bar.set_postfix_str(self._postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
