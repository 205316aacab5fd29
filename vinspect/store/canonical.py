"""Canonical JSON (RFC 8785 style) and SHA-256 helpers: the one way records are hashed.

Hashes over records (audit chain, NCR content, e-signatures, export payloads) must be
reproducible by anyone holding the exported JSON, so the byte form is fixed here: UTF-8, keys
sorted by code point, no insignificant whitespace, numbers in ECMAScript form (RFC 8785 §3.2.2.3),
datetimes as ISO 8601 UTC strings with microseconds and a ``Z`` suffix.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

from vinspect.errors import StoreError

__all__ = ["JsonValue", "canonical_json", "content_sha256", "format_utc", "parse_utc", "sha256_hex"]

JsonValue = None | bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"]


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def format_utc(value: datetime) -> str:
    """ISO 8601 UTC with microseconds and ``Z``; naive datetimes are refused."""
    if value.tzinfo is None:
        raise StoreError(f"naive datetime {value!r}: store times must be timezone-aware UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> datetime:
    """Inverse of :func:`format_utc` (also accepts any ISO 8601 form with an offset)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise StoreError(f"time {text!r} has no UTC offset")
    return value.astimezone(UTC)


def _es_number(value: float) -> str:
    """ECMAScript Number::toString for a finite double (what RFC 8785 prescribes)."""
    if not math.isfinite(value):
        raise StoreError(f"non-finite number {value!r} cannot be written to a record")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    if not isinstance(exponent, int):  # pragma: no cover - finite values always have one
        raise StoreError(f"cannot format {value!r}")
    raw = "".join(map(str, digit_tuple))
    digits = raw.rstrip("0")
    exponent += len(raw) - len(digits)
    k = len(digits)
    n = exponent + k
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + text


def _normalise(value: object, slow: list[bool]) -> object:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        number = cast(float, value)
        if _es_number(number) != repr(number):  # json.dumps writes repr(): only the slow path is exact
            if number.is_integer() and abs(number) < 2**53:
                return int(number)
            slow[0] = True
        return number
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, Mapping):
        keys = [str(k) for k in value]
        if not all(k.isascii() for k in keys) and any(max(map(ord, k), default=0) > 0xFFFF for k in keys):
            slow[0] = True  # UTF-16 key order differs from code-point order only beyond the BMP
        return {str(k): _normalise(v, slow) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_normalise(v, slow) for v in value]
    if isinstance(value, bool | int | str):  # subclasses (enums) after the exact types
        return value
    raise StoreError(f"cannot canonicalise {type(value).__name__} for a record hash")


def _dump(value: object, out: list[str]) -> None:
    if isinstance(value, float):
        out.append(_es_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            out.append("," if i else "")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _dump(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            out.append("," if i else "")
            _dump(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def canonical_json(value: object) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON-like value (datetimes become UTC strings)."""
    slow = [False]
    normalised = _normalise(value, slow)
    if not slow[0]:
        # Every float prints the same via repr() as in ECMAScript form: the C encoder is exact.
        return json.dumps(
            normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    out: list[str] = []
    _dump(normalised, out)
    return "".join(out).encode("utf-8")


def content_sha256(value: object) -> str:
    """SHA-256 hex of :func:`canonical_json` of ``value``."""
    return sha256_hex(canonical_json(value))
