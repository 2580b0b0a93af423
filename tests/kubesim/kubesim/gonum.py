"""JSON numbers as the API server's Go decoder sees them.

kube-apiserver decodes request bodies with ``sigs.k8s.io/json`` (``UnmarshalCaseSensitivePreserveInts``):
into ``interface{}`` (custom resources, patches) an integer literal that fits an ``int64`` stays an
``int64`` and every other number becomes a ``float64``; into a typed struct field
(``encoding/json``'s ``literalStore``) a number must parse as that field's Go type
(``strconv.ParseInt(s, 10, 64)`` and ``OverflowInt`` for ``int32``/``int64`` fields), else decoding
fails with ``json: cannot unmarshal number <literal> into Go struct field ...``.

Python's ``json`` reads integers of any size and floats as ``float``; this module decodes bodies
the Go way instead: ints within ``int64`` stay ``int``, every other number is a :class:`GoNumber`,
a ``float`` that remembers the literal it was written as (for the error messages).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


class GoNumber(float):
    """A JSON number that decodes as a ``float64`` (not an ``int64``), with its literal text."""

    literal: str

    def __new__(cls, value: float, literal: str) -> GoNumber:
        obj = super().__new__(cls, value)
        obj.literal = literal
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (GoNumber, (float(self), self.literal))


def _to_float(literal: str) -> float:
    try:
        return float(literal)
    except OverflowError:  # an integer literal beyond a float's range
        return math.copysign(math.inf, -1.0 if literal.startswith("-") else 1.0)


def _parse_int(s: str) -> int | float:
    n = int(s)
    if INT64_MIN <= n <= INT64_MAX:
        return n
    return GoNumber(_to_float(s), s)


def _parse_float(s: str) -> float:
    return GoNumber(_to_float(s), s)


def _parse_constant(s: str) -> Any:
    raise ValueError(
        f"invalid character {s[0]!r} looking for beginning of value"
    )  # NaN/Infinity are not JSON


_DECODER: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def loads(raw: bytes | str) -> Any:
    """``json.loads`` with Go's number handling (see the module docstring)."""
    return _DECODER.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def normalize(value: Any) -> Any:
    """Make Python numbers look decoded: an ``int`` outside ``int64`` becomes a :class:`GoNumber`
    (what the decoder would have produced for it), in place for dicts and lists."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return GoNumber(_to_float(str(value)), str(value))
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = normalize(v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            value[i] = normalize(v)
    return value


def literal(value: Any) -> str:
    """The text of a number as it appeared in the request (or would have, for a Python value)."""
    if isinstance(value, GoNumber):
        return value.literal
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))  # encoding/json formats float64 like this ('f', -1)
        r = repr(value)
        return r.replace("e+0", "e+").replace("e-0", "e-")
    return str(value)


def first_non_finite(value: Any) -> GoNumber | float | None:
    """The first infinite or NaN number in ``value`` (which a ``float64`` cannot hold: the Go decoder
    fails on such a literal), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return value
    if isinstance(value, dict):
        for v in value.values():
            bad = first_non_finite(v)
            if bad is not None:
                return bad
    elif isinstance(value, list):
        for v in value:
            bad = first_non_finite(v)
            if bad is not None:
                return bad
    return None


def fits_int(value: Any, fmt: str) -> bool:
    """Whether a decoded value is a number a Go ``int32`` (``fmt`` "int32") or ``int64`` field
    accepts: an integer literal within range (``literalStore``: ``ParseInt`` then ``OverflowInt``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, GoNumber):
        return False  # not an int64 integer literal
    n: int
    if isinstance(value, float):
        # In-process callers may hand over integral floats; the wire decoder never makes them.
        if not value.is_integer():
            return False
        n = int(value)
    else:
        n = value
    lo, hi = (INT32_MIN, INT32_MAX) if fmt == "int32" else (INT64_MIN, INT64_MAX)
    return lo <= n <= hi


def wrap_int32(value: int) -> int:
    """Go's ``int32(v)`` of an ``int64``: the low 32 bits, signed."""
    value &= 0xFFFFFFFF
    return value - 2**32 if value > INT32_MAX else value


def wrap_int64(value: int) -> int:
    """Go's int64 arithmetic overflow: the low 64 bits, signed."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - 2**64 if value > INT64_MAX else value
