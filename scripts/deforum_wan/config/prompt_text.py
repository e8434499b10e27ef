"""A Deforum prompt as Deforum sends it, and as Wan's T5 reads it.

Deforum evaluates `backtick` expressions in a prompt at each frame and splits it at ``--neg``.
Weights are Stable Diffusion's: A1111's ``(word:1.3)``, composable ``A: 0.7 AND B: 0.3``
(Parseq writes its prompt weights so), Parseq's ``${...}``. T5 would read them as words, so
here weights are removed and of composable parts each frame keeps the strongest.
"""
from __future__ import annotations

import re

from .schedule import ExprError, evaluate_number

# (word:1.2), and Deforum's (word:`0.5+t/40`) whose weight is a backtick expression
_EMPHASIS_WEIGHT = re.compile(r"\(([^()`]*?):\s*(?:-?[\d.]+|`[^`]*`)\s*\)")
_EMPHASIS_PARENS = re.compile(r"\({2,}([^()]*)\){2,}")
_LORA_TAG = re.compile(r"<(?:lora|lyco|hypernet):[^>]*>", re.IGNORECASE)
_BACKTICK = re.compile(r"`([^`]*)`")
_PARSEQ_EXPR = re.compile(r"\$\{[^}]*\}")
_AND = re.compile(r"\s+AND\s+")
_PART_WEIGHT = re.compile(r"^(.*?)\s*:\s*(-?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*$", re.DOTALL)


def at_frame(text: str, frame: int, max_frames: int) -> str:
    """``text`` with its `backtick` expressions evaluated at ``frame`` (Deforum's prepare_prompt;
    one it cannot evaluate stays as written)."""
    def value(match: re.Match) -> str:
        try:
            return str(evaluate_number(match.group(1), t=frame, max_f=max_frames - 1))
        except ExprError:
            return match.group(0)

    return _BACKTICK.sub(value, text)


def split(text: str) -> tuple[str, str]:
    """(positive, negative) as Deforum sends them: the text before the first ``--neg``, and
    what follows it (further ``--neg`` removed), each stripped."""
    positive, _, negative = text.partition("--neg")
    return positive.strip(), negative.replace("--neg", "").strip()


def squash(text: str) -> str:
    return " ".join(text.split())


def for_wan(text: str) -> str:
    """The words of one side of a prompt for T5: the strongest composable part, weights,
    LoRA tags and Parseq expressions removed."""
    return strip_emphasis(_PARSEQ_EXPR.sub(" ", strongest_part(text)))


def strongest_part(text: str) -> str:
    """Of ``A: 0.7 AND B: 0.3``, the part with the largest weight (a part without one weighs 1;
    the first wins a tie), unwrapped from one pair of parentheses; other text as it is."""
    parts = _AND.split(text)
    if len(parts) == 1:
        return text
    best, best_weight = "", None
    for part in parts:
        match = _PART_WEIGHT.match(part.strip())
        body, weight = (match.group(1), float(match.group(2))) if match else (part.strip(), 1.0)
        if best_weight is None or weight > best_weight:
            best, best_weight = body, weight
    if best.startswith("(") and best.endswith(")") and best.count("(") == 1:
        best = best[1:-1]
    return best


def strip_emphasis(text: str) -> str:
    text = _LORA_TAG.sub(" ", text)
    for _ in range(8):  # nested emphasis unwraps one level per pass
        new = _EMPHASIS_PARENS.sub(r"\1", _EMPHASIS_WEIGHT.sub(r"\1", text))
        if new == text:
            break
        text = new
    return squash(text).strip(" ,")


def weighted(text: str) -> bool:
    """Whether ``for_wan`` drops composable parts or Parseq expressions of ``text``."""
    return bool(_AND.search(text) or _PARSEQ_EXPR.search(text))
