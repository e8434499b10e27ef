"""Depth for Deforum's 3D depth warping: the transformers model of the file's depth algorithm
(weights from the models folder or the hub cache, safetensors only), run on each frame the
camera moves, as Deforum predicts depth on every previous frame."""
from __future__ import annotations

import numpy as np

from ..errors import WanError
from ..models.registry import DepthSpec, depth_model_for
from ..models.weights import depth_missing_message, locate_depth


def depth_needed(settings, plan=None) -> DepthSpec | None:
    """The depth model a camera preview (``plan`` None) or a render of ``plan`` (only when one
    of its windows follows the camera) loads: None for a flat scene (2D, or 3D with
    use_depth_warping off), or the depth of a depth control video (the render's only). Raises
    WanError for a depth_algorithm no model stands for."""
    control = getattr(settings, "control", None)
    if plan is not None and control is not None and control.kind == "depth":
        return depth_model_for(control.depth_algorithm, settings.depth_model)
    camera = settings.camera
    if camera is None or not camera.depth_warping:
        return None
    if plan is not None and not any(w.wan_camera for w in plan.windows):
        return None
    return depth_model_for(camera.depth_algorithm, settings.depth_model)


def missing_depth(settings, models_dir=None, plan=None) -> DepthSpec | None:
    """``depth_needed``'s model when it is not on disk (tiny ones are built on use: never missing)."""
    spec = depth_needed(settings, plan)
    return None if spec is None or spec.tiny or locate_depth(spec, models_dir) is not None else spec


class DepthEstimator:
    """``estimator(image)`` -> (h, w) float32 depth (disparity for MiDaS-style models)."""

    def __init__(self, algorithm: str, models_dir: str | None = None, override: str = "", device: str = "cpu"):
        self.spec = depth_model_for(algorithm, override)
        folder = locate_depth(self.spec, models_dir)
        if folder is None and self.spec.tiny:
            from ..models.tiny import ensure_tiny_depth
            from ..models.weights import resolve_models_dir

            folder = ensure_tiny_depth(resolve_models_dir(models_dir))
        if folder is None:
            raise WanError(depth_missing_message(self.spec, models_dir))
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.torch = torch
        self.device = torch.device(device)
        self.model = AutoModelForDepthEstimation.from_pretrained(str(folder), use_safetensors=True).to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(str(folder))
        # Deforum hands MiDaS the BGR frame (its channel-order quirk); kept, so the depth is Deforum's.
        self.bgr = str(algorithm).strip().lower().startswith("midas") and not override
        self.name = self.spec.id

    def __call__(self, image: np.ndarray) -> np.ndarray:
        torch = self.torch
        h, w = image.shape[:2]
        pixels = image[..., ::-1] if self.bgr else image
        inputs = self.processor(images=np.ascontiguousarray(pixels), return_tensors="pt").to(self.device)
        with torch.no_grad():
            depth = self.model(**inputs).predicted_depth
        depth = torch.nn.functional.interpolate(depth[:, None].float(), size=(h, w), mode="bicubic",
                                                align_corners=False)
        return depth[0, 0].cpu().numpy().astype(np.float32)
