"""The one strict JSON reader for what llm4seg does not write itself or must not misread.

Two parsers that read one text differently let a request through (issue 44: Python keeps the last
copy of a repeated key, Triton's rapidjson the first). So what is ambiguous or non-standard is
refused, never resolved:
- a key repeated in any object, at any depth;
- NaN, Infinity, -Infinity (not JSON; Python accepts them, other parsers do not);
- an integer beyond +-2^63 (C++ parsers cannot hold it) or a float that overflows to infinity;
- nesting deeper than MAX_DEPTH, text that is not UTF-8, anything after the value.
Every refusal is a `StrictJsonError` (a ConfigError) naming what and where (a JSON path).
"""

from __future__ import annotations

import json
import math
from typing import Any

from llm4seg.errors import ConfigError

MAX_DEPTH = 64
INT_LIMIT = 2**63


class StrictJsonError(ConfigError):
    """JSON that two parsers could read differently, or that is not JSON at all."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJsonError(f"the key {key!r} appears twice in one object",
                                  hint="send each key once (parsers disagree on which copy wins)")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON value", hint="send finite numbers (JSON has no NaN or Infinity)")


def _int(text: str) -> int:
    value = int(text)
    if abs(value) >= INT_LIMIT:
        raise StrictJsonError(f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is beyond +-2^63",
                              hint="send integers that fit 64 bits")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(f"the number {text[:24]} overflows to infinity", hint="send finite numbers")
    return value


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (checked before parsing: no recursion bomb)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_strict(data: str | bytes, what: str = "JSON") -> Any:
    """Parse `data` (text or UTF-8 bytes), refusing every ambiguity listed in the module.

    Args:
        what: names the input in errors ("the request body", "manifest.json").

    Raises:
        StrictJsonError naming `what` and the problem.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else str(data)
    except UnicodeDecodeError as exc:
        raise StrictJsonError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                              hint="send UTF-8 JSON") from None
    if _depth(text) > MAX_DEPTH:
        raise StrictJsonError(f"{what} nests deeper than {MAX_DEPTH} levels", hint="send flatter JSON")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_int=_int,
                          parse_float=_float)
    except StrictJsonError as exc:
        raise StrictJsonError(f"{what}: {exc.message}", hint=exc.hint) from None
    except (ValueError, RecursionError) as exc:
        raise StrictJsonError(f"{what} is not valid JSON ({exc})", hint="send one JSON value, nothing after it") from None


__all__ = ["INT_LIMIT", "MAX_DEPTH", "StrictJsonError", "loads_strict"]
