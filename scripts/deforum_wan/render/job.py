"""The one door of every job: what was asked for (``JobSpec``, plain JSON), checked once and
fully before anything is queued or loaded (``check_job`` -> ``CheckedJob``), then run by a
runner (``LocalRunner`` here; the worker process and the Ray actors run it too).

Every way in builds a JobSpec and calls check_job: the tab, /wan_api/, --wan-run-now,
``render`` and ``batch``. A job that cannot be planned (a bad key, an overlap the model's
window cannot hold, an init image that does not decode, a resume of a run that is not
there) is refused with one line there, so the queue never holds one and the WebUI never
frees its checkpoint for one. A Video Input's source video is probed there too (bounds on
its size, duration and frame count; a corrupt or empty file is one line). The worker checks
the job it is sent with the same function (``confine=False``: the paths were confined at
submission and are absolute now).
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Iterable

from ..config.planner import ClipPlan, make_plan
from ..config.schedule import ExprError
from ..config.settings import MAX_FILE_BYTES, RenderSettings, load_settings
from ..config.values import check_plain
from ..errors import SettingsError, WanError
from ..models.weights import resolve_models_dir
from .inputs import confine_job_paths, inline_manifest
from .manifest import Manifest
from .names import settings_hash
from .run_folder import RunFolder, check_timestring
from .video import check_soundtrack

EventSink = Callable[[dict], None]


@dataclass(frozen=True)
class JobSpec:
    """One job as asked for: the Deforum settings dict and where its run goes."""
    settings: dict
    name: str = ""
    resume: str | None = None  # continue this run (its timestring) in its own folder
    timestring: str | None = None  # a new run under this timestring (a batch picks it up front)
    settings_base: str | None = None  # the folder relative input names start from (a settings file's)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> JobSpec:
        """A spec from plain data (a queue row, a worker command); WanError if malformed."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or set(data) - names:
            raise WanError(f"a job must be an object with 'settings' (an object) and only {sorted(names)}")
        for key in names - {"settings"}:
            if data.get(key) is not None and not isinstance(data[key], str):
                raise WanError(f"a job's {key} must be a string or null")
        optional = {key: data.get(key) or None for key in ("resume", "timestring", "settings_base")}
        return cls(data["settings"], data.get("name") or "", **optional)


@dataclass(frozen=True)
class CheckedJob:
    """A job that passed ``check_job``: its spec (input paths confined and absolute), the
    settings it renders (a resume's: those saved in its run folder) and its plan."""
    spec: JobSpec
    settings: RenderSettings
    plan: ClipPlan


def check_job(spec: JobSpec, outdir: str | os.PathLike, *, models_dir: str | None = None,
              inputs: Iterable[str | os.PathLike] = (), confine: bool = True) -> CheckedJob:
    """Everything that can be known before a model loads, or one SettingsError/WanError line.

    ``confine``: input files must lie in the output folder, ``inputs`` (folders the caller
    trusts) or the host's input folders (``render.inputs``); off for the command line, whose
    user names their own files, and for a worker re-reading a job that passed here."""
    label = spec.name or "<settings>"
    try:
        check_plain(spec.name, "the job name")  # it is stored and shown like the settings
    except ExprError as exc:
        raise SettingsError(str(exc), label) from None
    _check_plain_data(spec.settings, label)
    for value, what in ((spec.resume, "resume timestring"), (spec.timestring, "timestring")):
        if value:
            check_timestring(value, what)
    raw = dict(spec.settings)
    if confine:
        raw = confine_job_paths(raw, outdir, resolve_models_dir(models_dir), label, inputs)
    else:
        raw = inline_manifest(raw, None, label)
    # The source video is read here (probed within bounds, its kept frames counted): its path
    # was confined above, or is the command line user's own.
    settings = load_settings(raw, name=label, models_dir=models_dir, read_video=True,
                             base=spec.settings_base)
    resume = spec.resume or settings.resume_timestring
    if resume:
        settings = resumed_settings(RunFolder.of(outdir, settings, resume), label, models_dir)
    base = Path(spec.settings_base) if spec.settings_base else None
    return CheckedJob(replace(spec, settings=raw, resume=resume or None), settings,
                      plan_checked(settings, base))


def plan_checked(settings: RenderSettings, base: Path | None = None) -> ClipPlan:
    """The plan, with the inputs it reads proven usable (a missing soundtrack, an init image
    that does not decode) now, not after the frames are rendered."""
    if settings.video_input is not None and not settings.video_input.kept:
        raise WanError(f"{settings.source}: the Video Input source was not read; load the settings with"
                       " read_video=True (check_job does)")
    plan = make_plan(settings)
    if settings.soundtrack and "://" not in settings.soundtrack:
        check_soundtrack(settings.soundtrack)
    if settings.init_image and any(w.mode == "i2v" and w.index == 0 for w in plan.windows):
        from .images import load_image

        load_image(settings.init_image, plan.width, plan.height, base, settings.init_fit)
    if settings.keyframes:
        from .images import load_image

        for k in settings.keyframes:  # each guided image decodes, or one line naming its key
            load_image(k.image, plan.width, plan.height, base, settings.init_fit, label=f"init_images key {k.key!r}")
    return plan


def check_libraries(settings: RenderSettings) -> None:
    """The libraries some keys need, in the process that renders (a WebUI's own Python may
    lack what the worker's packages hold): before any file is written, not mid-render."""
    deforum = settings.color_match == "deforum" and settings.color_coherence in ("HSV", "LAB")
    needs_cv2 = ([f"color_coherence {settings.color_coherence}"] if deforum else []) \
        + (["wan_color_match lab"] if settings.color_match == "lab" and settings.color_match_strength else []) \
        + (["wan_retime flow"] if settings.retime == "flow" else [])
    if needs_cv2 and importlib.util.find_spec("cv2") is None:
        raise WanError(f"{' and '.join(needs_cv2)} need OpenCV: pip install opencv-python-headless")


def resumed_settings(folder: RunFolder, label: str = "<settings>", models_dir: str | None = None) -> RenderSettings:
    """The settings a resume continues: the file saved in its run folder (it holds the drawn
    seed), refused when the run is not there, is finished, or its file was changed since."""
    saved, manifest_file = folder.settings_file, folder.manifest_file
    if not saved.is_file() or not manifest_file.is_file():
        raise SettingsError(f"resume {folder.timestring}: no such run in {folder.dir}", label)
    settings = load_settings(saved, {"resume_from_timestring": False}, models_dir=models_dir, read_video=True)
    manifest = Manifest.load(manifest_file)
    if manifest.status == "done":
        raise WanError(f"render {folder.timestring} in {folder.dir} is already finished")
    if manifest.settings_hash and manifest.settings_hash != saved_hash(saved):
        # Its finished frames were made from the file as it was: going on would mix two renders.
        raise WanError(f"{saved} was changed after run {folder.timestring} started; undo the change to resume"
                       " it, or render the changed file as a new run (without --resume)")
    return settings


def saved_hash(path: Path) -> str:
    from ..config.settings import read_settings_file

    return settings_hash(read_settings_file(path))


def _check_plain_data(settings, label: str) -> None:
    if not isinstance(settings, dict):
        raise SettingsError(f"settings must be a JSON object, got {type(settings).__name__}", label)
    try:
        size = len(json.dumps(settings, ensure_ascii=False))
    except (TypeError, ValueError) as exc:  # the queue stores JSON; the worker receives JSON
        raise SettingsError(f"settings are not plain JSON data ({exc})", label) from None
    if size > MAX_FILE_BYTES:
        raise SettingsError(f"settings are {size / 1e6:.1f} MB; at most {MAX_FILE_BYTES // 2**20} MB", label)
