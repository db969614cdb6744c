"""Renderings of values for people and JSON readers (aos.render): every value of the model, never an error."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from aos import canonical
from aos.render import from_json, int_text, json_text, show

HUGE = 3 ** 20_000  # 9,543 digits


def strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


VALUES = [
    None, True, False, 0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, -(2 ** 63) - 1, 2 ** 64, HUGE, -HUGE,
    1.5, -0.25, 1e300, float("inf"), float("-inf"), "", "é\n\"", b"", b"\x00\xff",
    [], {}, {"a": 1, "b": [1, 2]}, {"$x": 1}, {1: "a", -2: "b"}, {b"k": {b"": None}}, {"s": 1, 2: 3, b"b": 4},
    [[[HUGE]]], {"v": {"$bytes": "00"}},
]


@pytest.mark.parametrize("value", VALUES, ids=[f"v{i}" for i in range(len(VALUES))])
def test_json_text_is_valid_json_and_reads_back(value: Any) -> None:
    text = json_text(value)
    assert "\n" not in text
    back = from_json(strict(text))
    assert back == value and canonical.encode(back) == canonical.encode(value)


@pytest.mark.parametrize("value", VALUES, ids=[f"v{i}" for i in range(len(VALUES))])
def test_show_never_fails(value: Any) -> None:
    assert isinstance(show(value), str)


def test_plain_values_are_plain_json() -> None:
    assert json_text({"b": 1, "a": [None, True, 1.5, "x"]}) == '{"a": [null, true, 1.5, "x"], "b": 1}'
    assert json_text(2 ** 63 - 1) == str(2 ** 63 - 1) and json_text(2 ** 63) == '{"$int": "%d"}' % 2 ** 63
    assert json_text(float("-inf")) == '{"$float": "-inf"}' and json_text(b"\x01") == '{"$bytes": "01"}'
    assert json_text({1: b"\x02"}) == '{"$map": [[1, {"$bytes": "02"}]]}'


def test_long_ints_are_hex_and_read_back_with_int_base_0() -> None:
    assert int_text(10 ** 100) == str(10 ** 100)
    assert int_text(HUGE) == hex(HUGE) and int(int_text(-HUGE), 0) == -HUGE
    assert show({"n": -HUGE}) == "{'n': -" + hex(HUGE) + "}"


def test_a_lowered_int_text_limit_falls_back_to_hex() -> None:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert int_text(10 ** 700) == hex(10 ** 700)
        assert from_json(strict(json_text(10 ** 700))) == 10 ** 700
    finally:
        sys.set_int_max_str_digits(old)


def test_the_deepest_values_render() -> None:
    # a huge int one level above the limit (a bignum at the limit itself is outside the model)
    levels = canonical.MAX_DEPTH - 1
    value: Any = [HUGE, 2**64 - 1]
    for i in range(levels - 1):
        value = {i: value} if i % 2 else [value]
    canonical.encode(value)  # in the model
    assert from_json(strict(json_text(value))) == value
    assert show(value).count("[") == 1 + sum(1 for i in range(levels - 1) if i % 2 == 0)


@pytest.mark.parametrize("obj", [{"$int": 1}, {"$float": "nan"}, {"$map": [[1]]}, {"$what": "x"},
                                 {"$int": "1", "a": 2}])
def test_malformed_tags_are_refused(obj: Any) -> None:
    with pytest.raises(ValueError):
        from_json(obj)
