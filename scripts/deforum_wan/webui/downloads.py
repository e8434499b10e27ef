"""The tab's Download buttons: a model and its continuation partner, or a depth model (3D depth
warping), fetched into the models folder, with its size said first, a progress bar (bytes, speed, ETA) the tab's poll redraws,
and a Stop that keeps what is finished (Download again resumes).

The size is asked here, in the WebUI's Python; the files come in a child process of it
(models.download_process), watched from a background thread: both with the WebUI's own
huggingface_hub, whatever its version from 0.26 on."""
from __future__ import annotations

import threading
import time
from html import escape

from ..errors import DownloadCancelled, one_line
from ..models.download_process import download_in_child
from ..models.file_models import components_to_fetch
from ..models.registry import DEPTH_MODELS, continuation_model
from ..models.weights import download_size, locate_depth, locate_weights
from .fields import model_spec


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


class Downloads:
    def __init__(self, models_dir):
        self.models_dir = models_dir
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # what the bar shows: model, done/total bytes, start time, and a final message
        self._state: dict = {}

    def specs(self, model_id: str) -> list:
        """(model, layout) for the model and the one that continues it (its I2V/VACE partner), not
        yet on disk; a depth model alone; for a transformer file, the components it lacks."""
        if model_id in DEPTH_MODELS:
            depth = DEPTH_MODELS[model_id]
            return [] if locate_depth(depth, self.models_dir) is not None else [(depth, "depth")]
        spec = model_spec(model_id, self.models_dir)  # a registry id, or a weight file read by its header
        if spec.weights:
            base = components_to_fetch(spec, self.models_dir)
            return [(base, "components")] if base is not None else []
        wanted = [spec]
        try:
            partner = continuation_model(spec)
            if partner.id != spec.id:
                wanted.append(partner)
        except Exception:  # a model with no partner renders one window: nothing more to fetch
            pass
        return [(s, "diffusers") for s in wanted if locate_weights(s, self.models_dir) is None]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, model_id: str) -> str:
        """Say the size and start; one line (what is missing, what it costs, or why not)."""
        if self.running:
            return f"a download is running ({self._state.get('model')}); press Stop download first"
        try:
            specs = self.specs(model_id)
            if not specs:
                if model_id in DEPTH_MODELS:
                    return f"depth model {model_id} is already downloaded (in {self.models_dir} or the hub cache)"
                if model_spec(model_id, self.models_dir).weights:
                    return f"{model_id}: its components are on disk (or given by wan_components); nothing to fetch"
                return f"{model_id} and its continuation model are already in {self.models_dir}"
            sizes = [download_size(s, self.models_dir, layout, from_tab=True) for s, layout in specs]
        except Exception as exc:
            return one_line(exc)
        total, missing = sum(t for t, _ in sizes), sum(m for _, m in sizes)
        self._stop.clear()
        with self._lock:
            self._state = {"model": ", ".join(s.id + (" components" if layout == "components" else "")
                                              for s, layout in specs), "done": total - missing, "total": total,
                           "started": time.monotonic(), "first": total - missing, "message": None}
        self._thread = threading.Thread(target=self._run, args=(specs, sizes), name="wan-download", daemon=True)
        self._thread.start()
        return f"downloading {self._state['model']}: {_gb(total)} ({_gb(missing)} to fetch) into {self.models_dir}"

    def _run(self, specs, sizes) -> None:
        base = 0  # bytes of the models finished before the one downloading now
        try:
            for (spec, layout), (total, _) in zip(specs, sizes):
                def progress(done, _total, base=base):
                    with self._lock:
                        self._state["done"] = base + done
                download_in_child(spec, self.models_dir, layout, progress=progress, should_stop=self._stop.is_set)
                base += total
            message = f"downloaded {self._state['model']}: " + ("Preview camera and Generate use it now"
                                                                if specs[0][0].id in DEPTH_MODELS else "press Refresh models")
        except DownloadCancelled:
            message = f"download of {self._state['model']} stopped; Download again resumes it"
        except Exception as exc:
            message = one_line(exc)
        with self._lock:
            self._state["message"] = message

    def stop(self) -> str:
        if not self.running:
            return "no download is running"
        self._stop.set()
        return f"stopping the download of {self._state.get('model')} (finished files are kept)"

    def html(self) -> str:
        """The bar: <progress> with bytes, speed and ETA, or the last download's outcome."""
        with self._lock:
            s = dict(self._state)
        if not s:
            return ""
        if s.get("message"):
            return f'<div class="wan-download">{escape(s["message"])}</div>'
        done, total = s["done"], max(s["total"], 1)
        elapsed = max(time.monotonic() - s["started"], 1e-6)
        speed = max(done - s["first"], 0) / elapsed
        eta = f", {max(total - done, 0) / speed / 60:.0f} min left" if speed > 0 else ""
        text = f"{escape(s['model'])}: {_gb(done)} of {_gb(total)}, {speed / 1e6:.1f} MB/s{eta}"
        return (f'<div class="wan-download"><progress value="{done}" max="{total}" style="width:100%"></progress>'
                f"<div>{text}</div></div>")
