"""Deforum schedules without eval: keyframe strings, safe expressions, seeds.

Deforum evaluates schedule values and prompt keys with numexpr; we parse them into
a Python AST and evaluate only a whitelist (numbers, the names Deforum defines,
arithmetic, comparisons, numexpr's math functions), so a settings file can never
run code, and bounded, so it cannot hang the machine either.
"""
from __future__ import annotations

import ast
import math
import operator
import random
import re
from dataclasses import dataclass

MAX_EXPR_LEN = 1000  # per keyframe value (a run-written per-frame schedule has ~20 chars a key)
MAX_EXPR_NODES = 200
MAX_KEYFRAMES = 100_000  # per schedule; the settings file itself is bounded in bytes
MAX_ABS_VALUE = 1e15  # any intermediate or final value beyond this is an error

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_CMP = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


def _round(x, ndigits=None):
    # Clamped: round(5, -10**9) would compute 10**(10**9); values are within 1e15, so
    # 20 digits either way already gives the exact result.
    return round(x) if ndigits is None else round(x, max(-20, min(20, ndigits)))


# numexpr's function set (what Deforum schedules can call), plus min/max/round.
_FUNCS = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "arcsin": math.asin,
    "arccos": math.acos, "arctan": math.atan, "arctan2": math.atan2, "sinh": math.sinh,
    "cosh": math.cosh, "tanh": math.tanh, "sqrt": math.sqrt, "exp": math.exp,
    "log": math.log, "log10": math.log10, "log1p": math.log1p, "expm1": math.expm1,
    "abs": abs, "floor": math.floor, "ceil": math.ceil, "round": _round,
    "min": min, "max": max, "where": lambda c, a, b: a if c else b,
}
_CONSTS = {"pi": math.pi, "e": math.e}


class ExprError(ValueError):
    """An expression is malformed or not allowed; the message says why."""


@dataclass(frozen=True)
class Expr:
    """A parsed, validated expression; call ``evaluate(**names)`` as often as needed."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, **names: float) -> float:
        # Constants are checked once (compile_expr), results of operations as they are made.
        return _real(_eval(self.tree.body, names))


def compile_expr(text: str, allowed: frozenset[str] | set[str]) -> Expr:
    """Parse ``text`` into an ``Expr`` that may use only the names in ``allowed``."""
    if not isinstance(text, str):
        text = str(text)
    src = text.strip()
    if not src:
        raise ExprError("empty expression")
    if len(src) > MAX_EXPR_LEN:
        raise ExprError(f"expression longer than {MAX_EXPR_LEN} characters")
    # numexpr spells logical operators & | ~ ; Python parses them as bit ops, which we refuse.
    try:
        tree = ast.parse(src, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL or lone surrogate
        raise ExprError(f"{src!r} is not a valid expression") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_EXPR_NODES:
        raise ExprError(f"{src!r} is too complex")
    used = set()
    for node in nodes:
        if isinstance(node, ast.Name):
            if node.id not in allowed and node.id not in _FUNCS and node.id not in _CONSTS:
                raise ExprError(f"{src!r} uses unknown name {node.id!r}"
                                f" (allowed: {', '.join(sorted(allowed)) or 'none'})")
            used.add(node.id)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
                raise ExprError(f"{src!r} calls something that is not a math function")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExprError(f"{src!r} contains a non-numeric constant")
            _real(node.value)
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare,
                                   ast.IfExp, ast.Load, ast.BoolOp, ast.And, ast.Or,
                                   *_BINOPS, *_UNARY, *_CMP)):
            raise ExprError(f"{src!r}: {type(node).__name__} is not allowed in an expression")
    return Expr(src, tree, frozenset(used))


def _eval(node: ast.AST, names: dict[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in _CONSTS:
            return _CONSTS[node.id]
        raise ExprError(f"name {node.id!r} has no value here")
    if isinstance(node, ast.BinOp):
        return _binop(node, names)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, names))
    if isinstance(node, ast.Compare):
        return _compare(node, names)
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, names) for v in node.values]
        return int(all(values) if isinstance(node.op, ast.And) else any(values))
    if isinstance(node, ast.IfExp):
        return _eval(node.body, names) if _eval(node.test, names) else _eval(node.orelse, names)
    if isinstance(node, ast.Call):
        args = [_eval(a, names) for a in node.args]
        try:
            value = _FUNCS[node.func.id](*args)
        except (ValueError, TypeError, ArithmeticError) as exc:  # log(2, 1) divides by zero
            raise ExprError(f"{node.func.id}(): {exc or type(exc).__name__}") from None
        return _real(value)
    raise ExprError(f"{type(node).__name__} is not allowed")  # unreachable after compile_expr


def _real(value) -> float:
    """A value the evaluator made, checked: a real number within MAX_ABS_VALUE, so no NaN,
    infinity or complex number leaves it and no integer grows past it (Python's ints are
    unbounded: 9999999999*9999999999*... would grow until memory runs out)."""
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, (int, float)):
        raise ExprError(f"the result {_shown(value)} is not a real number")
    if not abs(value) <= MAX_ABS_VALUE:  # also False for NaN
        raise ExprError(f"a value of {_shown(value)} is out of range (at most {MAX_ABS_VALUE:g})")
    return value


def _shown(value) -> str:
    if isinstance(value, int) and value.bit_length() > 64:  # no float holds it; str() may refuse it
        return f"about 2**{value.bit_length()}"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _binop(node: ast.BinOp, names: dict[str, float]) -> float:
    left, right = _eval(node.left, names), _eval(node.right, names)
    if isinstance(node.op, ast.Pow):
        return _power(left, right)
    try:
        value = _BINOPS[type(node.op)](left, right)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ExprError(f"arithmetic error: {exc}") from None
    return _real(value)


def _power(base: float, exponent: float) -> float:
    """``base ** exponent`` bounded by the size of the result, not of the exponent:
    ``cos(t/9)**180`` is a small number (real files use it), ``9**99999`` is refused
    before Python spends minutes computing it."""
    if base != 0 and exponent * math.log10(abs(base)) > math.log10(MAX_ABS_VALUE):
        raise ExprError(f"{base:g} ** {exponent:g}: the exponent makes it too large")
    try:
        value = operator.pow(base, exponent)
    except (ArithmeticError, ValueError) as exc:
        raise ExprError(f"arithmetic error: {exc}") from None
    if isinstance(value, complex):  # a negative base to a fractional power
        raise ExprError(f"{base:g} ** {exponent:g} is not a real number")
    return _real(value)


def _compare(node: ast.Compare, names: dict[str, float]) -> int:
    left = _eval(node.left, names)
    for op, comp in zip(node.ops, node.comparators):
        right = _eval(comp, names)
        if not _CMP[type(op)](left, right):
            return 0
        left = right
    return 1


def evaluate_number(text, **names: float) -> float:
    """Evaluate a one-off expression (a prompt key, a numeric setting given as text)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _real(text)
    return compile_expr(str(text), set(names)).evaluate(**names)


# --- keyframe strings -------------------------------------------------------------

def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses (Deforum splits on every comma, which
    breaks ``where(a, b, c)``); unbalanced parentheses are an error."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ExprError(f"unbalanced ')' at character {i + 1}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ExprError("unbalanced '(' (missing ')')")
    parts.append(text[start:])
    return parts


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1].strip()
    return text


def parse_frame_key(key, max_frames: int) -> int:
    """A keyframe number: an integer or an expression of ``max_f`` (= max_frames - 1)."""
    text = _unquote(str(key))
    try:
        value = evaluate_number(text, max_f=max_frames - 1)
    except ExprError as exc:
        raise ExprError(f"frame key {key!r}: {exc}") from None
    if value != int(value):
        raise ExprError(f"frame key {key!r} is {value}, not a whole frame number")
    if value < 0:
        raise ExprError(f"frame key {key!r} is negative ({int(value)})")
    return int(value)


def parse_keyframes(text: str, max_frames: int) -> dict[int, str]:
    """``'0: (7), "max_f/2": (5.5)'`` -> {frame: value text}, values unevaluated."""
    if not isinstance(text, str):
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return {0: str(_real(text))}  # a bare number means a constant schedule
        raise ExprError(f"a schedule must be a string like '0: (7)', got {type(text).__name__}")
    entries = _split_top_level(text, ",")
    if len(entries) > MAX_KEYFRAMES:
        raise ExprError(f"schedule has {len(entries)} keyframes; at most {MAX_KEYFRAMES}")
    frames: dict[int, str] = {}
    for entry in entries:
        if not entry.strip():
            continue
        key, colon, value = _split_key_value(entry)
        if not colon:
            raise ExprError(f"entry {entry.strip()!r} has no 'frame: (value)' form")
        # Deforum splits an entry on every ':' and keeps the first two parts, so a doubled
        # key "0: 0: (x)" is the value 0 there; read it the same way.
        value, _, _ = _split_key_value(value)
        frames[parse_frame_key(key, max_frames)] = value.strip()
    if not frames:
        raise ExprError("schedule has no keyframes")
    return frames


def _split_key_value(entry: str) -> tuple[str, str, str]:
    # The key may be a quoted expression; the first ':' outside quotes and parens ends it.
    depth, quote = 0, None
    for i, ch in enumerate(entry):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ":" and depth == 0:
            return entry[:i], ":", entry[i + 1:]
    return entry, "", ""


@dataclass
class Schedule:
    """A Deforum keyframe schedule expanded to one value per frame.

    Numeric keys are interpolated linearly and held after the last key; an
    expression key is evaluated at every frame (``t``) until the next key, as
    Deforum's ``get_inbetweens`` does. A missing frame-0 key holds the first
    value back to frame 0 (Deforum crashes there); ``warnings`` says so.
    """

    text: str
    values: list[float]
    warnings: list[str]

    def __getitem__(self, frame: int) -> float:
        return self.values[min(max(frame, 0), len(self.values) - 1)]


def build_schedule(text, max_frames: int, seed: int = 0, name: str = "schedule") -> Schedule:
    try:
        keys = parse_keyframes(text, max_frames)
    except ExprError as exc:
        raise ExprError(f"{name}: {exc}") from None
    warnings = []
    ignored = sorted(k for k in keys if k >= max_frames)
    if ignored:
        warnings.append(f"{name}: keys {ignored} are at or past max_frames={max_frames}; ignored")
    keys = {k: v for k, v in keys.items() if k < max_frames} or {0: keys[min(keys)]}
    if 0 not in keys:
        warnings.append(f"{name}: no key at frame 0; holding the first value back to frame 0")
    env = {"max_f": max_frames - 1, "s": seed}
    series: list[float | None] = [None] * max_frames
    expr: Expr | None = None
    for i in range(max_frames):
        if i in keys:
            try:
                parsed = compile_expr(keys[i], {"t", "max_f", "s"})
            except ExprError as exc:
                raise ExprError(f"{name} at frame {i}: {exc}") from None
            # Deforum: a plain number is interpolated towards the next key; anything
            # else (even "2*3") is re-evaluated at every frame until the next key.
            expr = None if _is_number(keys[i]) else parsed
            if expr is None:
                series[i] = _checked(parsed, name, i, t=i, **env)
        if expr is not None:
            series[i] = _checked(expr, name, i, t=i, **env)
    return Schedule(str(text), _interpolate(series), warnings)


def _is_number(text: str) -> bool:
    try:
        float(re.sub(r"[()'\"]", "", text))
        return True
    except ValueError:
        return False


def _checked(expr: Expr, name: str, frame: int, **names) -> float:
    try:
        return float(expr.evaluate(**names))
    except ExprError as exc:
        raise ExprError(f"{name} at frame {frame}: {exc}") from None


def _interpolate(series: list[float | None]) -> list[float]:
    known = [i for i, v in enumerate(series) if v is not None]
    out = list(series)
    j = 0  # index into known of the first key after frame i
    for i in range(len(out)):
        while j < len(known) and known[j] <= i:
            j += 1
        if out[i] is not None:
            continue
        if j == 0:  # before the first key: hold it
            out[i] = series[known[0]]
        elif j == len(known):  # after the last key: hold it
            out[i] = series[known[-1]]
        else:
            prev, nxt = known[j - 1], known[j]
            w = (i - prev) / (nxt - prev)
            out[i] = series[prev] * (1 - w) + series[nxt] * w
    return out


# --- seeds --------------------------------------------------------------------------

SEED_BEHAVIORS = ("iter", "fixed", "random", "ladder", "alternate", "schedule")
MAX_SEED = 2**32 - 1


def _derived_random(seed: int, frame: int) -> int:
    # Deforum draws with the global RNG (unreproducible); we derive it from the
    # render's seed so a written settings file reproduces the render.
    return random.Random(seed * 1_000_003 + frame).randint(0, MAX_SEED)


def seed_at(frame: int, seed: int, behavior: str, iter_n: int = 1,
            schedule: Schedule | None = None) -> int:
    """Deforum's seed for ``frame`` (counted with cadence 1), per ``seed.next_seed``."""
    if behavior == "iter":
        return seed if frame == 0 else seed + 1 + (frame - 1) // iter_n
    if behavior == "fixed":
        return seed
    if behavior == "ladder":
        return seed + frame // 2 if frame % 2 == 0 else seed + 2 + (frame - 1) // 2
    if behavior == "alternate":
        return seed + frame % 2
    if behavior == "random":
        return seed if frame == 0 else _derived_random(seed, frame)
    if behavior == "schedule":
        value = int(schedule[frame]) if schedule is not None else seed
        return _derived_random(seed, frame) if value == -1 else value
    raise ExprError(f"unknown seed_behavior {behavior!r}")
