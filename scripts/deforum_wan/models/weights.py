"""Where weights live: a models dir of plain folders (the WebUI's models/wan), or the
Hugging Face hub cache. Downloads go through huggingface_hub (progress, resume by file, auth).

Path logic only; importing this module never imports torch or huggingface_hub.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import DownloadCancelled, WanError
from .random_full import MARKER as RANDOM_MARKER
from .registry import MODELS, DepthSpec, ModelSpec

MODELS_DIR_ENV = "DEFORUM_WAN_MODELS_DIR"
LAYOUTS = ("diffusers", "official")
# diffusers loads only safetensors, never pickles (.bin/.pth). The official code loads its
# T5, VAE and CLIP weights from .pth files itself, so that layout has to fetch them.
ALLOW_PATTERNS = {
    "diffusers": ["*.json", "*.safetensors", "*.txt", "*.model"],
    "official": ["*.json", "*.safetensors", "*.txt", "*.model", "*.pth"],
    "depth": ["*.json", "*.safetensors", "*.txt"],  # a depth model (DepthSpec): safetensors only
    # What a transformer file lacks, from its diffusers repo: every part but the transformers'
    # weights (their configs tell the head count and rope length).
    "components": ["model_index.json", "transformer/config.json", "transformer_2/config.json"] + [
        f"{part}/*.{ext}" for part in ("text_encoder", "tokenizer", "vae", "image_encoder", "image_processor",
                                       "scheduler") for ext in ("json", "safetensors", "txt", "model")],
}
EXPERTS = ("transformer", "transformer_2")


def default_models_dir() -> Path:
    env = os.environ.get(MODELS_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deforum-wan" / "models"


def resolve_models_dir(models_dir) -> Path:
    return Path(models_dir).expanduser() if models_dir else default_models_dir()


def hub_repo(spec: ModelSpec, layout: str = "diffusers") -> str | None:
    if layout not in LAYOUTS + ("components",):
        raise WanError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    return spec.official_repo if layout == "official" else spec.diffusers_repo


def spec_repo(spec: ModelSpec | DepthSpec, layout: str = "diffusers") -> str | None:
    """The hub repo a download of ``spec`` fetches: a depth model's own (layout "depth")."""
    return spec.repo if isinstance(spec, DepthSpec) else hub_repo(spec, layout)


def download_command(spec: ModelSpec, layout: str = "diffusers") -> str:
    extra = " --layout official" if layout == "official" else ""
    return f"python -m deforum_wan download {spec.id}{extra}"


# Set by a host whose users have a Download button rather than a terminal (the Wan tab's queue):
# the way to get missing weights that works where the message is read.
DOWNLOAD_HINT_ENV = "DEFORUM_WAN_DOWNLOAD_HINT"
DEPTH_HINT_ENV = "DEFORUM_WAN_DEPTH_HINT"  # the same for a depth model (3D depth warping)
# What the Wan tab and its queue say about a missing depth model: the tab's button and field.
DEPTH_TAB_HINT = "press Download depth model in the Wan tab, or untick Depth warping there for a flat scene"


def weights_missing_message(spec: ModelSpec, models_dir=None, layout: str = "diffusers") -> str:
    repo = hub_repo(spec, layout)
    hint = os.environ.get(DOWNLOAD_HINT_ENV) if layout == "diffusers" else None
    return (f"weights for {spec.id} ({repo}, {layout} layout) not found in {resolve_models_dir(models_dir)} "
            f"or the Hugging Face cache; " + (hint or f"run: {download_command(spec, layout)}"))


def _has_weights(folder: Path) -> bool:
    """At least one safetensors file (all diffusers loads), and every shard an index names is present."""
    if not any(f.name.endswith(".safetensors") for f in folder.iterdir() if f.is_file()):
        return False
    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not all((folder / shard).is_file() for shard in shards):
            return False
    return True


def _is_complete(folder: Path, layout: str) -> bool:
    """Cheap check that a folder holds a whole checkpoint (catches interrupted downloads)."""
    if not folder.is_dir():
        return False
    if layout == "official":
        return _official_complete(folder)
    if layout == "depth":
        return _depth_complete(folder)
    if (folder / RANDOM_MARKER).is_file():
        return True  # a full-size random model: configs only, its weights are made where it loads
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if layout == "components" and name in EXPERTS:
            continue  # a folder of components: the transformer comes from a file
        part = folder / name
        if not part.is_dir():
            return False
        if value[0] in ("diffusers", "transformers") and (part / "config.json").is_file():
            if not _has_weights(part):
                return False
    return True


def _official_complete(folder: Path) -> bool:
    """An official checkpoint: its UMT5 encoder, its VAE, and whole DiT weights (every shard
    its index names), in the folder or in each expert's subfolder (Wan2.2 A14B)."""
    if not any(folder.glob("models_t5_*.pth")) or not any(folder.glob("Wan2.*_VAE.pth")):
        return False
    experts = [folder / "high_noise_model", folder / "low_noise_model"]
    dits = experts if any(e.is_dir() for e in experts) else [folder]
    return all(_dit_complete(d) for d in dits)


def _dit_complete(folder: Path) -> bool:
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        return bool(shards) and all((folder / s).is_file() for s in shards)
    return (folder / "diffusion_pytorch_model.safetensors").is_file()


def _hub_snapshot(repo: str, layout: str) -> Path | None:
    """The cached snapshot of ``repo`` in the hub cache, without touching the network."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo, local_files_only=True, allow_patterns=ALLOW_PATTERNS[layout])
    except Exception:  # absent from the cache (the hub raises several kinds): not found
        return None
    return Path(path)


def locate_weights(spec: ModelSpec, models_dir=None, layout: str = "diffusers") -> Path | None:
    """The folder holding ``spec``'s weights in ``layout``, or None.

    Looked up as ``<models_dir>/<repo name>``, ``<models_dir>/<model id>``, then the hub cache.
    """
    if spec.weights:  # given as a file (no folder) or as a folder
        folder = Path(spec.weights)
        return folder if layout == "diffusers" and _is_complete(folder, layout) else None
    repo = hub_repo(spec, layout)
    root = resolve_models_dir(models_dir)
    if spec.tiny:
        folder = root / spec.id
        return folder if layout == "diffusers" and _is_complete(folder, layout) else None
    if repo is None:
        return None
    for folder in (root / repo.split("/")[-1], root / spec.id):
        if _is_complete(folder, layout):
            return folder
    snapshot = _hub_snapshot(repo, layout)
    if snapshot is not None and _is_complete(snapshot, layout):
        return snapshot
    return None


def hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


# How to go on after a failed download, in the words of where the message is read: the Wan
# tab (its buttons, the WebUI's environment) or a terminal (the download command).
TAB_ADVICE = {"resume": "press Download again to resume", "online": "when online press Download again",
              "offline": "start the WebUI without it to download", "token": "set HF_TOKEN in the WebUI's environment"}


def cli_advice(spec: ModelSpec, layout: str = "diffusers") -> dict[str, str]:
    command = download_command(spec, layout)
    return {"resume": f"run again to resume: {command}", "online": f"when online run: {command}",
            "offline": f"unset it and run: {command}", "token": "pass --token (or HF_TOKEN)"}


def _hub_error_message(repo: str, error: Exception, say: dict[str, str], asking: bool = False) -> str:
    """One line for a failed hub call. ``asking``: the question before a download (its files and
    sizes), which fails other than by a refusal only when the hub cannot be asked."""
    kind = type(error).__name__
    if kind == "GatedRepoError":
        return f"{repo} is gated: accept its license on huggingface.co and {say['token']}"
    if kind in ("RepositoryNotFoundError", "RevisionNotFoundError"):
        return f"{repo} was not found on the Hugging Face hub (or needs a token); check the id"
    if asking or kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "IncompleteSnapshotError") or hub_offline():
        return f"{repo} is not downloaded and the hub is unreachable or offline; {say['online']}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else kind
    return f"downloading {repo} failed ({kind}: {first}); {say['resume']}"


def _endpoint() -> str | None:
    # huggingface_hub reads HF_ENDPOINT once, at import; passed per call it can change at runtime.
    return os.environ.get("HF_ENDPOINT") or None


def _quiet_bars(on_bytes=None):
    """A tqdm class for snapshot_download that draws nothing and hands ``on_bytes`` the bytes
    written, summed over all files (called from the hub client's download threads). The 0.x
    clients (the WebUIs' own) count only files with it: no bytes, no stop between chunks."""
    from huggingface_hub.utils import tqdm

    class QuietBars(tqdm):
        def __init__(self, *args, **kwargs):
            # The snapshot's own aggregate byte bar carries this name; the others count files
            # or network bytes.
            self.counts = on_bytes is not None and kwargs.get("name") == "huggingface_hub.snapshot_download"
            super().__init__(*args, **{**kwargs, "disable": True})

        def update(self, n=1):
            if self.counts and n:
                on_bytes(int(n))  # raises DownloadCancelled: the chunk is not written
            return super().update(n)

    return QuietBars


class _Progress:
    """Bytes done over the whole download, reported to ``progress(done, total)``; asks
    ``should_stop()`` before each chunk is written."""

    def __init__(self, message: str, progress=None, should_stop=None, done: int = 0, total: int = 0):
        self.message, self.progress, self.should_stop = message, progress, should_stop
        self.done, self.total = done, total
        self.lock = threading.Lock()  # the hub client downloads several files at once

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise DownloadCancelled(self.message)

    def __call__(self, n: int) -> None:
        self.check()
        with self.lock:
            self.done += n
            if self.progress is not None:
                self.progress(self.done, self.total)


def fetch_repo(repo: str, target: Path, layout: str, say: dict[str, str], token=None, bars=None) -> Path:
    """snapshot_download into a plain folder; finished files are kept, so a rerun resumes.
    Only arguments every huggingface_hub from 0.26 on accepts (the WebUIs' own run it)."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo, local_dir=target, allow_patterns=ALLOW_PATTERNS[layout],
                                 token=token, endpoint=_endpoint(), tqdm_class=bars)
    except DownloadCancelled:
        raise
    except Exception as e:  # the hub raises many types (HTTP, auth, offline, disk): one line each
        raise WanError(_hub_error_message(repo, e, say)) from e
    return Path(path)


def _download_repo(spec: ModelSpec, layout: str, say: dict[str, str]) -> str:
    """The hub repo ``spec`` downloads from in ``layout``; refused when offline or absent."""
    repo = spec_repo(spec, layout)
    if repo is None:
        raise WanError(f"{spec.id} has no {layout}-layout repo on the hub")
    if hub_offline():
        raise WanError(f"cannot download {repo} while HF_HUB_OFFLINE is set; {say['offline']}")
    return repo


def download_plan(spec: ModelSpec, models_dir=None, layout: str = "diffusers", token=None,
                  from_tab: bool = False) -> tuple[Path, dict[str, int]]:
    """The folder a download of ``spec`` fills and the files it fetches there (path -> bytes),
    asked of the hub without downloading, with calls every huggingface_hub from 0.26 on accepts.
    ``from_tab``: its messages name the Wan tab's buttons rather than the download command.
    A depth model (DepthSpec) fetches its own files (layout "depth")."""
    if isinstance(spec, DepthSpec):
        layout = "depth"
    say = TAB_ADVICE if from_tab else cli_advice(spec, layout)
    repo = _download_repo(spec, layout, say)
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    try:
        entries = [e for e in HfApi(endpoint=_endpoint(), token=token).list_repo_tree(repo, recursive=True)
                   if isinstance(e, RepoFile)]
    except Exception as e:  # not found, gated, offline, unreachable: one line each
        raise WanError(_hub_error_message(repo, e, say, asking=True)) from e
    wanted = set(filter_repo_objects([e.path for e in entries], allow_patterns=ALLOW_PATTERNS[layout]))
    files = {e.path: int(e.size or 0) for e in entries if e.path in wanted}
    return resolve_models_dir(models_dir) / repo.split("/")[-1], files


def _finished(target: Path, name: str, size: int) -> bool:
    # The hub client writes elsewhere and moves a file into place when it is whole.
    try:
        return (target / name).stat().st_size == size
    except OSError:
        return False


def bytes_on_disk(target: Path, files: dict[str, int]) -> int:
    """Bytes of ``files`` in ``target`` now: the finished ones and the parts the hub client is
    writing (its ``.incomplete`` files), for a progress bar of a download running elsewhere."""
    done = sum(size for name, size in files.items() if _finished(target, name, size))
    parts = target / ".cache" / "huggingface" / "download"
    for part in parts.rglob("*.incomplete") if parts.is_dir() else ():
        try:
            done += part.stat().st_size
        except OSError:  # moved into place meanwhile: counted as finished next time
            pass
    return min(done, sum(files.values()))


def download_size(spec: ModelSpec, models_dir=None, layout: str = "diffusers", token=None,
                  from_tab: bool = False) -> tuple[int, int]:
    """(bytes of the files a download fetches, bytes of them not yet in the target folder), asked
    of the hub without downloading; tiny models are built locally: (0, 0)."""
    if spec.tiny:
        return 0, 0
    target, files = download_plan(spec, models_dir, layout, token, from_tab)
    total = sum(files.values())
    return total, total - sum(size for name, size in files.items() if _finished(target, name, size))


def download(spec: ModelSpec, models_dir=None, layout: str = "diffusers", token=None,
             progress=None, should_stop=None) -> Path:
    """Download ``spec`` into ``<models_dir>/<repo name>`` (tiny models are built instead).

    ``progress(done_bytes, total_bytes)`` is called, from the download threads, as bytes arrive
    (the total is asked of the hub first). ``should_stop()`` returning True stops the download at
    its next chunk with DownloadCancelled; the files it finished stay, so the next call resumes.
    Bytes and stops between chunks need the extension's huggingface_hub, not a 0.x one: the
    Wan tab, in a WebUI's Python, downloads through models.download_process instead.
    """
    root = resolve_models_dir(models_dir)
    if spec.tiny:
        if layout != "diffusers":
            raise WanError(f"{spec.id} is built locally in the diffusers layout only")
        from .tiny import ensure_tiny_model

        return ensure_tiny_model(spec.id, root)
    say = cli_advice(spec, layout)
    repo = _download_repo(spec, layout, say)
    counter = _Progress(f"download of {spec.id} ({repo}) stopped; Download again resumes it",
                        progress, should_stop)
    counter.check()
    if progress is not None:
        total, missing = download_size(spec, root, layout, token)
        counter.done, counter.total = total - missing, total
        progress(counter.done, total)  # where it starts: a resumed download is partly done
    bars = _quiet_bars(counter) if progress is not None or should_stop is not None else None
    path = fetch_repo(repo, root / repo.split("/")[-1], layout, say, token, bars)
    if not _is_complete(path, layout):
        raise WanError(f"{repo} downloaded to {path} but looks incomplete; {say['resume']}")
    return path


@dataclass(frozen=True)
class ModelStatus:
    model_id: str
    diffusers_path: Path | None
    official_path: Path | None
    size_bytes: int  # on disk, both layouts together

    @property
    def present(self) -> bool:
        return self.diffusers_path is not None or self.official_path is not None

    @property
    def path(self) -> Path | None:
        return self.diffusers_path or self.official_path


def disk_size(folder: Path) -> int:
    """Bytes under ``folder``, following file links once (hub snapshots link to blobs)."""
    seen, total = set(), 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def model_status(spec: ModelSpec, models_dir=None) -> ModelStatus:
    diff = locate_weights(spec, models_dir, "diffusers")
    off = None if spec.tiny else locate_weights(spec, models_dir, "official")
    size = sum(disk_size(p) for p in {diff, off} if p is not None)
    return ModelStatus(spec.id, diff, off, size)


def registry_rows(models_dir=None) -> dict:
    """The registry with local presence: ``models --json`` and ``GET /wan_api/models``."""
    root = resolve_models_dir(models_dir)
    rows = []
    for spec in MODELS.values():
        status = model_status(spec, root)
        w, h = spec.default_size
        rows.append({
            "id": spec.id, "family": spec.family, "kind": spec.kind, "fps": spec.native_fps,
            "window": spec.max_frames, "width": w, "height": h, "tiny": spec.tiny,
            "diffusers_repo": spec.diffusers_repo, "official_repo": spec.official_repo,
            "present": status.present, "path": str(status.path) if status.path else None,
            "layouts": [name for name, p in (("diffusers", status.diffusers_path),
                                              ("official", status.official_path)) if p],
            "bytes": status.size_bytes, "approx_gb": spec.approx_gb, "notes": spec.notes,
            # a full-size random build (benchmarks): the architecture without the weights
            "random": bool(status.diffusers_path and (status.diffusers_path / RANDOM_MARKER).is_file()),
        })
    return {"models_dir": str(root), "models": rows}


# --- depth models ---------------------------------------------------------------------------

DEPTH_PATTERNS = ALLOW_PATTERNS["depth"]


def _depth_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def locate_depth(spec: DepthSpec, models_dir=None) -> Path | None:
    """The folder of a depth model: ``<models_dir>/<repo name or id>``, then the hub cache."""
    root = resolve_models_dir(models_dir)
    if spec.tiny:
        folder = root / spec.id
        return folder if _depth_complete(folder) else None
    for folder in (root / spec.repo.split("/")[-1], root / spec.id):
        if _depth_complete(folder):
            return folder
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(spec.repo, allow_patterns=DEPTH_PATTERNS, local_files_only=True))
    except Exception:  # not in the cache (or no hub client): not here
        return None
    return path if _depth_complete(path) else None


def depth_missing_message(spec: DepthSpec, models_dir=None, hint: str | None = None) -> str:
    """``hint``: how to get it where the message is read (else DEPTH_HINT_ENV's, else the command)."""
    how = hint or os.environ.get(DEPTH_HINT_ENV) or (f"run: python -m deforum_wan download {spec.id}, or set"
                                                     " use_depth_warping false for a flat scene")
    return (f"depth model {spec.id} ({spec.repo}, about {spec.approx_gb:g} GB) is not in"
            f" {resolve_models_dir(models_dir)} or the hub cache; {how}")


def download_depth(spec: DepthSpec, models_dir=None, token=None) -> Path:
    """Fetch a depth model's safetensors into ``<models_dir>/<repo name>`` (tiny: built)."""
    root = resolve_models_dir(models_dir)
    if spec.tiny:
        from .tiny import ensure_tiny_depth

        return ensure_tiny_depth(root)
    if hub_offline():
        raise WanError(f"cannot download {spec.repo} while HF_HUB_OFFLINE is set; unset it and run:"
                       f" python -m deforum_wan download {spec.id}")
    from huggingface_hub import snapshot_download

    target = root / spec.repo.split("/")[-1]
    try:
        path = Path(snapshot_download(spec.repo, local_dir=target, allow_patterns=DEPTH_PATTERNS, token=token,
                                      endpoint=_endpoint()))
    except Exception as e:  # the hub raises many types (HTTP, auth, offline, disk): one line
        raise WanError(f"cannot download {spec.repo}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                       f"; run again to resume: python -m deforum_wan download {spec.id}") from e
    if not _depth_complete(path):
        raise WanError(f"{spec.repo} has no safetensors weights (only pickled ones, which are not loaded)")
    return path
