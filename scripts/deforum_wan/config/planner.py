"""RenderSettings -> ClipPlan: which Wan windows to generate, in what order, with what.

Pure arithmetic (no torch): the plan is printable before any GPU time is spent.

Timeline (docs/settings.md, Timing): prompt segment i covers output frames [k_i, k_i+1) at the
settings' fps. It is generated as M_i "new" native frames at the model's fps
(M_i = round(L_i * native / fps)) and retimed onto exactly L_i output frames, so
every prompt starts on its keyframe and the video has exactly max_frames frames.
A segment's new frames come from chained windows of at most ``window`` frames (4n+1):
the first window of the video is T2V (all its frames are new); every later window is
I2V from the frame ``overlap`` before the end of what exists, its frame 0 (Wan's copy
of the conditioning frame) is dropped and its next ``overlap`` frames are crossfaded
with the existing tail, so it adds F - 1 - overlap new frames.

Video Input (Deforum's animation_mode): output frame i restyles the i-th kept source frame.
On a text-to-video model every window is video-to-video (``v2v``): it is handed its own
segment of the source, one source frame per native frame (the nearest at that frame's output
time, by the same retime map), denoised at 1 - strength_schedule at the window's start. A
continuation window's first ``overlap + 1`` frames are the video's own last frames instead, so
the restyle goes on from them as an I2V window would. A VACE model chains as usual (its
context kept) and is shown its segment's grey frames to regenerate (``control`` gray).

Hybrid video (2D/3D): output frame i uses the i-th kept input frame as well; the video's motion
and composite move the path a guided window follows (``render.hybrid_motion``), so every window
is guided under a still camera too (``Window.motion`` names what its path follows).
A control video (config/control.py: a ControlNet unit's video or wan_control) conditions every
window of a VACE model the same way: its frames by the same map (``source_frames``), shown as
the control kind (``control``: depth, canny, gray, flow) at the unit's weight (``control_scale``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import SettingsError
from ..models.registry import ModelSpec, continuation_model
from .control import ControlVideo
from .hybrid import Hybrid
from .parseq import PROMPT_FIELD
from .schedule import seed_at
from .settings import RenderSettings, VideoInput, video_mask_of
from .source_video import source_frame_of

MIN_WINDOW = 5
LOOP = "@frame 0"  # Segment.end_image / Window.last_image of wan_loop: the video's own first frame
# wan_camera guide's default free/lock shares of the steps: Time-to-Move's camera setting
# (2 and 5 of 50 steps), for a file at Deforum's default strength; scaled by its strength.
GUIDE_FREE, GUIDE_LOCK = 0.04, 0.10
DEFORUM_STRENGTH = 0.65


@dataclass
class Segment:
    index: int
    start: int  # output frame, inclusive
    end: int  # output frame, exclusive
    prompt: str
    negative_prompt: str
    native_frames: int  # new native frames generated for it (M_i)
    cut: bool = False  # begins at a Deforum cut (strength 0), not at a prompt key
    keyframe: str = ""  # begins at a guided image (its file): the first window starts from it
    end_image: str = ""  # its last window ends on this image (the next keyframe's; LOOP: frame 0)


@dataclass
class Window:
    index: int
    segment: int
    mode: str  # "t2v" | "i2v"
    model: str
    start_frame: int  # first output frame made from this window's new frames
    end_frame: int  # exclusive
    native_frames: int  # frames Wan generates (4n+1)
    new_frames: int  # of those, frames added to the video's native stream
    overlap: int  # frames crossfaded with the previous window
    native_start: int  # segment-local native index of the first new frame
    seed: int
    guidance_scale: float
    guidance_scale_2: float | None
    steps: int
    shift: float
    prompt: str
    negative_prompt: str
    context: int = 0  # frames of the video kept as VACE context (mask 0): conditioning + overlap
    # starts over, no overlap: at a Deforum cut (strength 0, a new T2V window) or at a guided
    # image (start_image: I2V from it, the image written as its first frame)
    cut: bool = False
    start_image: str = ""
    last_image: str = ""  # the image its last frame is pinned to (FLF2V last_image, VACE mask 0)
    camera: dict = field(default_factory=dict)  # Deforum's camera over the window (config.camera.summarize)
    # wan_camera as this window follows it: "" (not: still, or wan_camera off), "guide" (warped
    # path held for the shares camera_free/camera_lock of the steps) or "vace" (VACE keeps the warp).
    wan_camera: str = ""
    camera_free: float = 0.0
    camera_lock: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)  # where steps, guidance, shift... came from
    # Video Input: the source frame behind each native frame after the lead (the conditioning
    # frame and the overlap, which come from the video so far); for v2v the share of the steps
    # that denoise them (1 - Deforum's strength), for a VACE model the control they become.
    source_frames: list[int] = field(default_factory=list)
    denoise: float = 0.0
    control: str = ""  # "gray": VACE regenerates the source's grey frames (VACE's colourise task)
    # What a guided window's path follows: "camera", "video" (hybrid_motion), "video+camera",
    # "composite" (a hybrid composite under a still camera); "" when not guided
    motion: str = ""
    control_scale: float = 1.0  # the control video's strength (VACE's conditioning_scale)


@dataclass
class ClipPlan:
    fps: float  # output fps
    max_frames: int  # output frames
    model: str
    continue_model: str
    native_fps: int
    width: int
    height: int
    retime: str
    overlap: int
    window_limit: int
    segments: list[Segment]
    windows: list[Window]
    warnings: list[str] = field(default_factory=list)
    size_source: str = ""
    parseq: str = ""  # the Parseq manifest's summary (what it keyframes); "" without one
    video_input: str = ""  # Video Input: the source video's path
    video_mask: str = ""  # and its mask video's (use_mask_video): frames change only inside it
    source_frames: list[int] = field(default_factory=list)  # Video Input, hybrid, control: the source frame of each output frame
    hybrid_video: str = ""  # hybrid video: its path
    hybrid: str = ""  # and what its motion and composite do to the guided windows
    control: str = ""  # a control video's kind (depth, canny, gray, flow), "" without one
    control_video: str = ""  # and its path; its frame of each output frame is source_frames'
    loop: bool = False  # wan_loop: the last window ends on frame 0
    anchors: dict[int, str] = field(default_factory=dict)  # output frame -> the guided image pinned there

    def to_json(self) -> dict:
        return asdict(self)


def window_limit(spec: ModelSpec, native_fps: int, clip_duration: float) -> int:
    """Largest 4n+1 frame count for one window: the model's limit, or clip_duration."""
    limit = spec.max_frames
    if clip_duration > 0:
        limit = min(limit, round_4n1_down(int(clip_duration * native_fps) + 1))
    return max(limit, MIN_WINDOW)


def round_4n1_up(n: int) -> int:
    return max(MIN_WINDOW, 4 * math.ceil((max(n, 1) - 1) / 4) + 1)


def round_4n1_down(n: int) -> int:
    return max(MIN_WINDOW, 4 * ((max(n, 1) - 1) // 4) + 1)


def make_plan(settings: RenderSettings) -> ClipPlan:
    spec = settings.model
    warnings = list(settings.warnings)
    video = settings.video_input
    v2v = bool(video) and spec.kind == "t2v"  # a VACE model takes the source as a gray control
    pinned_start = any(k.frame == 0 for k in settings.keyframes) and not video
    first_mode = "v2v" if v2v else "i2v" if (settings.init_image or pinned_start) and not video else "t2v"
    # The size first (the first model's trained sizes): the I2V partner can depend on it.
    size, size_source = _size(settings, spec, settings.continue_model or spec, warnings)
    if settings.control is not None:
        _check_control_model(settings)
    if video:  # every window restyles its segment on the one model
        _check_video_model(settings)
        cont = first_model = spec
    else:
        cont = settings.continue_model or (spec if spec.can_i2v else _partner(spec, settings, size))
        first_model = cont if first_mode == "i2v" and not spec.can_i2v else spec
        _check_models(settings, first_mode, first_model, cont)
    native = spec.native_fps
    multiple = max(spec.size_multiple, cont.size_multiple)
    want_w, want_h = size
    width, height = want_w - want_w % multiple, want_h - want_h % multiple
    if (width, height) != (want_w, want_h):
        warnings.append(f"size rounded down to {width}x{height} (multiple of {multiple} for {cont.id})")
    if width < multiple or height < multiple:
        raise SettingsError(f"size {want_w}x{want_h} is too small for {cont.id}", settings.source)

    limit = min(window_limit(spec, native, settings.clip_duration),
                window_limit(cont, native, settings.clip_duration))
    overlap = settings.overlap
    if overlap > limit - 2:
        raise SettingsError(f"wan_overlap={overlap} leaves no new frames in a {limit}-frame window;"
                            f" use at most {limit - 2}", settings.source)

    if settings.retime == "native":
        fps, max_frames = float(native), max(1, round(settings.max_frames * native / settings.fps))
        scale = native / settings.fps
    else:
        fps, max_frames, scale = settings.fps, settings.max_frames, None
    camera = settings.camera if settings.camera is not None and settings.camera.mode != "None" else None
    cuts = camera.cuts() if camera is not None and settings.retime != "native" else []
    if cuts and not first_model.can_t2v:
        warnings.append(f"Deforum's cuts (strength 0 at {cuts[:5]}) need a text-to-video model; {first_model.id}"
                        " continues through them")
        cuts = []
    pins, ends = _pins(settings, cont, scale, max_frames, limit, warnings)
    segments = _segments(settings, max_frames, scale, native / fps, cuts, pins, ends, settings.loop)

    windows: list[Window] = []
    stream = 0  # native frames so far in the whole video
    for seg in segments:
        pieces = _pieces(seg, stream, not windows, overlap, limit,
                         camera if settings.camera_min_coverage > 0 else None, segments, settings.camera_min_coverage)
        local = 0
        for first, ov, lead, new in pieces:
            last_piece = local + new == seg.native_frames
            end_image = seg.end_image if last_piece else ""
            need = new + (0 if first else 1 + ov) + (1 if end_image else 0)
            out_start = seg.start + _out_index(local, seg)
            out_end = seg.start + _out_index(local + new, seg)
            at = min(out_start, seg.end - 1)
            start_image = seg.keyframe if first and local == 0 else ""
            model = first_model if first and not start_image else cont
            sampling, sources = _sampling(settings, model, at)
            negative = seg.negative_prompt
            if not negative:  # the official code's own rule: an empty negative means Wan's default
                negative, sources["negative_prompt"] = model.default_negative, f"model {model.id} (Wan's default)"
            # VACE keeps the frames it continues from (the conditioning frame and the overlap)
            # as real context; I2V-only models see one frame and crossfade the overlap.
            context = ov + 1 if not first and model.kind == "vace" else 0
            moves = _window_camera(camera, segments, stream - lead, lead + new)
            follow = _follow(settings, camera, moves, at, context, sources)
            follow["motion"] = _motion_of(settings, moves) if follow["wan_camera"] else ""
            prompt = seg.prompt
            if settings.camera_prompt and follow["wan_camera"]:
                from .camera import describe

                prompt = f"{prompt}, {describe(moves)}" if prompt else describe(moves)
            restyle = _restyle(settings, segments, stream - lead, lead, round_4n1_up(need), at, fps,
                               sampling["steps"]) if video or settings.control else {}
            mode = "i2v" if start_image else first_mode if first or v2v else "i2v"
            windows.append(Window(
                index=len(windows), segment=seg.index, mode=mode,
                model=model.id, start_frame=out_start, end_frame=max(out_end, out_start),
                # a stretch of one frame that is a guided image: the image itself, nothing generated
                native_frames=1 if start_image and need == 1 else round_4n1_up(need),
                new_frames=new, overlap=ov, native_start=local,
                seed=seed_at(at, settings.seed, settings.seed_behavior, settings.seed_iter_N,
                             settings.seed_schedule),
                **sampling, prompt=prompt, negative_prompt=negative, context=context,
                sources={**sources, **_from_manifest(settings)},
                cut=first and bool(windows), start_image=start_image,
                last_image=end_image, camera=moves, **follow, **restyle))
            local += new
            stream += new
    _check_pinned(settings, windows, cont, first_model, warnings)
    return ClipPlan(fps=fps, max_frames=max_frames, model=spec.id, continue_model=cont.id,
                    native_fps=native, width=width, height=height, retime=settings.retime,
                    overlap=overlap, window_limit=limit, segments=segments, windows=windows,
                    warnings=warnings, size_source=size_source,
                    parseq=settings.parseq.summary() if settings.parseq is not None else "",
                    video_input=video.path if video else "", video_mask=video.mask_path if video else "",
                    source_frames=output_source_frames(video or settings.hybrid or settings.control, max_frames,
                                                       settings.fps / fps)
                    if video or settings.hybrid or settings.control else [], hybrid=_hybrid_line(settings),
                    hybrid_video=settings.hybrid.path if settings.hybrid else "",
                    control=settings.control.kind if settings.control else "",
                    control_video=settings.control.path if settings.control else "",
                    loop=any(w.last_image == LOOP for w in windows),
                    anchors={seg.start: seg.keyframe for seg in segments if seg.keyframe})


def _pieces(seg: Segment, stream: int, video_start: bool, overlap: int, limit: int, camera,
            segments: list[Segment], min_coverage: float) -> list[tuple[bool, int, int, int]]:
    """How segment ``seg`` is split into windows: (starts over, overlap, lead, new frames) each.
    A segment that ends on an image gives its last window one frame more (the image) and makes
    that window exactly 4n+1 frames long, so the image is its last frame: the segment's native
    frame count moves by up to 3 (its retime map takes them up)."""
    out: list[list] = []
    local = 0
    while local < seg.native_frames:
        first = (video_start and not out) or ((seg.cut or bool(seg.keyframe)) and local == 0)
        ov = 0 if first else min(overlap, stream - 1)
        cap = limit if first else limit - 1 - ov
        lead = 0 if first else ov + 1  # the conditioning frame and the overlap come first
        if seg.end_image:
            cap -= 1  # room for the image it ends on
        if camera is not None:
            cap = _camera_cap(camera, segments, stream - lead, lead, cap, min_coverage)
        left_windows = math.ceil((seg.native_frames - local) / max(cap, 1))
        new = min(cap, math.ceil((seg.native_frames - local) / left_windows))
        out.append([first, ov, lead, new])
        local += new
        stream += new
    if seg.end_image and out:  # lead + new + 1 <= limit (the cap above), and limit is 4n+1
        first, ov, lead, new = out[-1]
        fitted_new = round_4n1_up(lead + new + 1) - lead - 1
        out[-1][3] = fitted_new
        seg.native_frames += fitted_new - new
    return [tuple(p) for p in out]


def _pins(settings: RenderSettings, cont: ModelSpec, scale: float | None, max_frames: int, limit: int,
          warnings: list[str]) -> tuple[dict[int, str], bool]:
    """The guided images by output frame, and whether windows can end on them (the continuation
    model takes a last image)."""
    pins = {k.frame if scale is None else round(k.frame * scale): k.image for k in settings.keyframes}
    pins = {f: image for f, image in pins.items() if f < max_frames}
    ends = cont.kind in ("flf2v", "vace")
    if (pins or settings.loop) and not ends:
        warnings.append(f"{cont.id} cannot end a window on an image (no last image): windows start at the guided"
                        " images (I2V from each)" + ("; wan_loop needs an FLF2V or VACE model to close the loop"
                                                     if settings.loop else ""))
    if (pins or settings.loop) and ends and settings.overlap > limit - 3:
        raise SettingsError(f"wan_overlap={settings.overlap} leaves no room for the image a {limit}-frame window"
                            f" ends on; use at most {limit - 3}", settings.source)
    return pins, ends


def _check_pinned(settings: RenderSettings, windows: list[Window], cont: ModelSpec, first_model: ModelSpec,
                  warnings: list[str]) -> None:
    """What the windows' pinned frames cannot do, refused before any weights load. FLF2V renders
    between two given frames (its transformer takes both images' embeddings): refused, naming
    them, when a window it runs has no last image."""
    if settings.gpus > 1 and any(w.last_image for w in windows):
        raise SettingsError("a window that ends on an image (guided images, wan_loop) runs on one GPU; set wan_gpus"
                            " to 1", settings.source)
    if windows and windows[-1].last_image == LOOP and windows[-1].index == 0 and windows[0].mode != "i2v":
        raise SettingsError("wan_loop: the video is one window, which cannot end on the frame it has yet to make;"
                            " give it an init image or a shorter wan_clip_duration", settings.source)
    if settings.init_image and windows and windows[0].start_image:
        warnings.append("init_image: the guided image at frame 0 starts the video instead, as in Deforum")
    flf2v = next((m for m in (first_model, cont) if m.kind == "flf2v"), None)
    if flf2v is None:
        return
    if not any(w.last_image for w in windows):
        raise SettingsError(f"{flf2v.id} renders between a first and a last image, and no window here has a"
                            " last image: give guided images (use_looper, init_images) or wan_loop true,"
                            " or use an I2V or VACE model (e.g. wan2.1-i2v-14b-720p, wan2.1-vace-14b)",
                            settings.source)
    loose = [w for w in windows if not w.last_image and w.model == flf2v.id and w.native_frames > 1]
    if loose:
        spans = ", ".join(f"{w.index} (frames {w.start_frame}-{w.end_frame - 1})" for w in loose[:4])
        raise SettingsError(f"{flf2v.id} renders between a first and a last image; windows {spans}"
                            f"{' ...' if len(loose) > 4 else ''} end on no image: put guided images at most"
                            " a window apart and one on the last frame (max_f), or set wan_loop true,"
                            " or use a VACE model", settings.source)


def _from_manifest(settings: RenderSettings) -> dict[str, str]:
    """A window's values a Parseq manifest gives (its sources entries)."""
    manifest = settings.parseq
    if manifest is None:
        return {}
    out = {}
    if manifest.field_of("seed_schedule"):
        out["seed"] = "Parseq manifest seed (its fractional part, the subseed strength, has no Wan counterpart)"
    if PROMPT_FIELD in manifest.fields:
        out["prompt"] = "Parseq manifest deforum_prompt at the window's segment"
    return out



def _motion_of(settings: RenderSettings, moves: dict) -> str:
    from .camera import still

    video = settings.hybrid is not None and settings.hybrid.moves
    return "+".join((["video"] if video else []) + ([] if still(moves) else ["camera"])) or "composite"


def _hybrid_line(settings: RenderSettings) -> str:
    """What a hybrid video does to the guided windows, for the plan."""
    hybrid = settings.hybrid
    if hybrid is None:
        return ""
    parts = []
    if hybrid.moves:
        parts.append(f"hybrid_motion {hybrid.motion}: the {hybrid.describe()} from input frame f-1 to f moves each"
                     " guided window's path after Deforum's camera step (the camera adherence is measured against"
                     " both)")
    if hybrid.composite != "None":
        alpha = sorted({round(a, 3) for a in hybrid.alpha})
        shown = f"{alpha[0]:g}" if len(alpha) == 1 else f"{alpha[0]:g}..{alpha[-1]:g}"
        parts.append(f"hybrid_composite {hybrid.composite}: input frame f blended into the guide's frame f at"
                     f" hybrid_comp_alpha_schedule ({shown}), the frames Wan starts from and holds for the window's"
                     " free/held shares of the steps")
    return "; ".join(parts)


def output_source_frames(video: VideoInput | Hybrid | ControlVideo, frames: int, per_output: float = 1.0) -> list[int]:
    """The source video frame (its index, from 0) each of ``frames`` output frames restyles;
    ``per_output``: settings frames per output frame (wan_retime native renders at Wan's fps).
    Empty until the video was read (``load_settings(read_video=True)``)."""
    if not video.kept:
        return []
    return [source_frame_of(list(video.kept), i * per_output) for i in range(frames)]


def _restyle(settings: RenderSettings, segments: list[Segment], first_native: int, lead: int, frames: int,
             at: int, fps: float, steps: int) -> dict:
    """A Video Input (or control video) window's source frames (after its ``lead``) and denoise
    (or control), from the source frame nearest each native frame's output time. The denoise is
    at least one of its ``steps``: the pipeline runs int(steps * denoise) of them."""
    video, control = settings.video_input, settings.control
    per_output = settings.fps / fps
    kept = list(video.kept if video else control.kept)
    source = [source_frame_of(kept, _stream_time(segments, g) * per_output)
              for g in range(first_native + lead, first_native + frames)] if kept else []
    if control is not None:  # the same frames of the control video (same extraction and count)
        scale = control.weight[min(int(round(at * per_output)), len(control.weight) - 1)]
        return {"source_frames": source, "control": control.kind, "control_scale": scale}
    if settings.model.kind == "vace":
        return {"source_frames": source, "control": "gray"}
    strength = video.strength[min(int(round(at * per_output)), len(video.strength) - 1)]
    return {"source_frames": source, "denoise": round(max(1 - strength, min_denoise(steps)), 4)}


def min_denoise(steps: int) -> float:
    """The least video-to-video strength that still runs one of ``steps`` (diffusers takes
    int(steps * strength) steps)."""
    return math.ceil(1e4 / max(steps, 1)) / 1e4


def _check_control_model(settings: RenderSettings) -> None:
    """A control video conditions VACE windows, on diffusers' WanVACEPipeline (conditioning_scale)."""
    control = settings.control
    for model in (settings.model, settings.continue_model):
        if model is not None and model.kind != "vace":
            raise SettingsError(f"{control.key} (a {control.kind} control video) needs a VACE model for every window;"
                                f" {model.id} is {model.kind.upper()}: choose e.g. wan2.1-vace-1.3b or"
                                " wan2.1-vace-14b", settings.source)
    if settings.backend == "official":
        raise SettingsError(f"{control.key}: the control strength is diffusers' conditioning_scale; set wan_backend"
                            " to diffusers or auto", settings.source)


def _check_video_model(settings: RenderSettings) -> None:
    """Video Input runs WanVideoToVideoPipeline on a text-to-video model, or gives a VACE model
    the source as its control video."""
    spec = settings.model
    if spec.kind not in ("t2v", "vace"):
        raise SettingsError(f"animation_mode Video Input restyles the video with a text-to-video model"
                            f" (video-to-video) or a VACE model (the source as its control); {spec.id} is"
                            f" {spec.kind.upper()}: choose e.g. wan2.1-t2v-1.3b or wan2.1-vace-1.3b", settings.source)
    if spec.kind == "t2v" and video_mask_of(settings.raw) is not None:
        raise SettingsError("use_mask_video needs a VACE model (e.g. wan2.1-vace-1.3b): Wan's video-to-video has"
                            " no mask", settings.source)
    if settings.continue_model is not None:
        raise SettingsError("animation_mode Video Input renders every window with wan_model (video-to-video);"
                            " remove wan_continue_model", settings.source)
    if settings.gpus > 1:
        raise SettingsError("animation_mode Video Input runs on one GPU; set wan_gpus to 1", settings.source)
    if settings.backend == "official" and spec.kind == "t2v":
        raise SettingsError("animation_mode Video Input runs diffusers' WanVideoToVideoPipeline (Wan's own code has no"
                            " video-to-video); set wan_backend to diffusers or auto", settings.source)


def _size(settings: RenderSettings, spec: ModelSpec, cont: ModelSpec,
          warnings: list[str]) -> tuple[tuple[int, int], str]:
    """The render size and where it came from: ``wan_size``; else Deforum's W/H when the model
    was trained at it (or has no trained size); else its trained size of the nearest aspect."""
    if settings.wan_size:
        return settings.wan_size, "wan_size"
    asked = (settings.W, settings.H)
    trained = [s for s in spec.trained_sizes if not cont.trained_sizes or s in cont.trained_sizes]
    trained = trained or list(spec.trained_sizes)
    if not trained:
        return asked, f"Deforum W/H: {spec.id} takes any size"
    if asked in trained:
        return asked, "Deforum W/H: a trained size"
    aspect = math.log(settings.W / settings.H)
    best = min(trained, key=lambda s: abs(math.log(s[0] / s[1]) - aspect))  # first wins a tie
    warnings.append(f"W/H {settings.W}x{settings.H} is not a size {spec.id} was trained at; rendering"
                    f" {best[0]}x{best[1]}, its trained size of the nearest aspect ratio (wan_size forces a size)")
    return best, f"model {spec.id}: trained size nearest to W/H {settings.W}x{settings.H}"


def _sampling(settings: RenderSettings, model: ModelSpec, at: int) -> tuple[dict, dict[str, str]]:
    """Steps, guidance (and the second expert's), shift of a window starting at output frame
    ``at``: a Wan key wins, then Deforum's schedules when asked for, then the model's values."""
    deforum = settings.use_deforum_sampling

    def ours(value: str) -> str:  # the model's default, and where that default comes from
        return f"model {model.id}: {model.source(value)}" if model.source(value) else f"model {model.id}"

    if settings.wan_steps is not None:
        steps, steps_from = settings.wan_steps, "wan_steps"
    elif deforum:
        steps = settings.steps_at(at)
        steps_from = "Deforum steps_schedule" if settings.steps_schedule else "Deforum steps"
    else:
        steps, steps_from = model.steps, ours("steps")
    if settings.wan_guidance is not None:
        guidance, guidance_from = settings.wan_guidance, "wan_guidance"
    elif deforum:
        guidance = settings.cfg[at]
        parseq = settings.cfg.text.startswith("parseq_manifest")
        guidance_from = settings.cfg.text.replace("_", " ", 1).capitalize() if parseq else "Deforum cfg_scale_schedule"
    else:
        guidance, guidance_from = model.guidance, ours("guidance")
    if settings.guidance_2 is not None:
        guidance_2, guidance_2_from = settings.guidance_2, "wan_guidance_2"
    else:
        guidance_2, guidance_2_from = model.guidance_2, ours("guidance_2")
    shift, shift_from = (settings.shift, "wan_shift") if settings.shift is not None else (model.shift, ours("shift"))
    if settings.motion_strength != 1:
        shift_from += f" x wan_motion_strength {settings.motion_strength:g}"
    values = dict(steps=int(steps), guidance_scale=round(float(guidance), 4), guidance_scale_2=guidance_2,
                  shift=round(shift * settings.motion_strength, 4))
    sources = dict(steps=steps_from, guidance_scale=guidance_from, shift=shift_from)
    if guidance_2 is not None:
        sources["guidance_scale_2"] = guidance_2_from
    return values, sources


def _partner(spec: ModelSpec, settings: RenderSettings, size: tuple[int, int]) -> ModelSpec:
    try:
        return continuation_model(spec, size)
    except Exception as exc:
        raise SettingsError(str(exc), settings.source) from None


def _check_models(settings: RenderSettings, first_mode: str, first_model: ModelSpec, cont: ModelSpec) -> None:
    """What the chosen models cannot do, refused before any weights load."""
    spec = settings.model
    if first_mode == "t2v" and not spec.can_t2v:
        raise SettingsError(f"{spec.id} is image-to-video only; set use_init and init_image,"
                            " or choose a text-to-video model", settings.source)
    if not cont.can_i2v:
        raise SettingsError(f"{cont.id} cannot continue from a frame (not I2V)", settings.source)
    if cont.native_fps != spec.native_fps:
        raise SettingsError(f"{spec.id} ({spec.native_fps} fps) and {cont.id} ({cont.native_fps} fps)"
                            " run at different native fps; pick a matching pair", settings.source)
    if settings.gpus > 1 and "vace" in (first_model.kind, cont.kind):
        raise SettingsError(f"VACE models run on one GPU (their transformer has no context-parallel plan);"
                            f" set wan_gpus to 1 for {cont.id if cont.kind == 'vace' else first_model.id}",
                            settings.source)


def _stream_time(segments: list[Segment], g: int) -> float:
    """The output time (fractional frames) of native frame ``g`` of the whole video, by the
    retime map of the segment holding it; past the last, at the last segment's rate."""
    start = 0
    for seg in segments:
        if g < start + seg.native_frames or seg is segments[-1]:
            return seg.start + (g - start) * (seg.end - seg.start) / seg.native_frames
        start += seg.native_frames
    return 0.0


def _span(segments: list[Segment], first_native: int, frames: int) -> tuple[float, float]:
    """Output times of a window's first native frame (its conditioning frame when it continues)
    and its last."""
    return _stream_time(segments, first_native), _stream_time(segments, first_native + frames - 1)


def _window_camera(camera, segments: list[Segment], first_native: int, frames: int) -> dict:
    if camera is None:
        return {}
    from .camera import summarize

    return summarize(camera, *_span(segments, first_native, frames))


def _follow(settings: RenderSettings, camera, moves: dict, at: int, context: int, sources: dict) -> dict:
    """How a window follows Deforum's camera (Window.wan_camera, camera_free, camera_lock)."""
    from .camera import still

    none = {"wan_camera": "", "camera_free": 0.0, "camera_lock": 0.0}
    hybrid = settings.hybrid is not None  # the video's motion or composite is followed, even under a still camera
    if camera is None or settings.wan_camera == "off" or (still(moves) and not hybrid):
        return none
    if settings.wan_camera == "vace" and context:
        sources["camera"] = "vace: the warped frames kept, what they uncover generated"
        return {**none, "wan_camera": "vace"}
    strength = camera.series["strength_schedule"]
    scale = min(max(strength[min(at, len(strength) - 1)], 0.0), 1.0) / DEFORUM_STRENGTH
    free = settings.camera_free if settings.camera_free is not None else min(1.0, GUIDE_FREE * scale)
    lock = settings.camera_lock if settings.camera_lock is not None else min(1.0, GUIDE_LOCK * scale)
    lock = max(lock, free)
    if lock <= 0:
        return none  # strength 0: a fresh frame, nothing held
    given = "wan_camera_free/lock" if settings.camera_free is not None or settings.camera_lock is not None \
        else f"strength {scale * DEFORUM_STRENGTH:g}"
    sources["camera"] = f"guide: free {free:.0%}, held {lock:.0%} of the steps ({given})"
    return {"wan_camera": "guide", "camera_free": round(free, 4), "camera_lock": round(lock, 4)}


def _camera_cap(camera, segments: list[Segment], first_native: int, lead: int, cap: int, min_coverage: float) -> int:
    """The most new frames a window may take while its first frame still covers ``min_coverage``
    of its last (fast cameras give shorter windows); at least a quarter of ``cap``."""
    from .camera import summarize

    # Never below a quarter of the window: under a camera faster than that, shorter windows
    # cost more conditioning and overlap frames than they win coverage.
    low = min(cap, max(cap // 4, MIN_WINDOW))
    hi = cap
    if summarize(camera, *_span(segments, first_native, lead + hi))["coverage"] >= min_coverage:
        return cap
    while low < hi:  # coverage falls as the window grows: the largest that keeps it
        mid = (low + hi + 1) // 2
        if summarize(camera, *_span(segments, first_native, lead + mid))["coverage"] >= min_coverage:
            low = mid
        else:
            hi = mid - 1
    return low


def _segments(settings: RenderSettings, max_frames: int, scale: float | None,
              native_per_out: float, cuts: list[int] = (), pins: dict[int, str] | None = None,
              ends: bool = False, loop: bool = False) -> list[Segment]:
    """``pins``: output frame -> guided image, each starting a segment; ``ends``: the model takes
    a last image, so a segment before a pin ends on it (and, ``loop``, the last on frame 0)."""
    keys = []
    for p in settings.prompts:
        k = p.frame if scale is None else round(p.frame * scale)
        if k >= max_frames:  # native rescale can push a key of the last frames past the end
            break
        if keys and k <= keys[-1][0]:  # native rescale can merge close keys
            keys[-1] = (keys[-1][0], p)
            continue
        keys.append((k, p))
    # A cut (strength 0) splits the prompt's segment there: the rest starts over as a new shot.
    starts = [(k, p, False) for k, p in keys]
    for cut in cuts:
        if 0 < cut < max_frames and cut not in {k for k, _, _ in starts}:
            prompt = [p for k, p, _ in starts if k < cut][-1]
            starts.append((cut, prompt, True))
        elif cut in {k for k, _, _ in starts}:
            starts = [(k, p, c or k == cut) for k, p, c in starts]
    pins = pins or {}
    for pin in pins:  # a guided image starts a segment, as a cut does (the image in place of T2V)
        if pin not in {k for k, _, _ in starts}:
            starts.append((pin, [p for k, p, _ in sorted(starts, key=lambda x: x[0]) if k < pin][-1], False))
    starts.sort(key=lambda item: item[0])
    segments = []
    for i, (start, prompt, cut) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else max_frames
        length = end - start
        native = length if scale is not None else max(1, round(length * native_per_out))
        if length == 1 and start in pins:  # one frame, the guided image itself
            native = 1
        end_image = (pins.get(end, "") if end < max_frames else LOOP if loop else "") if ends else ""
        segments.append(Segment(i, start, end, prompt.positive, prompt.negative, native,
                                cut=cut and start not in pins, keyframe=pins.get(start, ""), end_image=end_image))
    return segments


def _out_index(native_local: int, seg: Segment) -> int:
    """First output frame (segment-local) whose source position is >= native_local."""
    length = seg.end - seg.start
    return min(length, math.ceil(native_local * length / seg.native_frames))


def native_times(plan: ClipPlan, w: Window) -> list[float]:
    """The output time (fractional frames) of each native frame window ``w`` generates, by the
    retime map: where Deforum's camera is at each of them. A continuation window starts at its
    conditioning frame, ``overlap + 1`` frames before its new ones; frames past the plan's last
    (4n+1 rounding) continue at the last segment's rate."""
    lead = 0 if w.index == 0 or w.cut else w.overlap + 1
    first = sum(seg.native_frames for seg in plan.segments[:w.segment]) + w.native_start - lead
    return [_stream_time(plan.segments, g) for g in range(first, first + w.native_frames)]


def format_plan(plan: ClipPlan) -> str:
    """A readable table for the terminal."""
    camera = any(w.camera for w in plan.windows)
    lines = [
        f"{plan.max_frames} frames at {plan.fps:g} fps ({plan.max_frames / plan.fps:.2f} s),"
        f" {plan.width}x{plan.height}, model {plan.model} -> {plan.continue_model},"
        f" native {plan.native_fps} fps, window <= {plan.window_limit} frames,"
        f" overlap {plan.overlap}, retime {plan.retime}",
        f"{len(plan.segments)} prompt segments, {len(plan.windows)} windows,"
        f" {sum(w.native_frames for w in plan.windows)} native frames to generate",
        "",
        f"{'win':>3} {'seg':>3} {'mode':4} {'frames':>11} {'native':>6} {'new':>4} {'ovl':>3}"
        f" {'seed':>10} {'cfg':>5} {'steps':>5}" + ("   zoom  pan x%  pan y%   rot  cover follow" if camera else "")
        + ("  motion      " if plan.hybrid else "")
        + ("  source frames  denoise" if plan.video_input and not plan.control else "")
        + ("  source frames  control" if plan.control else "") + "  prompt",
    ]
    lines[2:2] = _source_lines(plan) + ([f"{plan.parseq} (its values replace Deforum's schedules)"]
                                        if plan.parseq else [])
    pinned = any(w.start_image or w.last_image for w in plan.windows)
    pin_width = max((len(pinned_to(w)) for w in plan.windows), default=0)
    if pinned:
        lines[-1] = lines[-1].replace("  prompt", f"  {'pinned to':<{pin_width}}  prompt")
    for w in plan.windows:
        prompt = w.prompt if len(w.prompt) <= 50 else w.prompt[:47] + "..."
        pin = f"  {pinned_to(w):<{pin_width}}" if pinned else ""
        c = w.camera
        moves = (f" {c['zoom']:>6.3f} {c['pan_x']:>7.1f} {c['pan_y']:>7.1f} {c['rotation']:>5.1f}"
                 f" {c['coverage']:>6.0%} {w.wan_camera or '-':>6}") if camera else ""
        if plan.hybrid:
            moves += f"  {w.motion or '-':<12}"
        lines.append(f"{w.index:>3} {w.segment:>3} {w.mode + ('*' if w.cut and not w.start_image else ''):4} {w.start_frame:>5}-"
                     f"{w.end_frame - 1:<5} {w.native_frames:>6} {w.new_frames:>4} {w.overlap:>3} {w.seed:>10}"
                     f" {w.guidance_scale:>5g} {w.steps:>5}{moves}{_restyle_cell(w, plan)}{pin}  {prompt}")
    if camera:
        lines.append("camera over each window (Deforum's path, flat depth): net zoom, pan of the frame centre,"
                     " rotation in degrees, share of the last frame still from the first; how Wan follows it (wan_camera)")
    if any(w.cut and not w.start_image for w in plan.windows):
        lines.append("t2v*: a new shot at a Deforum cut (strength_schedule 0)")
    if pinned:
        lines.append("pinned to: start = I2V from the guided image, written as the window's first frame; end = the"
                     " window's last frame is the image (FLF2V last image, VACE kept with mask 0), written by the"
                     " next window; the overlap never crossfades either")
    if any(w.mode == "v2v" for w in plan.windows):
        lines.append("v2v: video-to-video on the window's source frames (first and last shown; a continuation"
                     " window starts from the video's own last overlap + 1 frames), denoised 1 - strength_schedule")
    if plan.control:
        lines.append(f"control: VACE generates each window conditioned on its frames of the {plan.control} control"
                     " video (after the frames it keeps), at the strength shown (conditioning_scale)")
    elif any(w.control == "gray" for w in plan.windows):
        lines.append("gray: VACE regenerates the window's source frames from their grey (luma) version, after the"
                     " frames it keeps; strength_schedule does not apply (VACE has no denoise strength)")
    for warning in plan.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def mode_label(w: Window) -> str:
    """A window's mode as the tab shows it: ``t2v (cut)``, ``i2v (start a.png, end b.png)``."""
    pin = pinned_to(w)
    return w.mode + (" (cut)" if w.cut and not w.start_image else "") + (f" ({pin})" if pin != "-" else "")


def pinned_to(w: Window) -> str:
    """How a window is pinned: ``start a.png, end b.png``, ``end frame 0 (loop)``, or ``-``."""
    from pathlib import PurePath

    said = ([f"start {PurePath(w.start_image).name}"] if w.start_image else []) + (
        [("end frame 0 (loop)" if w.last_image == LOOP else f"end {PurePath(w.last_image).name}")]
        if w.last_image else [])
    return ", ".join(said) or "-"


def _restyle_cell(w: Window, plan: ClipPlan) -> str:
    if not plan.video_input and not plan.control:
        return ""
    frames = f"{w.source_frames[0]}-{w.source_frames[-1]}" if w.source_frames else "(not read)"
    if plan.control:
        return f"  {frames:>13} {w.control} {w.control_scale:g}"
    return f"  {frames:>13} {w.control or format(w.denoise, 'g'):>8}"


def _source_lines(plan: ClipPlan) -> list[str]:
    """Each sampling value once per place it came from:
    ``steps 50 (model wan2.1-t2v-1.3b: Wan2.1 generate.py (50 steps for text-to-video))``."""
    lines = [f"size {plan.width}x{plan.height} ({plan.size_source})"]
    if plan.hybrid:
        used = f"source frames {plan.source_frames[0]}-{plan.source_frames[-1]}" if plan.source_frames \
            else "the video is read when the job is checked"
        lines.append(f"hybrid video {plan.hybrid_video} ({used}; one output frame per input frame)")
        lines.append(plan.hybrid)
    if plan.video_input:
        used = f"source frames {plan.source_frames[0]}-{plan.source_frames[-1]}" if plan.source_frames \
            else "the video is read when the job is checked"
        lines.append(f"video input {plan.video_input} ({used}; one output frame per kept frame)")
        if plan.video_mask:
            lines.append(f"video mask {plan.video_mask}: each frame changes only where its mask frame is white"
                         " (invert_mask: black); elsewhere the source frame is kept as it is")
    if plan.control:
        used = f"its frames {plan.source_frames[0]}-{plan.source_frames[-1]}" if plan.source_frames \
            else "the video is read when the job is checked"
        lines.append(f"control video {plan.control_video} ({plan.control}; {used}: one per output frame)")
    labels = {"steps": "steps", "guidance_scale": "guidance", "guidance_scale_2": "guidance 2",
              "shift": "shift", "negative_prompt": "negative prompt", "seed": "seed", "prompt": "prompt"}
    for key, label in labels.items():
        seen: dict[tuple, None] = {}
        for w in plan.windows:
            if key in w.sources:
                value = {"negative_prompt": "Wan's default", "seed": "each window's", "prompt": "each window's"
                         }.get(key) or f"{getattr(w, key):g}"
                seen[(value, w.sources[key])] = None
        if seen:
            lines.append(f"{label} " + ", ".join(f"{v} ({src})" for v, src in seen))
    follows = dict.fromkeys(w.sources["camera"] for w in plan.windows if "camera" in w.sources)
    if follows:
        lines.append("camera " + "; ".join(follows))
    if any(w.last_image and w.wan_camera for w in plan.windows):
        lines.append("camera and pinned ends: a window that ends on an image follows the camera's path (guide: its"
                     " early steps; vace: the warped frames kept) and its last frame is the image throughout: the"
                     " path leads there, the image is where it lands")
    if plan.anchors:
        lines.append("guided images " + ", ".join(f"{name} at frame {f}" for f, name in sorted(plan.anchors.items()))
                     + " (each is its frame exactly)")
    context = {w.context for w in plan.windows if w.context}
    if context:
        lines.append(f"VACE context: the last {'/'.join(map(str, sorted(context)))} frames of the video"
                     " are kept (mask 0) at the start of each continuation window")
    return lines
