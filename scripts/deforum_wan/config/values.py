"""How one settings value is read. Deforum files hold numbers as numbers, strings or
expressions, flags as booleans or "true"/"1"; every reader of settings (the settings
object, the presets, the tab's fields, the API) goes through these."""
from __future__ import annotations

import math

from .schedule import ExprError, evaluate_number

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def number(value, key: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or value is None:
        raise ExprError(f"{key} must be a number, got {value!r}")
    try:
        out = float(evaluate_number(str(value).strip()) if isinstance(value, str) else value)
    except (ExprError, TypeError, ValueError):
        raise ExprError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(out) or not lo <= out <= hi:
        raise ExprError(f"{key} must be between {lo:g} and {hi:g}, got {value!r}")
    return out


def whole(value, key: str, lo: int, hi: int) -> int:
    out = number(value, key, lo, hi)
    if out != int(out):
        raise ExprError(f"{key} must be a whole number, got {value!r}")
    return int(out)


def truthy(value) -> bool:
    """Deforum's lenient flag: any of "true"/"1"/"yes"/"on" (any case), else bool(value)."""
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return bool(value)


def strict_flag(value, key: str) -> bool:
    """A flag that must say yes or no (keys whose typo should not silently mean off)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ExprError(f"{key} must be true or false, got {value!r}")


def text(value, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ExprError(f"{key} must be text, got {type(value).__name__}")
    return value


def choice(value, key: str, options: tuple[str, ...]) -> str:
    """One of ``options``, matched without case; the option's own spelling is returned."""
    found = match_choice(value, options)
    if found is None:
        raise ExprError(f"{key} must be one of {', '.join(options)}, got {value!r}")
    return found


def match_choice(value, options: tuple[str, ...]) -> str | None:
    """Without case, and "-" read as "_" (``first-block`` is ``first_block``)."""
    spelled = str(value).strip().lower().replace("-", "_") if value is not None else ""
    return next((o for o in options if o.lower().replace("-", "_") == spelled), None)
