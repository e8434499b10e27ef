"""The tab's Official Wan code buttons: Set up, Update, Remove and Status, as
``python -m deforum_wan official`` does them (models/official_setup.py).

Set up and Update run in a background thread of the WebUI with the render worker's Python and
environment (its private packages on PYTHONPATH), so pip resolves against what the worker
imports and installs beside the clone, never into the WebUI's own packages; the tab's poll
draws their progress under the Download line, then the outcome in one line.
"""
from __future__ import annotations

import threading
from html import escape

from ..errors import one_line
from ..models.official_code import code_for
from ..models.official_setup import remove, setup, status


class OfficialSetups:
    def __init__(self, models_dir, python: str, env: dict | None):
        self.models_dir, self.python, self.env = models_dir, python, env
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict = {}  # what: the code and action; text/fraction: the last step; message: the outcome

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, action: str, name: str) -> str:
        """Set up or update ``name`` (wan2.1, wan2.2) in the background; one line."""
        if self.running:
            return f"{self._state.get('what')} is running; wait for it to finish"
        try:
            code = code_for(name)
        except Exception as exc:
            return one_line(exc)
        what = f"{'updating' if action == 'update' else 'setting up'} {code.repo}"
        with self._lock:
            self._state = {"what": what, "text": "starting", "fraction": None, "message": None}
        self._thread = threading.Thread(target=self._run, args=(code, action == "update"), name="wan-official",
                                        daemon=True)
        self._thread.start()
        return f"{what} at {code.commit[:12]} into {self.models_dir} (progress below)"

    def _say(self, text: str, fraction: float | None = None) -> None:
        with self._lock:
            self._state.update(text=text, fraction=fraction)

    def _run(self, code, update: bool) -> None:
        try:
            message = setup(code, self.models_dir, python=self.python, env=self.env, say=self._say, update=update)
        except Exception as exc:
            message = one_line(exc)
        with self._lock:
            self._state["message"] = message

    def remove(self, name: str) -> str:
        if self.running:
            return f"{self._state.get('what')} is running; remove it once it finished"
        try:
            return remove(code_for(name), self.models_dir)
        except Exception as exc:
            return one_line(exc)

    def status(self, name: str) -> str:
        try:
            return status(code_for(name), self.models_dir, python=self.python, env=self.env)
        except Exception as exc:
            return one_line(exc)

    def html(self) -> str:
        """The step running now, with a bar where its share done is known, or the outcome."""
        with self._lock:
            s = dict(self._state)
        if not s:
            return ""
        if s.get("message"):
            return f'<div class="wan-official">{escape(s["message"])}</div>'
        bar = (f'<progress value="{s["fraction"]:.2f}" max="1" style="width:100%"></progress>'
               if s.get("fraction") is not None else '<progress style="width:100%"></progress>')
        return f'<div class="wan-official">{bar}<div>{escape(s["what"])}: {escape(s["text"])}</div></div>'
