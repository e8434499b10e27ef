"""What a file's 3D depth warping needs before the tab can preview or render it, in the tab's
words: the depth model its ``depth_algorithm`` (or ``wan_depth_model``) names, fetched by the
Download depth model button, or the Depth warping field off (Deforum's ``use_depth_warping``
false: a flat scene, no depth model)."""
from __future__ import annotations

from ..config.settings import RenderSettings
from ..models.registry import DepthSpec, depth_model_for
from ..models.weights import depth_missing_message
from ..render.depth import missing_depth

DOWNLOAD_DEPTH = "Download depth model"
DEPTH_WARPING = "Depth warping (3D; off: a flat scene, no depth model)"
DEPTH_INFO = "Deforum's use_depth_warping: a 3D camera moves each pixel by its depth, from a depth model"
TAB_HINT = f"press {DOWNLOAD_DEPTH}, or untick Depth warping for a flat scene"


def depth_to_fetch(settings: RenderSettings) -> DepthSpec | None:
    """The depth model Download depth model fetches for these settings (the one depth warping
    would use, on or off, or a depth control video's); None when the camera is not 3D."""
    control = getattr(settings, "control", None)
    if control is not None and control.kind == "depth":
        return depth_model_for(control.depth_algorithm, settings.depth_model)
    camera = settings.camera
    if camera is None or camera.mode != "3D":
        return None
    return depth_model_for(camera.depth_algorithm, settings.depth_model)


def missing_message(settings: RenderSettings, models_dir, plan=None) -> str | None:
    """One line when the preview (``plan`` None) or the render of ``plan`` needs a depth model
    that is not on disk; None when nothing is missing."""
    spec = missing_depth(settings, models_dir, plan)
    return None if spec is None else depth_missing_message(spec, models_dir, hint=TAB_HINT)
