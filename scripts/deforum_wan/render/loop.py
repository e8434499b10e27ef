"""The render loop: a ClipPlan's windows, in order, into Deforum-named frames and a video.

Per window: generate -> drop Wan's copy of the conditioning frame -> colour correction
against the shot's first frame or the frame it continues from (render.color_match; before
the frames seed the next window) -> crossfade the overlap with the held-back tail ->
retime each finished native frame onto output frames -> background PNG writer.
After each window the manifest and a small carry file (the native frames the next
window needs) are saved atomically, so a killed render resumes at the first
unfinished window and produces the same frames.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import events
from ..backends.pool import BackendPool
from ..config.planner import LOOP, ClipPlan, Window
from ..config.settings import RenderSettings
from ..config.source_video import to_gray
from ..errors import Interrupted, WanError
from ..models.registry import get_model
from ..pixels import to_uint8
from .color_match import ColorCorrection
from .control_frames import control_frames_for
from .follow import CameraFollower, lead_frames, paste_kept
from .frame_writer import FrameWriter, first_bad_frame
from .images import load_image, read_png
from .job import CheckedJob, check_libraries, plan_checked, resumed_settings, saved_hash
from .manifest import Manifest
from .names import atomic_write_bytes, check_writable, frame_name, frame_path, make_timestring, write_settings
from .run_folder import RunFolder, RunLock, check_timestring
from .stream import CarryStream
from .video import make_video, write_srt

EventSink = Callable[[dict], None]
FRAME_QUEUE_BYTES = 256 << 20


@dataclass
class RenderResult:
    run_dir: Path
    timestring: str
    frames: int
    video: Path | None
    settings_file: Path
    status: str  # done | interrupted
    backend_report: list = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    camera_adherence: dict | None = None  # render.adherence: how closely the frames follow the camera
    drift: dict | None = None  # render.drift: how far colour and sharpness moved along the chain


class Renderer:
    """Renders one settings object. ``should_stop`` is polled at every denoising step."""

    def __init__(self, settings: RenderSettings, outdir: str | os.PathLike, *, backend: str | None = None,
                 models_dir: str | None = None, resume: str | None = None,
                 on_event: EventSink | None = None, should_stop: Callable[[], bool] | None = None,
                 sync_writes: bool = False, settings_base: Path | None = None,
                 pool: BackendPool | None = None, timestring: str | None = None):
        self.settings = settings
        self.outdir = Path(outdir)
        self.backend_choice = backend or settings.backend
        self.models_dir = models_dir
        self.resume = resume or settings.resume_timestring
        self.on_event = on_event or (lambda e: None)
        self.should_stop = should_stop or (lambda: False)
        self.sync_writes = sync_writes
        self.settings_base = settings_base
        # A warm worker passes a pool that outlives the render: loaded pipelines stay in it
        # (keyed by model, backend choice and options) and the pool's owner closes them.
        # Without one the render keeps its own, so a continuation model can still share the
        # first model's text encoder and VAE; it is closed at the end.
        self.warm = pool is not None
        self.pool = pool if pool is not None else BackendPool()
        # A new run under a timestring the caller chose (a batch driver decides it up front,
        # so a retry on another machine finds the same run folder).
        self.timestring = timestring
        self.report: list = []
        self._saved: queue.SimpleQueue = queue.SimpleQueue()  # window_done events, from the writer
        self._pending = 0  # checkpoints queued whose window_done is not emitted yet
        self._held_steps: list[dict] = []  # steps of the next window while a window_done is pending
        self._options_key: str | None = None
        self._checked: ClipPlan | None = None  # the plan of a checked job

    def emit(self, event: str, **data) -> None:
        self.on_event(events.make(event, **data))

    @classmethod
    def for_job(cls, checked: CheckedJob, outdir: str | os.PathLike, **kwargs) -> Renderer:
        """The render of a job ``check_job`` passed: its settings and plan are not checked again."""
        spec = checked.spec
        renderer = cls(checked.settings, outdir, resume=spec.resume, timestring=spec.timestring,
                       settings_base=Path(spec.settings_base) if spec.settings_base else None, **kwargs)
        renderer._checked = checked.plan
        return renderer

    # --- setup -------------------------------------------------------------------------
    def _prepare(self) -> tuple[ClipPlan, Path, str, Manifest]:
        s = self.settings
        for label, value in (("resume timestring", self.resume), ("timestring", self.timestring)):
            if value:
                check_timestring(value, label)
        # Bad input stops here, before a folder or a file is written (a resume checks the
        # settings it continues below); a job check_job passed is not checked again.
        plan = self._checked or (None if self.resume else plan_checked(s, self.settings_base))
        check_libraries(s)
        ts = self.resume or self.timestring
        if ts:
            folder = RunFolder.of(self.outdir, s, ts, create=True)
            self._lock = folder.lock()  # a second render or resume of this run stops here, at once
        else:
            folder, self._lock = self._claim_new_run()
        self.folder = folder
        if not self.resume and self.timestring and folder.manifest_file.exists():
            raise WanError(f"run {ts} already exists in {folder.dir}; resume it or choose another timestring")
        if self.resume:
            if plan is None:  # the saved file holds the drawn seed; it is the render being continued
                self.settings = s = resumed_settings(folder, models_dir=self.models_dir)
                plan = plan_checked(s, self.settings_base)
            manifest = Manifest.load(folder.manifest_file)
        else:
            write_settings(folder.settings_file, {**s.to_dict(), "resume_timestring": folder.timestring})
            manifest = Manifest(folder.manifest_file, folder.timestring, saved_hash(folder.settings_file))
            manifest.save()
        return plan, folder.dir, folder.timestring, manifest

    def _claim_new_run(self) -> tuple[RunFolder, RunLock]:
        """A timestring no other run has: timestrings have one-second resolution, so two renders
        started in the same second into a fixed batch folder would share one; the first to lock
        it keeps it, the other moves on to a later one."""
        while True:
            folder = RunFolder.of(self.outdir, self.settings, make_timestring(), create=True)
            lock = folder.claim()
            if lock is not None:
                return folder, lock
            time.sleep(0.2)

    def _options(self):
        from ..backends.base import BackendOptions
        from ..config.presets import resolve

        s = self.settings
        # wan_preset's fields (offload, vae_tiling, attention, cache, compile, ...) with the
        # explicitly set wan_* keys on top.
        speed = resolve(s.preset, s.speed_overrides)
        return BackendOptions(dtype=s.dtype, loras=list(s.loras), models_dir=self.models_dir, **speed,
                              gpus=s.gpus,
                              official_repo_path=os.environ.get("DEFORUM_WAN_OFFICIAL_REPO"))

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> RenderResult:
        self._lock = None
        try:
            return self._run()
        finally:
            if self._lock is not None:
                self._lock.release()

    def _run(self) -> RenderResult:
        plan, run_dir, ts, manifest = self._prepare()
        s = self.settings
        self._plan = plan
        self._follow = CameraFollower.for_plan(s, plan, self.models_dir)
        self._unfollowed: set[str] = set()
        self._svi_anchor: np.ndarray | None = None  # wan_svi shot: the first frame of the video or last cut
        self._svi_said: set[str] = set()
        self._source = self._mask = None  # Video Input: its video's and mask's readers (config.source_video)
        self._control = control_frames_for(s, plan, self.models_dir)  # its depth model loaded now, before Wan's
        for rec in manifest.windows:
            if rec["index"] >= len(plan.windows) or rec != self._record(plan.windows[rec["index"]]):
                raise WanError(f"manifest of {ts} is inconsistent with its settings; cannot resume")
        # Up to FRAME_QUEUE_BYTES of frames wait for the writer (at least 8), so a window's
        # PNGs are written while the next one generates instead of stalling the GPU.
        queued = max(8, FRAME_QUEUE_BYTES // (plan.width * plan.height * 3))
        writer = FrameWriter(run_dir, ts, sync=self.sync_writes, max_queued=queued)
        colors = ColorCorrection(s.color_match, s.color_coherence, s.color_match_strength, s.color_reference)
        shot_of = {seg.start: seg.index for seg in plan.segments}

        self._head: np.ndarray | None = None  # frame 0 as written: where wan_loop's last window ends

        def keep_shot_start(i: int, frame: np.ndarray) -> None:  # each shot's first frame: its reference
            if i == 0:
                self._head = frame.astype(np.float32) / 255.0
            if i in shot_of:
                colors.shots[shot_of[i]] = frame

        stream = CarryStream(plan, writer, keep_shot_start)
        start = self._resume_point(plan, manifest, stream, ts)
        if start:
            shot = plan.segments[plan.windows[min(start, len(plan.windows) - 1)].segment]
            if shot.start < stream.written:
                colors.shots[shot.index] = read_png(frame_path(run_dir, ts, shot.start))
        else:  # from the start: nothing carried over (a carry rejected after loading included)
            stream = CarryStream(plan, writer, keep_shot_start)
        self.emit("started", run_dir=str(run_dir), timestring=ts, windows=len(plan.windows),
                  frames=plan.max_frames, resume_from_window=start, warnings=plan.warnings,
                  window_steps=[w.steps for w in plan.windows], frames_written=stream.written if start else 0)
        backend = None
        status = "interrupted"
        try:
            for w in plan.windows[start:]:
                if (backend is None or backend.spec.id != w.model) and w.native_frames > 1:  # 1: an image as it is
                    backend = self._load(w.model, w.index)
                continues = w.index > 0 and not w.cut
                previous = stream.conditioning(w.overlap) if continues else None
                frames = self._generate(backend, w, plan, stream)
                frames = colors.correct(frames, self._color_reference(colors, plan, w, previous))
                nxt = plan.windows[w.index + 1].overlap if w.index + 1 < len(plan.windows) else 0
                stream.add(frames, w.overlap, nxt)
                # The next window generates while the writer finishes these frames, then
                # saves the carry and the manifest: a manifest only counts frames on disk.
                self._pending += 1
                writer.after(self._checkpoint(plan, w, run_dir, ts, manifest, stream))
                self._emit_checkpoints()
            self._close_writer(writer, manifest)
            status = "done"
        except Interrupted:
            pass  # the frames so far are kept; the video of them is made below
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the error already unwinding is the one to report
                self._close_writer(writer, manifest)  # the checkpoints of the windows whose frames are written
            self._mark_failed(manifest, exc)
            raise
        finally:
            self._close_pool()
            for reader in (self._source, self._mask, self._control and self._control.reader):
                if reader is not None:
                    reader.close()
        self._close_writer(writer, manifest)  # interrupted: what was queued (a no-op when done)
        return self._conclude(plan, run_dir, ts, manifest, stream.written, status)

    def _conclude(self, plan: ClipPlan, run_dir: Path, ts: str, manifest: Manifest, written: int,
                  status: str) -> RenderResult:
        """The frames are on disk: the video, the camera's adherence, the manifest's status."""
        if status == "done" and written != plan.max_frames:
            manifest.set_status("failed")
            raise WanError(f"internal error: wrote {written} frames, the plan has {plan.max_frames}")
        try:
            video = self._finish(run_dir, ts, plan, written)
            adherence = self._measure_camera(run_dir, ts, plan, written) if status == "done" else None
            drift = self._measure_drift(run_dir, ts, plan) if status == "done" else None
        except BaseException as exc:  # the frames are kept: a resume makes the video again
            self._mark_failed(manifest, exc)
            raise
        if adherence is not None:
            manifest.extra["camera_adherence"] = adherence.to_dict()
        if drift is not None:
            manifest.extra["drift"] = drift
        if status == "done" and plan.loop:
            manifest.extra["loop_seam"] = self._measure_seam(run_dir, ts, written)
        manifest.set_status(status)
        if status == "done":
            self.folder.carry_file.unlink(missing_ok=True)
        result = RenderResult(run_dir, ts, written, video, self.folder.settings_file, status,
                              self.report, plan.warnings, adherence.to_dict() if adherence else None, drift)
        chart = {"drift_chart": str(run_dir / drift["chart"]) if drift and drift.get("chart") else None}
        self.emit("done" if status == "done" else "interrupted", run_dir=str(run_dir), timestring=ts,
                  frames=written, video=str(video) if video else None,
                  settings=str(result.settings_file), **(chart if status == "done" else {}))
        if status != "done":
            raise Interrupted(f"stopped after {written} frames; resume with --resume {ts}"
                              + (f" (video of those frames: {video})" if video else ""))
        return result

    def _resume_point(self, plan: ClipPlan, manifest: Manifest, stream: CarryStream, ts: str) -> int:
        """The first window to render. A resume goes on after its finished windows when their
        frames are whole and the carry is the one saved after them (loaded into ``stream``).
        Otherwise (a frame missing or broken, the carry damaged or of another window) the run
        renders again from window 0, the one window that needs no carry; the frames come out
        the same. Later windows leave the manifest."""
        done = {w["index"] for w in manifest.windows}
        start = next((w.index for w in plan.windows if w.index not in done), len(plan.windows))
        carried = start
        if start:
            try:
                carried = stream.load(self.folder.carry_file, start)
                if carried == start and stream.written != manifest.frames_written:
                    raise WanError(f"{manifest.path.name} counts {manifest.frames_written} frames,"
                                   f" the carry {stream.written}")
                bad = first_bad_frame(self.folder.dir, ts, stream.written, (plan.width, plan.height))
                if bad is not None:
                    raise WanError(f"frame {frame_name(ts, bad[0])} is {bad[1]}")
            except WanError as exc:
                self.emit("warning", message=f"{exc}: rendering run {ts} again from window 0"
                          " (the frames come out the same)")
                start = carried = 0
        kept = [w for w in manifest.windows if w["index"] < start]
        if carried == start + 1:  # killed after the carry was saved, before the manifest
            manifest.windows = kept
            manifest.record_window(self._record(plan.windows[start]), frames_written=stream.written)
            return start + 1
        if kept != manifest.windows:
            manifest.windows, manifest.frames_written = kept, stream.written if start else 0
            manifest.save()
        return start

    def _mark_failed(self, manifest: Manifest, error: BaseException) -> None:
        """The manifest says failed; a user's error that it could not says so too."""
        try:
            manifest.set_status("failed")
        except WanError as exc:
            if isinstance(error, WanError):
                raise WanError(f"{error}; the run could not be marked failed either: {exc}") from None

    def _checkpoint(self, plan: ClipPlan, w: Window, run_dir: Path, ts: str, manifest: Manifest,
                    stream: CarryStream) -> Callable[[], None]:
        """What the frame writer saves once window ``w``'s frames are on disk (state taken now)."""
        carry, written, record = stream.carry_bytes(w.index + 1), stream.written, self._record(w)
        preview = frame_path(run_dir, ts, written - 1) if written else None
        event = dict(window=w.index, windows=len(plan.windows), start_frame=w.start_frame,
                     end_frame=w.end_frame, frames_written=written, preview=str(preview) if preview else None)

        def save() -> None:
            atomic_write_bytes(self.folder.carry_file, carry)
            manifest.record_window(record, frames_written=written)
            self._saved.put(event)

        return save

    def _close_writer(self, writer: FrameWriter, manifest: Manifest) -> None:
        """The last frames and checkpoints to disk; a write error there fails the run."""
        try:
            writer.close()
        except BaseException as exc:
            self._mark_failed(manifest, exc)
            raise
        finally:
            self._emit_checkpoints()

    def _emit_checkpoints(self) -> None:
        """window_done for every saved checkpoint, from the render's own thread (event
        sinks are not thread-safe): called between windows, at each step and at the end.
        The steps of the next window held back meanwhile follow it, so consumers still see
        window_done(k) before any step of window k+1, and every step."""
        while True:
            try:
                event = self._saved.get_nowait()
            except queue.Empty:
                break
            self._pending -= 1
            self.emit("window_done", **event)
            self._release_steps(event["window"] + 1)  # the next window's steps follow its window_done
        if not self._pending:
            self._release_steps(None)

    def _release_steps(self, window: int | None) -> None:
        """The held steps up to ``window`` (None: all) go out, in order."""
        while self._held_steps and (window is None or self._held_steps[0]["window"] <= window):
            self.emit("step", **self._held_steps.pop(0))

    def _step(self, **data) -> None:
        self._emit_checkpoints()
        if self._pending:
            self._held_steps.append(data)
        else:
            self.emit("step", **data)

    @staticmethod
    def _record(w: Window) -> dict:
        """A finished window as the manifest keeps it (and a resume compares it)."""
        return {"index": w.index, "start_frame": w.start_frame, "end_frame": w.end_frame,
                "seed": w.seed, "model": w.model}

    @staticmethod
    def _color_reference(colors: ColorCorrection, plan: ClipPlan, w: Window,
                         previous: np.ndarray | None) -> np.ndarray | None:
        """What window ``w``'s colours are matched to: None for a window that starts a shot
        with nothing before it (the first, a cut) and, with the shot's reference, for the
        shot's first window (it sets the reference)."""
        if previous is None or colors.reference == "previous":
            return previous
        if plan.windows[w.index - 1].segment != w.segment:
            return None
        return colors.shots.get(w.segment)

    def _cache_key(self, model_id: str) -> str:
        if self._options_key is None:  # the options are the render's: worked out once
            self._options_key = repr(self._options())
        return json.dumps([model_id, self.backend_choice, self._options_key])

    def _close_pool(self) -> None:
        """The end of the render: a warm pool keeps its models, the render's own is closed."""
        if not self.warm:
            self.pool.close()

    def _load(self, model_id: str, window: int = 0):
        from ..backends.chain import load_backend
        from ..backends.pool import device_free_bytes, load_estimate

        key = self._cache_key(model_id)
        # The models of this render stay; a warm worker's models of an earlier job go.
        self.pool.keep_only({self._cache_key(w.model) for w in self._plan.windows})
        notes: list[str] = []
        backend = self.pool.get(key)
        if backend is None:
            self.emit("loading", model=model_id)
            spec = get_model(model_id)
            notes += self.pool.make_room(load_estimate(spec, self.models_dir), device_free_bytes())
            path_guide = any(w.wan_camera == "guide" and w.model == model_id for w in self._plan.windows)
            choice = self.backend_choice
            if (choice or "auto") == "auto" and (any(w.mode == "v2v" for w in self._plan.windows) or self._plan.control):
                choice = "diffusers"  # the one with a video-to-video pipeline and VACE's conditioning_scale
            backend, report = load_backend(spec, choice, self._options(),
                                           share_from=self.pool.backends(), path_guide=path_guide)
            self.pool.put(key, backend)
            self.report.extend(report)
        else:
            report = []
        if not self.warm:  # a model no later window needs is closed (what it shares lives on in its partner)
            self.pool.keep_only({self._cache_key(w.model) for w in self._plan.windows[window:]})
        else:  # both stay loaded; the idle one leaves the GPU when the active one needs the room
            notes += self.pool.make_room(backend.bytes_to_unpark(), device_free_bytes(), active=backend)
        self.emit("loaded", model=model_id, backend=backend.name, warm=not report,
                  report=[list(r) for r in report], notes=list(getattr(backend, "notes", [])) + notes)
        return backend

    def _generate(self, backend, w: Window, plan: ClipPlan, stream: CarryStream) -> list[np.ndarray]:
        from ..backends.base import GenerateRequest

        image, context, video = self._start_of(w, plan, stream)
        if w.native_frames == 1 and w.start_image:  # the frame is the guided image: nothing to generate
            return [image]
        last_image = self._last_image(w, plan) if w.last_image else None
        vace_frames, vace_keep, path_guide = self._camera_inputs(backend, w, plan, image, context, last_image)
        if w.control:  # VACE: the segment's control frames (grey source, or the control video's), generated
            vace_frames, vace_keep = self._control_segment(w, plan)
        svi = self._svi_input(backend, w, plan, stream, image) if image is not None else None
        req = GenerateRequest(mode=w.mode, prompt=w.prompt, negative_prompt=w.negative_prompt,
                              num_frames=w.native_frames, width=plan.width, height=plan.height,
                              seed=w.seed, guidance_scale=w.guidance_scale, steps=w.steps,
                              image=image, guidance_scale_2=w.guidance_scale_2, shift=w.shift,
                              context=context, vace_frames=vace_frames, vace_keep=vace_keep,
                              path_guide=path_guide, svi=svi, video=video, last_image=last_image,
                              strength=w.denoise if video is not None else None,
                              control_scale=w.control_scale if self._control is not None else None)

        def on_step(done: int, total: int) -> None:
            self._step(window=w.index, step=done, steps=total)

        frames = backend.generate(req, on_step=on_step, should_stop=self.should_stop)
        if self.should_stop():  # backends without a step callback stop between windows
            raise Interrupted("stopped")
        if w.index == 0 or w.cut:  # as the PNG holds it, so a resume reads back the same anchor
            self._svi_anchor = to_uint8(image if image is not None else frames[0]).astype(np.float32) / 255.0
        if self.settings.svi == "pro":  # carried to the next window, and saved with the carry
            stream.svi_latent = backend.last_latent
        if w.index > 0 and not w.cut:
            frames = list(frames[1:])  # Wan's copy of the conditioning frame
            if context is not None:  # the kept overlap is the video's own frames, not a re-render
                frames[: w.overlap] = list(context[1:])
            if vace_frames is not None:  # strict look: the camera's pixels exactly, Wan's where it uncovered
                paste_kept(frames, vace_frames, vace_keep, len(context) - 1)
            return frames[: w.overlap + w.new_frames]
        frames = list(frames[: w.new_frames])
        if w.start_image:  # the guided image is its frame, exactly (Wan's copy of it is a re-render)
            frames[0] = image
        if vace_frames is not None:  # a mask video: the source frame as it is outside the mask
            paste_kept(frames, vace_frames, vace_keep, 0)
        return frames

    def _camera_inputs(self, backend, w: Window, plan: ClipPlan, image, context, last_image):
        """How window ``w`` follows the camera: (VACE's warped frames, their keep share, the
        path guide), each or None."""
        vace_frames = vace_keep = path_guide = None
        if not w.wan_camera or self._follow is None:
            return vace_frames, vace_keep, path_guide
        if w.wan_camera == "vace" and context is not None and backend.takes_camera_frames:
            vace_frames, vace_keep = self._follow.vace_frames(w, context)
        elif backend.takes_path_guide:
            path_guide = self._follow.path_guide(
                w, lead_frames(image, context, lambda: self._still(backend, w, plan)))
            if last_image is not None:  # the path leads to the image the window ends on
                path_guide.frames[-1], path_guide.cover[-1] = last_image, 1.0
        elif backend.name not in self._unfollowed:
            self._unfollowed.add(backend.name)
            self.emit("warning", message=f"the {backend.name} backend has no step hook: its windows do not"
                      " follow the camera (wan_backend diffusers does)")
        return vace_frames, vace_keep, path_guide

    def _start_of(self, w: Window, plan: ClipPlan, stream: CarryStream):
        """What window ``w`` starts from: (image, VACE context, v2v video), each or None."""
        if w.mode == "v2v":
            return None, None, self._source_segment(w, plan, stream)
        if w.mode != "i2v":
            return None, None, None
        if w.start_image:  # a guided image: the window starts from it
            return self._keyframe(w.start_image, plan), None, None
        if w.index == 0:
            return load_image(self.settings.init_image, plan.width, plan.height, self.settings_base,
                              self.settings.init_fit), None, None
        if w.context:
            return None, stream.context(w.overlap), None  # VACE keeps these frames (mask 0)
        return stream.conditioning(w.overlap), None, None

    def _keyframe(self, image: str, plan: ClipPlan) -> np.ndarray:
        return load_image(image, plan.width, plan.height, self.settings_base, self.settings.init_fit,
                          label="guided image")

    def _last_image(self, w: Window, plan: ClipPlan) -> np.ndarray:
        """The image window ``w`` ends on: a guided image, or (wan_loop) the video's first frame
        as written."""
        if w.last_image != LOOP:
            return self._keyframe(w.last_image, plan)
        if self._head is None:  # resumed: frame 0 is on disk
            self._head = read_png(self.folder.frame(0)).astype(np.float32) / 255.0
        return self._head

    def _source_segment(self, w: Window, plan: ClipPlan, stream: CarryStream) -> np.ndarray:
        """A v2v window's video: the video's own last ``overlap + 1`` frames where it continues,
        then its segment of the source, decoded at the render size."""
        source = self._source_frames(w, plan)
        return np.concatenate([stream.context(w.overlap), source]) if w.index > 0 and not w.cut else source

    def _control_segment(self, w: Window, plan: ClipPlan) -> tuple[np.ndarray, np.ndarray]:
        """A VACE window's control segment: grey source frames (or the control video's frames of its
        kind) where it is generated (everywhere, or inside the mask video's white), the source frame
        as it is where the mask keeps it."""
        from ..config.source_video import SourceReader

        video = self.settings.video_input
        control = self._control.frames(w.source_frames) if self._control is not None else None
        if video is None or not video.mask_path:
            control = control if control is not None else to_gray(self._source_frames(w, plan))
            return control, np.zeros(control.shape[:3], np.float32)
        source = self._source_frames(w, plan)
        control = control if control is not None else to_gray(source)
        if self._mask is None:
            self._mask = SourceReader(video.mask_path, plan.width, plan.height)
        change = to_gray(np.stack(self._mask.frames(w.source_frames)))[..., 0] >= 0.5
        if video.invert_mask:
            change = ~change
        return np.where(change[..., None], control, source), (~change).astype(np.float32)

    def _source_frames(self, w: Window, plan: ClipPlan) -> np.ndarray:
        """Window ``w``'s source frames (``Window.source_frames``) at the render size."""
        from ..config.source_video import SourceReader

        if self._source is None:
            self._source = SourceReader(self.settings.video_input.path, plan.width, plan.height)
        return np.stack(self._source.frames(w.source_frames))

    def _svi_input(self, backend, w: Window, plan: ClipPlan, stream: CarryStream, image: np.ndarray):
        """wan_svi's conditioning of a continuation window (backends/svi.py): the frames from
        its conditioning frame on, and the anchor (read back from disk after a resume); SVI 2.0
        Pro's of every I2V window (``_svi_pro``)."""
        from ..backends.svi import MODES, SviInput

        mode = self.settings.svi
        first = w.index == 0 or w.cut
        if mode == "off" or (first and mode != "pro"):
            return None
        if not (backend.takes_svi_pro if mode == "pro" else backend.takes_svi):
            if backend.name not in self._svi_said:
                self._svi_said.add(backend.name)
                self.emit("warning", message=f"wan_svi {mode}: the {backend.name} backend builds Wan's own"
                          " I2V conditioning (wan_backend diffusers with an I2V model builds SVI's"
                          + (", a Wan 2.2 I2V-A14B model SVI 2.0 Pro's)" if mode == "pro" else ")"))
            return None
        if mode == "pro":
            experts = {expert for _, _, expert in self.settings.loras}
            if not {"high", "low"} <= experts and "loras" not in self._svi_said:
                self._svi_said.add("loras")
                self.emit("warning", message="wan_svi pro is SVI 2.0 Pro's input for its high/low LoRA pair;"
                          " wan_loras has no pair (path:weight:high and path:weight:low)")
            return self._svi_pro(w, plan, stream, image, first)
        count, pad = MODES[mode]
        motion = stream.context(w.overlap)[:count]
        if len(motion) < count and "overlap" not in self._svi_said:
            self._svi_said.add("overlap")
            self.emit("warning", message=f"wan_svi {mode} takes {count} motion frames; wan_overlap"
                      f" {w.overlap} hands on {len(motion)} (wan_overlap {count - 1} hands on all)")
        return SviInput(motion, self._anchor(w, plan), pad)

    def _anchor(self, w: Window, plan: ClipPlan) -> np.ndarray:
        """The first frame of the video or of the last cut, or the init image it started from
        (read back after a resume, as ``_generate`` kept it)."""
        if self._svi_anchor is None:
            first = next(x for x in reversed(plan.windows[: w.index + 1]) if x.index == 0 or x.cut)
            if first.index == 0 and first.mode == "i2v":
                image = to_uint8(load_image(self.settings.init_image, plan.width, plan.height, self.settings_base,
                                            self.settings.init_fit))
            else:
                image = read_png(self.folder.frame(first.start_frame))
            self._svi_anchor = image.astype(np.float32) / 255.0
        return self._svi_anchor

    def _svi_pro(self, w: Window, plan: ClipPlan, stream: CarryStream, image: np.ndarray, first: bool):
        """SVI 2.0 Pro (backends/svi.py): a first window anchors on its own image; a continuation
        on the shot's anchor and the last latent of the window before. That latent decodes to
        the previous window's last 4 frames, which only wan_overlap 4 re-renders in place."""
        from ..backends.svi import SviInput

        latent = None if first else stream.svi_latent
        if latent is None:  # as SVI's own first clip
            if not first:
                self.emit("warning", message=f"wan_svi pro: window {w.index - 1} left no latent (its backend"
                          f" cannot give one); window {w.index} starts as a first window")
            return SviInput(image[None], image, "latent")
        if w.overlap != 4 and "overlap" not in self._svi_said:
            self._svi_said.add("overlap")
            self.emit("warning", message=f"wan_svi pro carries the previous window's last latent, its last"
                      f" 4 frames; wan_overlap {w.overlap} crossfades other frames with their re-render"
                      " (set wan_overlap 4)")
        return SviInput(image[None], self._anchor(w, plan), "latent", latent)

    def _still(self, backend, w: Window, plan: ClipPlan) -> np.ndarray:
        """One frame of a text-to-video window, made first with its prompt and seed: what the
        camera moves along the window's path."""
        from ..backends.base import GenerateRequest

        self.emit("note", message=f"window {w.index}: one still frame first, for Deforum's camera to move")
        req = GenerateRequest(mode="t2v", prompt=w.prompt, negative_prompt=w.negative_prompt, num_frames=1,
                              width=plan.width, height=plan.height, seed=w.seed, guidance_scale=w.guidance_scale,
                              steps=w.steps, guidance_scale_2=w.guidance_scale_2, shift=w.shift)
        return backend.generate(req, should_stop=self.should_stop)[0]

    def _measure_camera(self, run_dir: Path, ts: str, plan: ClipPlan, written: int):
        """How closely the written frames follow Deforum's camera (a note, and the manifest)."""
        camera = self.settings.camera
        video = self.settings.hybrid is not None and self.settings.hybrid.moves
        if camera is None or not (camera.moves or video) or importlib.util.find_spec("cv2") is None:
            return None
        from .adherence import measure
        from .hybrid_motion import video_motion

        # each window with the pair that leads into it (the seam it made)
        spans = [(w.index, max(0, w.start_frame - 1), min(w.end_frame, written)) for w in plan.windows]
        result = measure(camera.scaled(plan.width, plan.height),
                         lambda k: read_png(frame_path(run_dir, ts, k)),
                         [span for span in spans if span[2] - span[1] > 1],
                         video_motion(self.settings, plan.width, plan.height) if video else None)
        self.emit("note", message=result.describe())
        return result

    def _measure_drift(self, run_dir: Path, ts: str, plan: ClipPlan) -> dict | None:
        """How far colour and sharpness moved along each shot (a note, the manifest and a chart
        next to it)."""
        if importlib.util.find_spec("cv2") is None:
            return None
        from .drift import chart, measure

        result = measure(lambda k: read_png(frame_path(run_dir, ts, k)),
                         [(w.segment, w.start_frame, w.end_frame, w.index == 0 or w.cut) for w in plan.windows])
        self.emit("note", message=result.describe())
        data = result.to_dict()
        if result.windows:
            try:
                data["chart"] = str(chart(result, self.folder.drift_chart_file).relative_to(self.folder.dir))
            except OSError as exc:  # a picture is not worth failing a finished render for
                self.emit("warning", message=f"cannot write the drift chart: {exc.strerror or exc}")
        return data

    def _measure_seam(self, run_dir: Path, ts: str, written: int) -> dict:
        """wan_loop: the jump from the last frame to the first against the motion between neighbours."""
        from . import seam

        result = seam.measure(lambda k: read_png(frame_path(run_dir, ts, k)).astype(np.float32) / 255.0, written)
        self.emit("note", message=seam.describe(result))
        return result

    def _finish(self, run_dir: Path, ts: str, plan: ClipPlan, written: int) -> Path | None:
        s = self.settings
        if s.write_srt:
            try:
                write_srt(self.folder.srt_file, plan.fps,
                          [(seg.start, min(seg.end, written), seg.prompt) for seg in plan.segments
                           if seg.start < written])
            except OSError as exc:  # the folder, not the hidden temp file the error names
                raise WanError(f"cannot write {self.folder.srt_file.name} in {run_dir}: {exc.strerror or exc}"
                               ) from None
        if s.skip_video_creation or written == 0:
            return None
        soundtrack = s.soundtrack
        if soundtrack and "://" in soundtrack:
            self.emit("warning", message=f"soundtrack {soundtrack} is a URL; the video has no sound"
                      " (give a local file)")
            soundtrack = None
        return make_video(run_dir, ts, plan.fps, written, soundtrack=soundtrack)


def check_outdir(outdir: str | os.PathLike) -> None:
    """Fail in seconds, before any model loads, when the output folder is unusable."""
    try:
        Path(outdir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WanError(f"cannot create output folder {outdir}: {exc.strerror or exc}") from None
    check_writable(outdir)
