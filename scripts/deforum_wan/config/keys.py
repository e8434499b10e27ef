"""The key table: every ``wan_*`` settings key once, with its kind, default, allowed values,
help line and the tab field that edits it. The settings reader, the tab's fields, the API
(through the settings reader) and the README's settings tables come from or are tested
against this table: a new key is one row here plus its behaviour.

Also the one home of the vocabularies those keys take (backends, retime, colour, offload,
cache and dtype names, presets).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models.places import looks_like_file
from ..models.registry import DEFAULT_MODEL, ModelSpec
from . import values
from .schedule import ExprError

BACKENDS = ("auto", "official", "diffusers")
RETIME_MODES = ("blend", "flow", "nearest", "native")
COLOR_MODES = ("None", "LAB", "HSV", "RGB")
OFFLOAD_MODES = ("none", "model", "sequential", "group")
CACHES = ("none", "first_block", "taylorseer", "mag", "faster")
DTYPES = ("auto", "bfloat16", "float16", "float32")
INIT_FITS = ("crop", "fit", "stretch")
WAN_CAMERA_MODES = ("guide", "vace", "off")
COLOR_MATCH_MODES = ("deforum", "lab", "off")
COLOR_REFERENCES = ("shot", "previous")
SVI_MODES = ("off", "film", "shot", "pro")
PRESETS = ("quality", "balanced", "fast", "low-vram")
DEFAULT_PRESET = "quality"


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # number | positive | int | flag | strict_flag | choice | text | model | size | preset | loras | distill | control
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    lo: float = 0.0
    hi: float = 0.0
    optional: bool = False  # None / "" = no value of its own (the model's or the preset's)
    field: str | None = None  # the Wan tab's field for it
    label: str = ""  # the field's label in the tab
    info: str = ""  # the field's short help under it in the tab
    attr: str | None = None  # the RenderSettings attribute; None for preset fields
    preset_field: str | None = None  # the preset (BackendOptions) field it overrides
    shown_default: str | None = None  # the README's default column, when not the value itself
    example: Any = None  # a valid non-default value (the key-table test sets it)

    def read(self, value: Any) -> Any:
        """The value as the render uses it; raises ``ExprError`` (one line) when invalid."""
        if self.optional and (value is None or (isinstance(value, str) and not value.strip())):
            return None
        return _READERS[self.kind](self, value)

    @property
    def value_type(self) -> Any:
        """The type of the value the settings object holds (``RenderSettings`` is built from it)."""
        kind = _TYPES[self.kind]
        return kind | None if self.optional else kind

    @property
    def readme_default(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        return "[]" if self.default == [] else str(self.default)


def _read_distill(key: Key, value: Any) -> str:
    if isinstance(value, bool):
        return "auto" if value else "off"
    spelled = values.path(value, key.name).strip()
    if spelled.lower() in ("auto", "off"):
        return spelled.lower()
    if not spelled.endswith(".safetensors"):
        raise ExprError(f"{key.name} must be auto, off or a .safetensors file, got {value!r}")
    return spelled


def _read_positive(key: Key, value: Any) -> float:
    try:
        out = values.number(value, key.name, 0, key.hi)
    except ExprError:
        out = 0.0
    if out <= 0:
        raise ExprError(f"{key.name} must be a number in (0, {key.hi:g}], got {value!r}")
    return out


# Which expert of a two-expert model (Wan 2.2 A14B) a LoRA goes into; one expert: the only one.
LORA_EXPERTS = ("both", "high", "low")


def _read_loras(key: Key, value: Any) -> list[tuple[str, float, str]]:
    """(path, weight, expert) per entry: a path, or {"path", "weight", "expert"}."""
    if value in (None, "", []):
        return []
    if not isinstance(value, list):
        raise ExprError(f"{key.name} must be a list of {{\"path\": ..., \"weight\": ..., \"expert\": ...}}")
    out = []
    for item in value:
        if isinstance(item, str):
            out.append((values.path(item, key.name), 1.0, "both"))
        elif isinstance(item, dict) and isinstance(item.get("path"), str):
            out.append((values.path(item["path"], key.name),
                        values.number(item.get("weight", 1.0), f"{key.name} weight", -10, 10),
                        values.choice(item.get("expert") or "both", f"{key.name} expert", LORA_EXPERTS)))
        else:
            raise ExprError(f"{key.name} entry {item!r} needs a 'path'")
    return out


CONTROL_KINDS = ("depth", "canny", "gray", "flow", "pose")


def _read_control(key: Key, value: Any) -> dict:
    """{"kind", "video", "weight"}: a dict of those, or ``kind:video`` text."""
    if isinstance(value, str):
        kind, sep, video = value.partition(":")
        value = {"kind": kind, "video": video} if sep else {"kind": value}
    if not isinstance(value, dict) or not isinstance(value.get("video"), str) or not value["video"].strip():
        raise ExprError(f"{key.name} must be {{\"kind\": ..., \"video\": ..., \"weight\": ...}} or"
                        f" kind:video, got {value!r}")
    kind = values.choice(str(value.get("kind", "")).strip().lower(), f"{key.name} kind", CONTROL_KINDS)
    return {"kind": kind, "video": values.path(value["video"], key.name).strip(),
            "weight": values.number(value.get("weight", 1.0), f"{key.name} weight", 0, 10)}


def _read_size(key: Key, value: Any) -> tuple[int, int]:
    spelled = values.text(value, key.name).strip().lower().replace("*", "x")
    w, sep, h = spelled.partition("x")
    if not (sep and w.strip().isdigit() and h.strip().isdigit()) or not (16 <= int(w) <= 8192 and 16 <= int(h) <= 8192):
        raise ExprError(f"{key.name} must be WxH (e.g. 832x480, 16 to 8192 each), got {value!r}")
    return int(w), int(h)


def _read_model(key: Key, value: Any) -> str:
    """A registry id (any case), or a weight file or folder, spelled as given."""
    text = values.text(value, key.name).strip()
    return text if looks_like_file(text) or "/" in text or "\\" in text else text.lower()


def _read_preset(key: Key, value: Any) -> str:
    spelled = (values.text(value, key.name).strip() or DEFAULT_PRESET).lower().replace("_", "-")
    if spelled not in PRESETS:
        raise ExprError(f"{key.name} must be one of {', '.join(PRESETS)}, not {value!r}")
    return spelled


# What each kind's reader returns; a model key's id becomes its registry entry in the settings.
_TYPES = {
    "number": float, "positive": float, "int": int, "flag": bool, "strict_flag": bool, "choice": str,
    "text": str, "model": ModelSpec, "preset": str, "size": tuple[int, int], "loras": list[tuple[str, float, str]],
    "distill": str, "control": dict,
}

_READERS = {
    "number": lambda k, v: values.number(v, k.name, k.lo, k.hi),
    "positive": _read_positive,
    "int": lambda k, v: values.whole(v, k.name, int(k.lo), int(k.hi)),
    "flag": lambda k, v: values.truthy(v),
    "strict_flag": lambda k, v: values.strict_flag(v, k.name),
    "choice": lambda k, v: values.choice(v, k.name, k.choices),
    "text": lambda k, v: values.text(v, k.name).strip() or str(k.default),
    "model": lambda k, v: _read_model(k, v),
    "preset": _read_preset,
    "size": _read_size,
    "loras": _read_loras,
    "distill": _read_distill,
    "control": _read_control,
}

KEYS: tuple[Key, ...] = (
    Key("wan_model", "model", DEFAULT_MODEL, "model id, a transformer `.safetensors` or `.gguf` file in the"
        " model folders (ComfyUI's `wan2.1_t2v_14B_fp8_e4m3fn.safetensors`, city96's"
        " `wan2.1-t2v-14b-Q4_K_M.gguf`) or a diffusers-layout folder (`python -m"
        " deforum_wan models`)", field="model", label="Model", attr="model", example="tiny-random"),
    Key("wan_model_low", "text", "", "Wan 2.2 A14B as two files: the low-noise expert's file, `wan_model`"
        " being the high-noise one (found by itself when the names differ only in high/low noise:"
        " `..._high_noise_...` / `..._low_noise_...`, `HighNoise` / `LowNoise`)", field="model_low",
        label="Low-noise expert file (Wan 2.2 A14B; empty: found by name)", attr="model_low",
        shown_default="found by name", example="wan2.2_t2v_low_noise_14B_fp16.safetensors"),
    Key("wan_components", "text", "", "for a `wan_model` file: where the text encoder, VAE, tokenizer (and"
        " CLIP) come from when no file of theirs is in the model folders: a registry id or a diffusers-layout"
        " folder", attr="components", shown_default="the model folders", example="tiny-random"),
    Key("wan_continue_model", "model", "", "model for the I2V windows after the first (1.3B → VACE-1.3B,"
        " 14B → I2V-14B-720P, or I2V-14B-480P for a 480p render, A14B → I2V-A14B)", optional=True, attr="continue_model",
        shown_default="partner", example="tiny-random-i2v"),
    Key("wan_backend", "choice", "auto", "`auto` (official, then diffusers), `official`, `diffusers`",
        choices=BACKENDS, field="backend", label="Backend", attr="backend", example="diffusers"),
    Key("wan_clip_duration", "number", 0.0, "seconds per window; 0 = the model's full window"
        " (81 frames at 16 fps)", lo=0, hi=3600, field="clip_duration", label="Clip duration, s (0 = model window)", attr="clip_duration", example=2.5),
    Key("wan_overlap", "int", 4, "native frames shared by chained windows and crossfaded",
        lo=0, hi=64, field="overlap", label="Overlap (native frames)", attr="overlap", example=2),
    Key("wan_loop", "flag", False, "`true`: a seamless loop: the last window is generated towards the"
        " video's first frame (an FLF2V model's last image, or VACE with it as the last frame kept), and"
        " the seam (last to first frame against the median change between neighbours) is measured",
        attr="loop", example=True),
    Key("wan_motion_strength", "number", 1.0, "multiplies the flow shift: above 1 the sampler spends"
        " longer at high noise (more change and motion), below 1 the result stays closer to the"
        " conditioning frame", lo=0.05, hi=10, field="motion_strength", label="Motion strength", attr="motion_strength",
        example=1.5),
    Key("wan_retime", "choice", "blend", "native fps → output fps: `blend` (linear mix of neighbours),"
        " `flow` (both neighbours moved along OpenCV DIS optical flow, then mixed: no double edges on"
        " motion; ~0.1 s per native frame at 832x480 on CPU), `nearest`, or `native` (keep Wan's fps;"
        " keyframes are rescaled)", choices=RETIME_MODES, field="retime", label="Retime", attr="retime", example="nearest"),
    Key("wan_color_match", "choice", "deforum", "colour correction of each continuation window, applied before"
        " its frames seed the next window: `deforum` (Deforum's `color_coherence` histogram matching, against"
        " the shot's reference: a cut or a new prompt starts a shot), `lab` (Lab mean and spread transfer,"
        " as Wan2GP does) or `off`", choices=COLOR_MATCH_MODES, attr="color_match", example="lab"),
    Key("wan_color_match_strength", "number", 1.0, "how much of the colour correction is applied (0..1;"
        " lower lets a prompt that changes the colours move them)", lo=0, hi=1, attr="color_match_strength",
        example=0.5),
    Key("wan_color_reference", "choice", "shot", "what a window's colours are matched to: `shot` (the"
        " shot's first frame) or `previous` (the frame it continues from: slow changes pass)",
        choices=COLOR_REFERENCES, attr="color_reference", example="previous"),
    Key("wan_svi", "choice", "off", "Stable Video Infinity's conditioning of each continuation window, for its"
        " Wan 2.1 I2V-480P LoRAs (load one with wan_loras): `film` (the previous window's last 5 frames, zero"
        " padding; wan_overlap 4 hands on all 5) or `shot` (its last frame, the rest padded with the first"
        " frame of the video or of the last cut); `pro`: SVI 2.0 Pro for Wan 2.2 I2V-A14B and its high/low"
        " LoRA pair (the anchor's latent, the previous window's last latent, zero latents; wan_overlap 4);"
        " `off`: Wan's own (diffusers backend)", choices=SVI_MODES,
        attr="svi", example="shot"),
    Key("wan_size", "size", None, "`WxH` to render at (multiples of 16, 32 for TI2V-5B); empty: Deforum's W/H"
        " when the model was trained at it, else the model's trained size of the nearest aspect ratio",
        optional=True, attr="wan_size", shown_default="model's", example="832x480"),
    Key("wan_steps", "int", None, "denoising steps (empty: the model's, e.g. 50 for Wan 2.1, 40 for the"
        " A14B models)", lo=1, hi=1000, optional=True, field="steps", label="Steps", attr="wan_steps",
        shown_default="model's", example=30),
    Key("wan_guidance", "number", None, "classifier-free guidance (the high-noise expert's on Wan 2.2"
        " A14B; empty: the model's)", lo=0, hi=100, optional=True, field="guidance", label="Guidance", attr="wan_guidance",
        shown_default="model's", example=4.5),
    Key("wan_use_deforum_sampling", "flag", False, "`true`: Deforum's `steps` (or `steps_schedule`) and"
        " `cfg_scale_schedule` drive each window (made for Stable Diffusion: 25 steps, cfg 7) instead of"
        " the model's values", field="deforum_sampling",
        label="Use Deforum's steps and CFG schedule (made for Stable Diffusion)", attr="use_deforum_sampling", example=True),
    Key("wan_init_fit", "choice", "crop", "how an init image of another aspect meets the render size:"
        " `crop` (scale to cover, centre-crop), `fit` (scale to fit, black bars), `stretch` (Deforum's"
        " resize)", choices=INIT_FITS, attr="init_fit", example="fit"),
    Key("wan_camera", "choice", "guide", "how Wan's windows follow Deforum's camera: `guide` (each window"
        " starts from its first frame warped along the camera and holds the covered pixels on it early in"
        " the schedule, then Wan is free: training-free Time-to-Move, diffusers backend), `vace` (VACE"
        " continuation windows keep the warped frames and generate only what the warp uncovers: Deforum's"
        " exact motion, a zoom-out outpainted; other windows guided) or `off`", choices=WAN_CAMERA_MODES,
        field="wan_camera", label="Follow Deforum's camera", attr="wan_camera", example="vace",
        info="guide: each window starts along the camera's warped path; vace: VACE windows keep the warp"
             " exactly; off: the camera is only planned"),
    Key("wan_camera_free", "number", None, "`guide`: share of the steps skipped, starting from the noised"
        " path (empty: 0.04 x strength/0.65, `strength_schedule` at the window's start)", lo=0, hi=1,
        optional=True, attr="camera_free", shown_default="0.04 x strength/0.65", example=0.1),
    Key("wan_camera_lock", "number", None, "`guide`: share of the steps the covered pixels are held on the"
        " path (empty: 0.10 x strength/0.65)", lo=0, hi=1, optional=True, attr="camera_lock",
        shown_default="0.10 x strength/0.65", example=0.2),
    Key("wan_camera_prompt", "flag", False, "append a short description of each window's camera move to its"
        " prompt (e.g. \"camera zooms in, pans right\")", attr="camera_prompt", example=True),
    Key("wan_camera_min_coverage", "number", 0.5, "a window under a fast Deforum camera is shortened until"
        " its first frame still covers this share of its last frame (0: never shortened)", lo=0, hi=1,
        attr="camera_min_coverage", example=0.8),
    Key("wan_control", "control", None, "a VACE control video: `{\"kind\": \"depth\", \"video\": \"clip.mp4\","
        " \"weight\": 1}` or `depth:clip.mp4`; kind `depth`, `canny`, `gray` or `flow` (OpenCV), weight"
        " diffusers' `conditioning_scale` (0 to 10). Deforum's ControlNet units with a video (`cn_1_enabled`,"
        " `cn_1_module`, `cn_1_weight`, `cn_1_vid_path`, ... `cn_5_*`) give one the same way (a VACE model)",
        optional=True, attr="wan_control", shown_default="none", example={"kind": "canny", "video": "edges.mp4"},
        field="control", label="Control from the video (VACE models)",
        info="none: the video is Video Input's source only; depth, canny, gray, flow: each window is conditioned"
             " on that map of it"),
    Key("wan_depth_model", "text", "", "depth model for Deforum's 3D depth warping (empty: the one the file's"
        " `depth_algorithm` names: Midas-3-Hybrid → depth-dpt-large, Midas-3.1-BeitLarge →"
        " depth-dpt-beit-large-512, Zoe → depth-zoedepth-nyu-kitti, Depth-Anything-V2-small;"
        " `download` fetches them)", attr="depth_model", shown_default="depth_algorithm's", example="tiny-depth"),
    Key("wan_guidance_2", "number", None, "low-noise expert guidance (Wan 2.2 A14B)", lo=0, hi=100,
        optional=True, field="guidance_2", label="Guidance 2 (Wan2.2 low-noise expert)", attr="guidance_2", shown_default="model's", example=3.5),
    Key("wan_shift", "number", None, "flow shift", lo=0.1, hi=100, optional=True, attr="shift",
        shown_default="model's", example=8.0),
    Key("wan_offload", "choice", "none", "`model`, `sequential` or `group` CPU offload (CUDA)",
        choices=OFFLOAD_MODES, field="offload", label="Offload (none = as the preset says)", attr="offload", preset_field="offload", example="model"),
    Key("wan_vae_tiling", "flag", False, "decode the VAE in tiles (less VRAM)", field="vae_tiling",
        label="VAE tiling (off = as the preset says)", attr="vae_tiling", preset_field="vae_tiling", example=True),
    Key("wan_dtype", "text", "auto", "bf16 on CUDA, fp32 on CPU; VAE stays fp32", choices=DTYPES,
        field="dtype", label="Dtype", attr="dtype", example="float32"),
    Key("wan_attention", "text", "auto", "diffusers attention backend: `fastest` (sage, then flash,"
        " then SDPA), `sage`, `flash`, `sdpa`, or any diffusers backend name", attr="attention",
        preset_field="attention", example="sdpa"),
    Key("wan_preset", "preset", DEFAULT_PRESET, "speed/memory preset: `balanced`, `fast`, `low-vram`"
        " (docs/presets.md)", choices=PRESETS, field="preset", label="Speed preset", attr="preset", example="fast",
        # what each preset turns on, short (presets.TABLE and docs/presets.md say why)
        info="quality: the model as shipped; balanced: torch.compile, flash-attention, mild block cache;"
             " fast: MagCache, SageAttention, distilled LoRA if present; low-vram: group offload, tiled VAE."
             " Memory's offload none / tiling off keep the preset's choice."),
    Key("wan_cache", "choice", None, "`none`, `first_block`, `mag`, `taylorseer`, `faster`"
        " (diffusers cache hooks)", choices=CACHES, optional=True, preset_field="cache",
        shown_default="preset's", example="first_block"),
    Key("wan_cache_threshold", "positive", None, "first-block / MagCache threshold (higher: more"
        " skipped, less exact)", hi=10, optional=True, preset_field="cache_threshold",
        shown_default="preset's", example=0.05),
    Key("wan_compile", "strict_flag", None, "`true`/`false`: regional `torch.compile` (CUDA with"
        " triton, or the CPU with a C++ compiler; the first window compiles)", optional=True,
        preset_field="compile", shown_default="preset's", example=True),
    Key("wan_layerwise_fp8", "strict_flag", None, "`true`: store transformer weights in float8,"
        " compute in the model dtype (`enable_layerwise_casting`; any device)", optional=True,
        preset_field="layerwise_fp8", shown_default="preset's", example=True),
    Key("wan_distill_lora", "distill", None, "`auto` (look in `<models dir>/loras`), `off`, or a"
        " `.safetensors` path", optional=True, preset_field="distill_lora", shown_default="preset's",
        example="off"),
    Key("wan_loras", "loras", [], '`[{"path": "x.safetensors", "weight": 0.8}]`; Wan 2.2 A14B: `"expert":'
        ' "high"`, `"low"` or `"both"` (the default) picks the expert it goes into', field="loras",
        label="LoRAs: one path:weight[:high|low] per line (.safetensors; A14B: the expert, else both)", attr="loras", example=[{"path": "style.safetensors", "weight": 0.5}]),
    Key("wan_write_srt", "flag", False, "write `{ts}.srt` with one subtitle per prompt", attr="write_srt",
        example=True),
    Key("wan_gpus", "int", 1, "GPUs per window (torchrun; docs/batch-and-multi-gpu.md)", lo=1, hi=64, field="gpus",
        label="GPUs per clip", attr="gpus", example=2,
        info="1 = this process; N > 1 runs each window with torchrun on N GPUs (N divides the heads:"
             " 1.3B 2/3/4/6, 14B 2/4/5/8)"),
)
BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
# Deforum's own Parseq keys (config/parseq.py reads the manifest; docs/parseq.md).
PARSEQ_KEYS: tuple[Key, ...] = (
    Key("parseq_manifest", "text", "", "Parseq's manifest (JSON text); not empty: its per-frame values replace"
        " Deforum's schedules"),
    Key("parseq_use_deltas", "flag", True, "motion from the manifest's `*_delta` fields (the step from"
        " frame f-1 to f)"),
    Key("parseq_non_schedule_overrides", "flag", True, "the manifest also sets max_frames, fps and cadence"),
)
# Deforum's own hybrid video keys (config/hybrid.py reads them; docs/settings.md, Hybrid video).
HYBRID_MOTIONS = ("None", "Optical Flow", "Perspective", "Affine")
HYBRID_COMPOSITES = ("None", "Normal", "Before Motion", "After Generation")
HYBRID_FLOW_METHODS = ("RAFT", "DIS Medium", "DIS Fine", "DenseRLOF", "SF", "Farneback", "DualTVL1", "DeepFlow",
                       "PCAFlow")
HYBRID_MASK_TYPES = ("None", "Depth", "Video Depth", "Blend", "Difference")
HYBRID_KEYS: tuple[Key, ...] = (
    Key("hybrid_motion", "choice", "None", "the source video's motion from frame f-1 to f moves the guide",
        choices=HYBRID_MOTIONS),
    Key("hybrid_flow_method", "choice", "RAFT", "how Optical Flow is computed", choices=HYBRID_FLOW_METHODS),
    Key("hybrid_motion_use_prev_img", "flag", False, "flow/matrix from the moved frame itself to the video"
        " frame, not between two video frames"),
    Key("hybrid_composite", "choice", "None", "the video frame blended into the frame Wan starts from",
        choices=HYBRID_COMPOSITES),
    Key("hybrid_comp_mask_type", "choice", "None", "where the composite applies", choices=HYBRID_MASK_TYPES),
    Key("hybrid_use_init_image", "flag", False, "composite the init image instead of the video"),
    Key("hybrid_flow_consistency", "flag", False, "drop flow that fails the forward/backward check"),
    Key("hybrid_use_first_frame_as_init_image", "flag", False, "the video's first frame as the init image"),
)
WAN_DEFAULTS: dict[str, Any] = {k.name: k.default for k in KEYS}
# Keys of other Wan forks that mean the same as ours (Tok/sd-forge-deforum).
WAN_ALIASES = {"wan_frame_overlap": "wan_overlap"}


def read_all(get) -> dict[str, Any]:
    """Every key read from ``get(name)`` (the file's value or the default)."""
    return {k.name: k.read(get(k.name)) for k in KEYS}


def preset_overrides(read: dict[str, Any]) -> dict:
    """The preset fields these settings set explicitly (``config.presets.resolve`` applies them).

    The keys that existed before presets (offload, VAE tiling, attention) are written back
    with their defaults and sent by UIs that always send every field, so their default
    values mean "as the preset says"; the others are unset (None) unless given.
    """
    out = {}
    for key in KEYS:
        value = read.get(key.name)
        if key.preset_field is None or value is None:
            continue
        if key.name == "wan_attention" and value.lower() in ("auto", "default"):
            continue
        if value == key.default:
            continue
        out[key.preset_field] = value
    return out


def markdown_table() -> str:
    """The README's table of Wan keys (cli/usage.py writes it there, tests/cli/test_docs.py checks it)."""
    rows = ["| key | default | meaning | tab field |", "|---|---|---|---|"]
    for k in KEYS:
        default = k.readme_default if k.shown_default else f"`{k.readme_default}`"
        rows.append(f"| `{k.name}` | {default} | {k.help} | {k.field or '—'} |")
    return "\n".join(rows)
