"""``camera SETTINGS``: Deforum's camera path applied to an image, as PNGs and an mp4."""
from __future__ import annotations

import argparse
import sys

from ..errors import WanError
from .args import add_extra_dirs_arg, add_override_args, overrides


def add_camera_command(sub) -> None:
    p = sub.add_parser("camera", help="preview Deforum's camera path on an image (no model, seconds on a CPU)",
                       description="Write OUTDIR/{i:09}.png for every output frame (frame 0 = the image at"
                                   " W x H, frame i = it moved by Deforum's camera, and a hybrid video's"
                                   " motion and composite, from frame 0 to i, no diffusion) and"
                                   " OUTDIR/camera.mp4.")
    p.add_argument("settings", metavar="SETTINGS", help="Deforum settings file (.txt or .json)")
    p.add_argument("--image", help="the image to move (default: a grid test pattern)")
    p.add_argument("--outdir", required=True, help="folder for the frames and camera.mp4")
    p.add_argument("--frames", metavar="A:B", help="only output frames A to B (default: all)")
    p.add_argument("--models-dir", help="folder with depth model weights (3D depth warping)")
    add_extra_dirs_arg(p)
    add_override_args(p)
    p.set_defaults(func=cmd_camera)


def _frames(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    a, sep, b = text.partition(":")
    if not (sep and a.strip().isdigit() and b.strip().isdigit()):
        raise WanError(f"--frames expects A:B (two frame numbers), got {text!r}")
    return int(a), int(b)


def cmd_camera(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..config.settings import load_settings
    from ..render.camera_preview import check_preview, write_preview

    # a hybrid video is read (its motion moves the preview too): the user names their own files
    settings = load_settings(args.settings, overrides(args), read_video=True)
    frames = _frames(args.frames)
    first, last = check_preview(settings, frames)  # before the bar: a bad range is one line
    bars = []  # the bar starts with the first frame: a missing depth model is one line, no bar

    def on_frame(_: int) -> None:
        if not bars:
            bars.append(tqdm(total=last - first + 1, unit="frame", desc="camera", file=sys.stderr,
                             dynamic_ncols=True))
        bars[0].update(1)

    try:
        video, notes = write_preview(settings, args.outdir, args.image, frames, on_frame=on_frame,
                                     models_dir=args.models_dir)
    finally:
        for bar in bars:
            bar.close()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{last - first + 1} frames and {video}", file=sys.stderr)
    return 0
