"""Text renderings of values for people and for JSON readers (docs/cli.md, "Values in output").

Every value of the model renders, whatever its size or type: ints of any
size, infinite floats, byte strings, maps with ``int`` or ``bytes`` keys,
nesting to the model's depth limit. Nothing here depends on (or changes) the
interpreter's limit on int-to-decimal conversion (``sys.set_int_max_str_digits``):
an int too long to write in decimal under the default limit is written in
hexadecimal, which that limit does not cover.

* :func:`show` — one line, Python-literal-like, for people (``aos tail``,
  ``aos cells``, ``aos why``).
* :func:`json_text` — valid JSON (RFC 8259: no ``Infinity``, no ``NaN``) in
  which the values JSON has no form for are tagged objects of one member:
  ``{"$int": "…"}``, ``{"$float": "inf"}``, ``{"$bytes": "<hex>"}`` and
  ``{"$map": [[key, value], …]}``. :func:`from_json` reads them back.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["show", "json_text", "from_json", "int_text", "INT64_MIN", "INT64_MAX", "DECIMAL_BITS"]

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
DECIMAL_BITS = 13_000  # ints below 2**13000 (up to 3,914 digits) are written in decimal, longer ones in hex


def int_text(n: int) -> str:
    """``n`` in decimal, or as ``0x…``/``-0x…`` hex when it has more than :data:`DECIMAL_BITS` bits.

    Either form reads back with ``int(text, 0)``.
    """
    n = int(n)
    if n.bit_length() <= DECIMAL_BITS:
        try:
            return str(n)
        except ValueError:  # the process lowered its int-string limit below our threshold
            pass
    return hex(n)


def _float_text(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x != x:
        return "nan"  # outside the value model; rendered all the same, never an error
    return repr(float(x))


class _Text(str):
    """Literal output text on the work stack of the writers below (not a value to render)."""


def _render(value: Any, leaf: Any, container: Any) -> str:
    """Render ``value`` without recursion (values nest 400 levels deep, deeper than frames would allow).

    ``leaf(v)`` gives the text of a non-container or None; ``container(v)`` gives the parts of a
    container: literal ``_Text`` pieces and values still to render, in output order.
    """
    out: list[str] = []
    work: list[Any] = [value]
    while work:
        v = work.pop()
        if type(v) is _Text:
            out.append(v)
            continue
        text = leaf(v)
        if text is not None:
            out.append(text)
            continue
        work.extend(reversed(container(v)))
    return "".join(out)


def _joined(open_: str, items: list[list[Any]], close: str) -> list[Any]:
    parts: list[Any] = [_Text(open_)]
    for i, item in enumerate(items):
        if i:
            parts.append(_Text(", "))
        parts.extend(item)
    parts.append(_Text(close))
    return parts


def _show_leaf(value: Any) -> str | None:
    if value is None or value is True or value is False:
        return repr(value)
    if isinstance(value, bool):
        return repr(bool(value))
    if isinstance(value, int):
        return int_text(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, (str, bytes)):
        return repr(value)
    if isinstance(value, (dict, list, tuple)):
        return None
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001 - a renderer must not fail on what it is shown
        return f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"


def _show_parts(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return _joined("{", [[k, _Text(": "), v] for k, v in value.items()], "}")
    return _joined("[", [[v] for v in value], "]")


def show(value: Any) -> str:
    """A one-line, Python-literal-like text of ``value`` for people; never fails.

    Ints longer than :data:`DECIMAL_BITS` bits are shown as hex literals,
    infinities as ``inf``/``-inf``; anything outside the model by its ``repr``.
    """
    return _render(value, _show_leaf, _show_parts)


def _json_leaf(value: Any) -> str | None:
    if value is None:
        return "null"
    if value is True or value is False or isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return str(int(value))
        return '{"$int": "' + int_text(value) + '"}'
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(float(value))
        return '{"$float": "' + _float_text(value) + '"}'
    if isinstance(value, str):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return '{"$bytes": "' + bytes(value).hex() + '"}'
    if isinstance(value, (dict, list, tuple)):
        return None
    return json.dumps(show(value), ensure_ascii=False)  # outside the model: its text, as a JSON string


def _json_parts(value: Any) -> list[Any]:
    if isinstance(value, dict):
        if all(type(k) is str and not k.startswith("$") for k in value):
            return _joined("{", [[_Text(json.dumps(k, ensure_ascii=False) + ": "), value[k]]
                                 for k in sorted(value)], "}")
        return _joined('{"$map": [', [[_Text("["), k, _Text(", "), v, _Text("]")] for k, v in value.items()],
                       "]}")
    return _joined("[", [[v] for v in value], "]")


def json_text(value: Any) -> str:
    """``value`` as one line of valid JSON; never fails for a value of the model.

    ``None``, ``bool``, ``str``, lists, finite floats and ints in the signed
    64-bit range are plain JSON. Maps whose keys are all ``str`` (and none
    starts with ``$``) are JSON objects, keys sorted. Everything else is an
    object with one ``$`` member: ``{"$int": "<int_text>"}`` (ints outside
    64 bits), ``{"$float": "inf" | "-inf"}``, ``{"$bytes": "<hex>"}``, and
    ``{"$map": [[key, value], ...]}`` for maps with ``int`` or ``bytes``
    keys (or a ``str`` key that starts with ``$``), in the map's order.
    """
    return _render(value, _json_leaf, _json_parts)


_TAGS = ("$int", "$float", "$bytes", "$map")


def from_json(obj: Any) -> Any:
    """The value that :func:`json_text` wrote, from what ``json.loads`` read; ValueError if malformed."""
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    tags = [k for k in obj if k.startswith("$")]
    if not tags:
        return {k: from_json(v) for k, v in obj.items()}
    if len(obj) != 1 or tags[0] not in _TAGS:
        raise ValueError(f"not a tagged value: {sorted(obj)} (expected one of {', '.join(_TAGS)})")
    tag, body = tags[0], obj[tags[0]]
    if tag == "$map":
        if not isinstance(body, list) or not all(isinstance(p, list) and len(p) == 2 for p in body):
            raise ValueError('"$map" must be a list of [key, value] pairs')
        return {from_json(k): from_json(v) for k, v in body}
    if not isinstance(body, str):
        raise ValueError(f"{tag!r} must be a string, got {type(body).__name__}")
    if tag == "$int":
        return int(body, 16) if body.lstrip("-").startswith("0x") else int(body)
    if tag == "$float":
        if body not in ("inf", "-inf"):
            raise ValueError(f'"$float" must be "inf" or "-inf", got {body!r}')
        return float(body)
    return bytes.fromhex(body)
