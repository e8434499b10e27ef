"""``python -m deforum_wan official setup|update|remove|status [wan2.1|wan2.2]``: the official
Wan code cloned at its pinned commit into the models folder, its requirements installed beside
it (never into this Python's site-packages), checked by importing it (models/official_setup.py)."""
from __future__ import annotations

import os
import sys

from ..models.official_code import CODES, MIRROR_ENV, code_for
from ..models.official_setup import remove, setup, status

ACTIONS = ("setup", "update", "remove", "status")


class _Say:
    """Progress lines on stderr; a step that reports its share (git's percentages) every 10 %."""

    def __init__(self):
        self.last: tuple[str, int] | None = None

    def __call__(self, text: str, fraction: float | None = None) -> None:
        if fraction is not None:
            step = (text.split(":", 1)[0], int(fraction * 10))
            if step == self.last:
                return
            self.last = step
        print(f"  {text}", file=sys.stderr, flush=True)


def cmd_official(args) -> int:
    codes = [code_for(args.code)] if args.code else [code_for(name) for name in CODES]
    for code in codes:
        if args.action == "remove":
            print(remove(code, args.models_dir))
        elif args.action == "status":
            print(status(code, args.models_dir, python=sys.executable, env=dict(os.environ)))
        else:
            print(setup(code, args.models_dir, python=sys.executable, env=dict(os.environ), say=_Say(),
                        update=args.action == "update"))
    return 0


def add_official_command(subparsers) -> None:
    p = subparsers.add_parser(
        "official", help="set up, update, remove or check the official Wan code (Wan-Video/Wan2.1, Wan2.2) for the"
        " official backend: cloned at the commit this project checked, its requirements installed beside it",
        description="setup clones the repository at its pinned commit into <models dir>/official/<code>/repo and"
        " installs its requirement files (flash-attn skipped: PyTorch SDPA replaces it) into packages/ beside"
        " it with pip, for this Python, without touching its own site-packages; then imports it to check."
        " The official backend finds it there. update moves a setup to the pinned commit; remove deletes it;"
        f" status says where each is and whether it imports. ${MIRROR_ENV}: clone from a mirror instead of"
        " github.com/Wan-Video. A clone of your own is still named with DEFORUM_WAN_OFFICIAL_REPO.")
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("code", nargs="?", choices=list(CODES), help="which code (default: both)")
    p.add_argument("--models-dir", default=None,
                   help="models folder holding official/ (default: $DEFORUM_WAN_MODELS_DIR or ~/.cache/deforum-wan/models)")
    p.set_defaults(func=cmd_official)
