"""The Wan model registry: what each model is, where its weights live, how it runs.

Pure data and path logic; importing this module never imports torch.
Defaults (steps, shift, guidance) are those of the official Wan repos' configs
and generate.py (Wan2.1 ``wan/configs``, Wan2.2 ``wan/configs``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import WanError


@dataclass(frozen=True)
class ModelSpec:
    id: str
    family: str  # "wan2.1" | "wan2.2"
    kind: str  # "t2v" | "i2v" | "ti2v" | "flf2v" | "vace"
    diffusers_repo: str | None  # hub id of the diffusers layout
    official_repo: str | None  # hub id of the official layout
    native_fps: int
    max_frames: int  # frames of one model window (4n+1)
    sizes: tuple[tuple[int, int], ...]  # trained (W, H), first is the default
    size_multiple: int = 16
    steps: int = 50
    shift: float = 5.0
    guidance: float = 5.0  # (two experts: the high-noise one, diffusers' guidance_scale)
    guidance_2: float | None = None  # low-noise expert (Wan2.2 A14B), diffusers' guidance_scale_2
    continue_with: str | None = None  # I2V-capable model for windows after the first
    approx_gb: float = 0.0  # weights on disk, diffusers layout (for the models list)
    notes: str = ""
    tiny: bool = False  # built locally by tiny.py

    @property
    def can_t2v(self) -> bool:
        return self.kind in ("t2v", "ti2v", "vace")

    @property
    def can_i2v(self) -> bool:
        return self.kind in ("i2v", "ti2v", "flf2v", "vace")

    @property
    def default_size(self) -> tuple[int, int]:
        return self.sizes[0]


_480 = ((832, 480), (480, 832))
_720 = ((1280, 720), (720, 1280))

MODELS: dict[str, ModelSpec] = {
    m.id: m
    for m in [
        ModelSpec("wan2.1-t2v-1.3b", "wan2.1", "t2v", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                  "Wan-AI/Wan2.1-T2V-1.3B", 16, 81, _480, steps=50, shift=8.0, guidance=6.0,
                  continue_with="wan2.1-vace-1.3b", approx_gb=17.0,
                  notes="Wan's recommended shift 8-12 and guidance 6 for 1.3B"),
        ModelSpec("wan2.1-t2v-14b", "wan2.1", "t2v", "Wan-AI/Wan2.1-T2V-14B-Diffusers",
                  "Wan-AI/Wan2.1-T2V-14B", 16, 81, _720 + _480, steps=50, shift=5.0,
                  guidance=5.0, continue_with="wan2.1-i2v-14b-720p", approx_gb=75.0),
        ModelSpec("wan2.1-i2v-14b-480p", "wan2.1", "i2v", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
                  "Wan-AI/Wan2.1-I2V-14B-480P", 16, 81, _480, steps=40, shift=3.0,
                  guidance=5.0, approx_gb=80.0),
        ModelSpec("wan2.1-i2v-14b-720p", "wan2.1", "i2v", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
                  "Wan-AI/Wan2.1-I2V-14B-720P", 16, 81, _720, steps=40, shift=5.0,
                  guidance=5.0, approx_gb=80.0),
        ModelSpec("wan2.1-flf2v-14b-720p", "wan2.1", "flf2v", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
                  "Wan-AI/Wan2.1-FLF2V-14B-720P", 16, 81, _720, steps=50, shift=16.0,
                  guidance=5.0, approx_gb=80.0, notes="first and last frame to video"),
        ModelSpec("wan2.1-vace-1.3b", "wan2.1", "vace", "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
                  "Wan-AI/Wan2.1-VACE-1.3B", 16, 81, _480, steps=50, shift=16.0,
                  guidance=5.0, approx_gb=19.0),
        ModelSpec("wan2.1-vace-14b", "wan2.1", "vace", "Wan-AI/Wan2.1-VACE-14B-diffusers",
                  "Wan-AI/Wan2.1-VACE-14B", 16, 81, _720 + _480, steps=50, shift=16.0,
                  guidance=5.0, approx_gb=75.0),
        ModelSpec("wan2.2-ti2v-5b", "wan2.2", "ti2v", "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
                  "Wan-AI/Wan2.2-TI2V-5B", 24, 121, ((1280, 704), (704, 1280)), size_multiple=32,
                  steps=50, shift=5.0, guidance=5.0, approx_gb=34.0,
                  notes="text and image to video in one model, 24 fps"),
        ModelSpec("wan2.2-t2v-a14b", "wan2.2", "t2v", "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
                  "Wan-AI/Wan2.2-T2V-A14B", 16, 81, _720 + _480, steps=40, shift=12.0,
                  # official sample_guide_scale = (3.0 low noise, 4.0 high noise)
                  guidance=4.0, guidance_2=3.0, continue_with="wan2.2-i2v-a14b", approx_gb=126.0,
                  notes="two experts (high/low noise)"),
        ModelSpec("wan2.2-i2v-a14b", "wan2.2", "i2v", "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
                  "Wan-AI/Wan2.2-I2V-A14B", 16, 81, _720 + _480, steps=40, shift=5.0,
                  guidance=3.5, guidance_2=3.5, approx_gb=126.0, notes="two experts"),
        # Built locally from random weights by tiny.py: for tests, the demo, offline smoke runs.
        ModelSpec("tiny-random", "wan2.1", "t2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=5.0, continue_with="tiny-random-i2v", tiny=True,
                  notes="random weights, built locally; for tests and the demo"),
        ModelSpec("tiny-random-i2v", "wan2.1", "i2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=5.0, tiny=True, notes="random weights"),
        ModelSpec("tiny-random-ti2v", "wan2.2", "ti2v", None, None, 24, 121, ((64, 64),),
                  size_multiple=32, steps=2, shift=5.0, guidance=5.0, tiny=True,
                  notes="random weights, TI2V-style"),
        ModelSpec("tiny-random-flf2v", "wan2.1", "flf2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=5.0, tiny=True, notes="random weights, FLF2V-style"),
        ModelSpec("tiny-random-vace", "wan2.1", "vace", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=5.0, tiny=True, notes="random weights, VACE-style"),
        ModelSpec("tiny-random-a14b", "wan2.2", "t2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=4.0, guidance_2=3.0, tiny=True,
                  notes="random weights, two experts like Wan2.2 A14B"),
    ]
}

DEFAULT_MODEL = "wan2.1-t2v-1.3b"


def get_model(model_id: str) -> ModelSpec:
    key = model_id.strip().lower()
    if key in MODELS:
        return MODELS[key]
    raise WanError(f"unknown model {model_id!r}; known: {', '.join(MODELS)}")


def continuation_model(spec: ModelSpec) -> ModelSpec:
    """The model that renders I2V windows after the first one."""
    if spec.can_i2v:
        return spec
    if spec.continue_with:
        return MODELS[spec.continue_with]
    raise WanError(f"{spec.id} cannot continue from a frame and has no I2V partner")


# ---------------------------------------------------------------------------
# Where weights live: a models dir of plain folders (the WebUI's models/wan), or the
# Hugging Face hub cache. Downloads go through huggingface_hub (progress, resume, auth).

MODELS_DIR_ENV = "DEFORUM_WAN_MODELS_DIR"
LAYOUTS = ("diffusers", "official")
# diffusers loads only safetensors, never pickles (.bin/.pth). The official code loads its
# T5, VAE and CLIP weights from .pth files itself, so that layout has to fetch them.
ALLOW_PATTERNS = {
    "diffusers": ["*.json", "*.safetensors", "*.txt", "*.model"],
    "official": ["*.json", "*.safetensors", "*.txt", "*.model", "*.pth"],
}


def default_models_dir() -> Path:
    env = os.environ.get(MODELS_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deforum-wan" / "models"


def resolve_models_dir(models_dir) -> Path:
    return Path(models_dir).expanduser() if models_dir else default_models_dir()


def hub_repo(spec: ModelSpec, layout: str = "diffusers") -> str | None:
    if layout not in LAYOUTS:
        raise WanError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    return spec.diffusers_repo if layout == "diffusers" else spec.official_repo


def download_command(spec: ModelSpec, layout: str = "diffusers") -> str:
    extra = " --layout official" if layout == "official" else ""
    return f"python -m deforum_wan download {spec.id}{extra}"


def weights_missing_message(spec: ModelSpec, models_dir=None, layout: str = "diffusers") -> str:
    repo = hub_repo(spec, layout)
    return (f"weights for {spec.id} ({repo}, {layout} layout) not found in {resolve_models_dir(models_dir)} "
            f"or the Hugging Face cache; run: {download_command(spec, layout)}")


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
        # Every official Wan checkpoint ships its UMT5 encoder as models_t5_*.pth.
        return any(folder.glob("models_t5_*.pth"))
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        part = folder / name
        if not part.is_dir():
            return False
        if value[0] in ("diffusers", "transformers") and (part / "config.json").is_file():
            if not _has_weights(part):
                return False
    return True


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


def require_weights(spec: ModelSpec, models_dir=None, layout: str = "diffusers") -> Path:
    path = locate_weights(spec, models_dir, layout)
    if path is None:
        raise WanError(weights_missing_message(spec, models_dir, layout))
    return path


def hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_error_message(repo: str, spec: ModelSpec, layout: str, error: Exception) -> str:
    kind = type(error).__name__
    command = download_command(spec, layout)
    if kind == "GatedRepoError":
        return f"{repo} is gated: accept its license on huggingface.co and pass --token (or HF_TOKEN)"
    if kind in ("RepositoryNotFoundError", "RevisionNotFoundError"):
        return f"{repo} was not found on the Hugging Face hub (or needs a token); check the id"
    if kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or hub_offline():
        return f"{repo} is not downloaded and the hub is unreachable or offline; when online run: {command}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else kind
    return f"downloading {repo} failed ({kind}: {first}); run again to resume: {command}"


def _fetch(spec: ModelSpec, repo: str, target: Path, layout: str, token=None) -> Path:
    """snapshot_download into a plain folder; the hub client shows progress and resumes."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo, local_dir=target, allow_patterns=ALLOW_PATTERNS[layout],
                                 token=token)
    except Exception as e:  # the hub raises many types (HTTP, auth, offline, disk): one line each
        raise WanError(_hub_error_message(repo, spec, layout, e)) from e
    return Path(path)


def download(spec: ModelSpec, models_dir=None, layout: str = "diffusers", token=None) -> Path:
    """Download ``spec`` into ``<models_dir>/<repo name>`` (tiny models are built instead)."""
    root = resolve_models_dir(models_dir)
    if spec.tiny:
        if layout != "diffusers":
            raise WanError(f"{spec.id} is built locally in the diffusers layout only")
        from .tiny import ensure_tiny_model

        return ensure_tiny_model(spec.id, root)
    repo = hub_repo(spec, layout)
    if repo is None:
        raise WanError(f"{spec.id} has no {layout}-layout repo on the hub")
    if hub_offline():
        raise WanError(f"cannot download {repo} while HF_HUB_OFFLINE is set; unset it and run: "
                       f"{download_command(spec, layout)}")
    path = _fetch(spec, repo, root / repo.split("/")[-1], layout, token)
    if not _is_complete(path, layout):
        raise WanError(f"{repo} downloaded to {path} but looks incomplete; run again to resume: "
                       f"{download_command(spec, layout)}")
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
        })
    return {"models_dir": str(root), "models": rows}
