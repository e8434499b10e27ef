"""Deforum's own algorithms, transcribed from deforum-art/sd-webui-deforum (AGPL-3.0),
used as the oracle our implementation is compared with.

- ``next_seed``: scripts/deforum_helpers/seed.py, verbatim logic.
- ``prompt_series``: scripts/deforum_helpers/render.py (prompt keys -> per-frame prompt,
  ``ffill().bfill()``), without pandas.
- ``apply_pos_neg``: scripts/deforum_helpers/args.py (``animation_prompts_positive/negative``).
"""
import random


class _Obj:
    pass


def next_seed(args, root):
    if args.seed_behavior == 'iter':
        args.seed += 1 if root.seed_internal % args.seed_iter_N == 0 else 0
        root.seed_internal += 1
    elif args.seed_behavior == 'ladder':
        args.seed += 2 if root.seed_internal == 0 else -1
        root.seed_internal = 1 if root.seed_internal == 0 else 0
    elif args.seed_behavior == 'alternate':
        args.seed += 1 if root.seed_internal == 0 else -1
        root.seed_internal = 1 if root.seed_internal == 0 else 0
    elif args.seed_behavior == 'fixed':
        pass  # always keep seed the same
    else:
        args.seed = random.randint(0, 2**32 - 1)
    return args.seed


def seeds(seed, behavior, iter_n, n_frames):
    """The seed Deforum uses for each of ``n_frames`` diffused frames (cadence 1)."""
    args, root = _Obj(), _Obj()
    args.seed, args.seed_behavior, args.seed_iter_N = seed, behavior, iter_n
    root.seed_internal = 0
    out = []
    for _ in range(n_frames):
        out.append(args.seed)
        next_seed(args, root)
    return out


def apply_pos_neg(prompts, positive, negative):
    negative = negative.replace('--neg', '')
    return {key: f"{positive} {val} {'' if '--neg' in val else '--neg'} {negative}"
            for key, val in prompts.items()}


def prompt_series(prompts_by_frame, max_frames):
    """prompts_by_frame: {int frame: text}; frames >= max_frames are ignored (pandas
    enlarges the series with them, then they are never read)."""
    series = [None] * max_frames
    for frame, text in prompts_by_frame.items():
        if frame < max_frames:
            series[frame] = text
    last = None
    for i in range(max_frames):  # ffill
        if series[i] is None:
            series[i] = last
        last = series[i]
    first = next((v for v in series if v is not None), None)
    return [first if v is None else v for v in series]  # bfill
