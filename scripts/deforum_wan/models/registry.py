"""The Wan model registry: what each model is and how it runs.

Pure data; importing this module never imports torch.
Each model's defaults (steps, shift, guidance) name where they come from (``ModelSpec.source``):
Wan2.1 keeps them in ``generate.py`` (50 steps, 40 for image-to-video; shift 5, 3 for
image-to-video at 480p, 16 for FLF2V and VACE; guidance 5), Wan2.2 in ``wan/configs/*.py``.
One exception: T2V-1.3B uses shift 8 and guidance 6, the Wan2.1 README's advice for that
model, where generate.py gives 5 and 5 and diffusers' docs suggest flow shift 3.0 at 480p.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import WanError

# Wan's default negative prompt (``sample_neg_prompt`` in wan/configs/shared_config.py, the same
# bytes in Wan2.1 and Wan2.2): what the official code sends when the negative prompt is empty.
WAN_NEGATIVE = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
# Wan2.1's I2V config prepends "camera shake," and FLF2V (a copy of it) "camera cut," as well.
_I2V_PREFIX = "镜头晃动，"
_FLF2V_PREFIX = "镜头切换，" + _I2V_PREFIX


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
    continue_with_480p: str | None = None  # the partner when the render is 480p
    approx_gb: float = 0.0  # weights on disk, diffusers layout (for the models list)
    notes: str = ""
    tiny: bool = False  # built locally by tiny.py
    negative_prefix: str = ""  # put before WAN_NEGATIVE by the official config of this model
    # A model given by its weights rather than a registry id (models/file_models.py): the
    # transformer's single file or diffusers folder, and where its other components come from.
    weights: str = ""
    components: str = ""
    weights_2: str = ""  # a Wan 2.2 A14B pair: the low-noise expert's file (``weights`` the high-noise one)
    # (value, where it comes from) for steps, shift, guidance and guidance_2
    sources: tuple[tuple[str, str], ...] = ()

    def source(self, value: str) -> str:
        """Where this model's default ``value`` (steps, shift, guidance, guidance_2) comes from."""
        return dict(self.sources).get(value, "")

    @property
    def can_t2v(self) -> bool:
        return self.kind in ("t2v", "ti2v", "vace")

    @property
    def can_i2v(self) -> bool:
        return self.kind in ("i2v", "ti2v", "flf2v", "vace")

    @property
    def default_size(self) -> tuple[int, int]:
        return self.sizes[0]

    @property
    def default_negative(self) -> str:
        """The negative prompt of the official code when none is given."""
        return self.negative_prefix + WAN_NEGATIVE

    @property
    def trained_sizes(self) -> tuple[tuple[int, int], ...]:
        """Sizes the weights were trained at; random tiny weights have none (any size goes)."""
        return () if self.tiny else self.sizes


_GEN21 = "Wan2.1 generate.py"
_GUIDE21 = ("guidance", f"{_GEN21} (--sample_guide_scale 5.0)")


def _wan21(steps: str, shift: str) -> tuple[tuple[str, str], ...]:
    return (("steps", f"{_GEN21} ({steps})"), ("shift", f"{_GEN21} ({shift})"), _GUIDE21)


def _wan22(config: str) -> tuple[tuple[str, str], ...]:
    where = f"Wan2.2 wan/configs/{config}.py"
    guidance = (("guidance", f"{where} (sample_guide_scale, high noise)"),
                ("guidance_2", f"{where} (sample_guide_scale, low noise)")) if "A14B" in config else (
                ("guidance", f"{where} (sample_guide_scale)"),)
    return (("steps", f"{where} (sample_steps)"), ("shift", f"{where} (sample_shift)")) + guidance


_T2V21 = _wan21("50 steps for text-to-video", "shift 5.0")
_I2V21 = "40 steps for image-to-video"
_SHIFT16 = "shift 16 for flf2v and vace"
_TINY = (("steps", "tiny test model: 2 steps, enough to run"), ("shift", f"tiny test model: {_GEN21}'s shift 5.0"),
         ("guidance", f"tiny test model: {_GEN21}'s 5.0"),
         ("guidance_2", "tiny test model: Wan2.2 wan/configs/wan_t2v_A14B.py's low-noise 3.0"))
_480 = ((832, 480), (480, 832))
_720 = ((1280, 720), (720, 1280))

MODELS: dict[str, ModelSpec] = {
    m.id: m
    for m in [
        ModelSpec("wan2.1-t2v-1.3b", "wan2.1", "t2v", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                  "Wan-AI/Wan2.1-T2V-1.3B", 16, 81, _480, steps=50, shift=8.0, guidance=6.0,
                  continue_with="wan2.1-vace-1.3b", approx_gb=17.0,
                  notes="Wan's recommended shift 8-12 and guidance 6 for 1.3B",
                  sources=(_T2V21[0],
                           ("shift", "the Wan2.1 README's advice for T2V-1.3B (--sample_shift 8, within 8 to 12;"
                                     f" {_GEN21} gives 5.0, diffusers' docs flow_shift 3.0 at 480p)"),
                           ("guidance", "the Wan2.1 README's advice for T2V-1.3B (--sample_guide_scale 6;"
                                        f" {_GEN21} gives 5.0)"))),
        ModelSpec("wan2.1-t2v-14b", "wan2.1", "t2v", "Wan-AI/Wan2.1-T2V-14B-Diffusers",
                  "Wan-AI/Wan2.1-T2V-14B", 16, 81, _720 + _480, steps=50, shift=5.0,
                  guidance=5.0, continue_with="wan2.1-i2v-14b-720p", approx_gb=75.0,
                  continue_with_480p="wan2.1-i2v-14b-480p", sources=_T2V21),
        ModelSpec("wan2.1-i2v-14b-480p", "wan2.1", "i2v", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
                  "Wan-AI/Wan2.1-I2V-14B-480P", 16, 81, _480, steps=40, shift=3.0,
                  guidance=5.0, approx_gb=80.0, negative_prefix=_I2V_PREFIX,
                  sources=_wan21(_I2V21, "shift 3.0 for i2v at 832*480")),
        ModelSpec("wan2.1-i2v-14b-720p", "wan2.1", "i2v", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
                  "Wan-AI/Wan2.1-I2V-14B-720P", 16, 81, _720, steps=40, shift=5.0,
                  guidance=5.0, approx_gb=80.0, negative_prefix=_I2V_PREFIX,
                  sources=_wan21(_I2V21, "shift 5.0")),
        ModelSpec("wan2.1-flf2v-14b-720p", "wan2.1", "flf2v", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
                  "Wan-AI/Wan2.1-FLF2V-14B-720P", 16, 81, _720, steps=50, shift=16.0,
                  guidance=5.0, approx_gb=80.0, notes="first and last frame to video",
                  negative_prefix=_FLF2V_PREFIX, sources=_wan21("50 steps", _SHIFT16)),
        ModelSpec("wan2.1-vace-1.3b", "wan2.1", "vace", "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
                  "Wan-AI/Wan2.1-VACE-1.3B", 16, 81, _480, steps=50, shift=16.0,
                  guidance=5.0, approx_gb=19.0, sources=_wan21("50 steps", _SHIFT16)),
        ModelSpec("wan2.1-vace-14b", "wan2.1", "vace", "Wan-AI/Wan2.1-VACE-14B-diffusers",
                  "Wan-AI/Wan2.1-VACE-14B", 16, 81, _720 + _480, steps=50, shift=16.0,
                  guidance=5.0, approx_gb=75.0, sources=_wan21("50 steps", _SHIFT16)),
        ModelSpec("wan2.2-ti2v-5b", "wan2.2", "ti2v", "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
                  "Wan-AI/Wan2.2-TI2V-5B", 24, 121, ((1280, 704), (704, 1280)), size_multiple=32,
                  steps=50, shift=5.0, guidance=5.0, approx_gb=34.0,
                  notes="text and image to video in one model, 24 fps", sources=_wan22("wan_ti2v_5B")),
        ModelSpec("wan2.2-t2v-a14b", "wan2.2", "t2v", "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
                  "Wan-AI/Wan2.2-T2V-A14B", 16, 81, _720 + _480, steps=40, shift=12.0,
                  # official sample_guide_scale = (3.0 low noise, 4.0 high noise)
                  guidance=4.0, guidance_2=3.0, continue_with="wan2.2-i2v-a14b", approx_gb=126.0,
                  notes="two experts (high/low noise)", sources=_wan22("wan_t2v_A14B")),
        ModelSpec("wan2.2-i2v-a14b", "wan2.2", "i2v", "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
                  "Wan-AI/Wan2.2-I2V-A14B", 16, 81, _720 + _480, steps=40, shift=5.0,
                  guidance=3.5, guidance_2=3.5, approx_gb=126.0, notes="two experts",
                  sources=_wan22("wan_i2v_A14B")),
        # Built locally from random weights by tiny.py: for tests, the demo, offline smoke runs.
        ModelSpec("tiny-random", "wan2.1", "t2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=5.0, continue_with="tiny-random-i2v", tiny=True,
                  notes="random weights, built locally; for tests and the demo", sources=_TINY),
        ModelSpec("tiny-random-i2v", "wan2.1", "i2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=5.0, tiny=True, notes="random weights", sources=_TINY),
        ModelSpec("tiny-random-ti2v", "wan2.2", "ti2v", None, None, 24, 121, ((64, 64),),
                  size_multiple=32, steps=2, shift=5.0, guidance=5.0, tiny=True,
                  notes="random weights, TI2V-style", sources=_TINY),
        ModelSpec("tiny-random-flf2v", "wan2.1", "flf2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=5.0, tiny=True, notes="random weights, FLF2V-style", sources=_TINY),
        ModelSpec("tiny-random-vace", "wan2.1", "vace", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=5.0, tiny=True, notes="random weights, VACE-style", sources=_TINY),
        ModelSpec("tiny-random-a14b", "wan2.2", "t2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=4.0, guidance_2=3.0, tiny=True,
                  notes="random weights, two experts like Wan2.2 A14B", sources=_TINY),
        ModelSpec("tiny-random-a14b-i2v", "wan2.2", "i2v", None, None, 16, 81, ((64, 64),),
                  steps=2, shift=5.0, guidance=4.0, guidance_2=3.0, tiny=True,
                  notes="random weights, two experts like Wan2.2 I2V-A14B", sources=_TINY),
    ]
}

DEFAULT_MODEL = "wan2.1-t2v-1.3b"
# Models given by a file or folder, by their id (the settings that named them put them here, in
# the process that renders them too: it reads those settings again).
FILE_MODELS: dict[str, ModelSpec] = {}


def get_model(model_id: str) -> ModelSpec:
    key = model_id.strip().lower()
    if key in MODELS:
        return MODELS[key]
    if model_id.strip() in FILE_MODELS:
        return FILE_MODELS[model_id.strip()]
    raise WanError(f"unknown model {model_id!r}; known: {', '.join(MODELS)}, or a weight file in the model folders")


def continuation_model(spec: ModelSpec, size: tuple[int, int] | None = None) -> ModelSpec:
    """The model that renders I2V windows after the first one (at ``size``: a 480p render of
    T2V-14B continues with the 480P I2V model, trained there and run at shift 3)."""
    if spec.can_i2v:
        return spec
    if spec.continue_with_480p and size is not None and min(size) <= 480:
        return MODELS[spec.continue_with_480p]
    if spec.continue_with:
        return MODELS[spec.continue_with]
    raise WanError(f"{spec.id} cannot continue from a frame and has no I2V partner")


# --- depth models for Deforum's 3D depth warping --------------------------------------------

@dataclass(frozen=True)
class DepthSpec:
    """A depth model transformers loads (AutoModelForDepthEstimation), standing for Deforum's
    ``depth_algorithm`` values in ``algorithms``; ``disparity`` models give inverse depth."""

    id: str
    repo: str | None
    algorithms: tuple[str, ...]
    tiny: bool = False
    notes: str = ""
    approx_gb: float = 0.0  # its safetensors weights (said before a download is asked)


DEPTH_MODELS: dict[str, DepthSpec] = {d.id: d for d in [
    # sizes: fp32 weights of each model's parameters (343 M, 345 M, 345 M, 25 M)
    DepthSpec("depth-dpt-large", "Intel/dpt-large", ("midas-3-hybrid",),
              notes="MiDaS v3 DPT-Large, the weights Deforum's Midas-3-Hybrid loads", approx_gb=1.4),
    DepthSpec("depth-dpt-beit-large-512", "Intel/dpt-beit-large-512", ("midas-3.1-beitlarge",),
              notes="MiDaS v3.1 BEiT-Large 512", approx_gb=1.4),
    DepthSpec("depth-zoedepth-nyu-kitti", "Intel/zoedepth-nyu-kitti", ("zoe",), notes="ZoeDepth NK (metric)",
              approx_gb=1.4),
    DepthSpec("depth-anything-v2-small", "depth-anything/Depth-Anything-V2-Small-hf", ("depth-anything-v2-small",),
              notes="Depth-Anything-V2 small (the Tok fork's choice)", approx_gb=0.1),
    DepthSpec("tiny-depth", None, (), tiny=True, notes="random weights, built locally; for tests and the demo"),
]}
# Deforum's depth algorithms no transformers model reproduces.
_NO_DEPTH_MODEL = ("adabins", "leres", "midas+adabins (old)", "zoe+adabins (old)")


def depth_model_for(algorithm: str, override: str = "") -> DepthSpec:
    """The depth model for Deforum's ``depth_algorithm`` (or the one ``wan_depth_model`` names)."""
    if override:
        key = override.strip().lower()
        if key not in DEPTH_MODELS:
            raise WanError(f"unknown depth model {override!r}; known: {', '.join(DEPTH_MODELS)}")
        return DEPTH_MODELS[key]
    name = str(algorithm).strip().lower()
    for spec in DEPTH_MODELS.values():
        if name in spec.algorithms:
            return spec
    if name in _NO_DEPTH_MODEL:
        raise WanError(f"depth_algorithm {algorithm!r} has no transformers model here; use Midas-3-Hybrid, Zoe or"
                       " Depth-Anything-V2-small (or wan_depth_model), or use_depth_warping false for a flat scene")
    raise WanError(f"unknown depth_algorithm {algorithm!r}")
