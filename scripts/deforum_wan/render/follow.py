"""How a window follows Deforum's camera: the warped path it is guided along (``wan_camera
guide``) or the warped frames a VACE window keeps (``wan_camera vace``).

Both start from the window's last known frame (the init image, the conditioning frame, the
VACE context's last frame, or for a text-to-video window one still frame made first) and
carry it along the camera to the output time of each frame the window generates
(``planner.native_times``), with Deforum's own warp (``render.warp.CameraPath``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..backends.base import camera_kept
from ..backends.camera_guide import PathGuide
from ..config.camera import Camera
from ..config.planner import ClipPlan, Window, native_times
from ..config.settings import RenderSettings
from ..pixels import to_uint8
from .hybrid_motion import video_motion
from .warp import CameraPath

SEAM_PX = 3  # VACE keeps camera pixels this far inside the covered area: Wan generates the seam


class CameraFollower:
    """Deforum's camera at the render size, and its depth model (3D depth warping)."""

    def __init__(self, camera: Camera, plan: ClipPlan, depth=None, motion=None):
        """``motion``: a hybrid video's motion and composite after each camera step (VideoMotion)."""
        self.camera = camera.scaled(plan.width, plan.height)
        self.plan = plan
        self.depth = depth
        self.motion = motion

    @classmethod
    def for_plan(cls, settings: RenderSettings, plan: ClipPlan, models_dir) -> CameraFollower | None:
        """None when no window follows the camera; the depth model is loaded now, before any
        window, so a missing one fails in one line."""
        camera = settings.camera
        if camera is None or not any(w.wan_camera for w in plan.windows):
            return None
        depth = None
        if camera.depth_warping:
            from .depth import DepthEstimator

            depth = DepthEstimator(camera.depth_algorithm, models_dir, settings.depth_model)
        return cls(camera, plan, depth, video_motion(settings, plan.width, plan.height))

    def _warp(self, w: Window, anchor: np.ndarray, at: int, first: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """The window's frames from index ``first`` on as the camera moves ``anchor`` (the frame
        at index ``at``) to their times: (N, H, W, 3) in [0, 1], and the cover of each."""
        times = native_times(self.plan, w)
        frames, covers = CameraPath(self.camera, to_uint8(anchor), times[at], depth=self.depth,
                                    motion=self.motion).at(times[first:])
        return np.stack(frames).astype(np.float32) / 255.0, covers

    def vace_frames(self, w: Window, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """VACE's strict look: the frames after the context as the camera moves the conditioning
        frame (context[0]), and the share of each pixel to keep (the warp's cover, shrunk by a
        few pixels so Wan blends the seam)."""
        frames, covers = self._warp(w, context[0], 0, len(context))
        return frames, np.stack([shrink(c >= 0.999, SEAM_PX).astype(np.float32) for c in covers])

    def path_guide(self, w: Window, lead: list[np.ndarray]) -> PathGuide:
        """The whole window along the camera: its leading frames as they are (covered), then
        the last of them warped."""
        warped, covers = self._warp(w, lead[-1], len(lead) - 1, len(lead))
        h, w_px = self.plan.height, self.plan.width
        frames = np.concatenate([np.stack(lead).astype(np.float32), warped])
        cover = np.concatenate([np.ones((len(lead), h, w_px), np.float32), np.stack(covers).astype(np.float32)])
        return PathGuide(frames, cover, w.camera_free, w.camera_lock)


def lead_frames(image, context, still: Callable[[], np.ndarray]) -> list[np.ndarray]:
    """The frames a guided window starts from: the VACE context, the image, or a still."""
    if context is not None:
        return list(context)
    return [image] if image is not None else [still()]


def paste_kept(frames: list[np.ndarray], warped: np.ndarray, share: np.ndarray, start: int) -> None:
    """Put the camera's warped pixels back, exactly, into a VACE window's output from index
    ``start`` on: only where the backend was told to keep them (``camera_kept``), so no pixel
    the model generated is painted over."""
    for j, (frame, keep) in enumerate(zip(warped, camera_kept(share))):
        if start + j < len(frames):
            frames[start + j] = np.where(keep[..., None], frame, frames[start + j])


def shrink(mask: np.ndarray, px: int) -> np.ndarray:
    """Erode a boolean mask by ``px`` pixels (4-neighbourhood); the frame edge counts as inside."""
    out = mask.copy()
    for _ in range(px):
        padded = np.pad(out, 1, constant_values=True)  # the frame edge is no seam
        out = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return out
