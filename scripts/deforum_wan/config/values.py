"""How one settings value is read. Deforum files hold numbers as numbers, strings or
expressions, flags as booleans or "true"/"1"; every reader of settings (the settings
object, the presets, the tab's fields, the API) goes through these."""
from __future__ import annotations

import math
import re

from .schedule import ExprError, evaluate_number

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
MAX_PATH_CHARS = 4096  # Linux's PATH_MAX: no longer name can be opened
MAX_INT_BITS = 64  # the largest integer any setting takes is a 63-bit seed
_SURROGATE = re.compile("[\ud800-\udfff]")


def number(value, key: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or value is None:
        raise ExprError(f"{key} must be a number, got {value!r}")
    try:
        out = float(evaluate_number(str(value).strip()) if isinstance(value, str) else value)
    except (ExprError, TypeError, ValueError, OverflowError):  # OverflowError: an int no float holds
        raise ExprError(f"{key} must be a number, got {_shown(value)}") from None
    if not math.isfinite(out) or not lo <= out <= hi:
        raise ExprError(f"{key} must be between {lo:g} and {hi:g}, got {value!r}")
    return out


def _shown(value) -> str:
    """``repr`` for a message, cut short (a long int's repr may even be refused)."""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


def path(value, key: str) -> str:
    """A file name: text the OS can take (no NUL, at most MAX_PATH_CHARS characters)."""
    out = text(value, key)
    if "\x00" in out:
        raise ExprError(f"{key} contains a NUL character")
    if len(out) > MAX_PATH_CHARS:
        raise ExprError(f"{key} is {len(out)} characters long; a path has at most {MAX_PATH_CHARS}")
    return out


def check_plain(data, where: str = "settings") -> None:
    """Refuse what no setting holds and what would break later, wherever it is nested:
    lone surrogates (JSON's "\\ud800") in keys or strings, which cannot be printed, stored
    or written back as UTF-8, and integers beyond MAX_INT_BITS, which no float holds."""
    stack, seen = [(where, data)], set()
    while stack:
        at, value = stack.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                raise ExprError(f"{at} holds a lone surrogate ({ascii(found.group())}), not text")
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise ExprError(f"{at} holds an integer of {value.bit_length()} bits; at most {MAX_INT_BITS}")
        elif isinstance(value, (dict, list, tuple)) and id(value) not in seen:  # seen: a dict that holds itself
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                label = key if at == where and isinstance(key, str) else f"{at}[{ascii(key)}]"
                stack += [(f"a key of {at}", key), (label, item)]


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
