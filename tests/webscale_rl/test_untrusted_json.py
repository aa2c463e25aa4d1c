"""untrusted_json.loads: every way json.loads fails on hostile text becomes one reason."""

from __future__ import annotations

import json

import pytest

from webscale_rl.untrusted_json import MAX_DEPTH, UntrustedJSONError, loads, nesting_depth

pytestmark = pytest.mark.unit


def nested(levels: int) -> str:
    return '{"meta": ' + "[" * levels + "]" * levels + "}"


def test_values_within_the_limits_parse_as_json_loads_does():
    for text in ['{"a": [1, {"b": "c"}]}', nested(MAX_DEPTH - 1), "[]", '"x"', "1e400"]:
        assert loads(text) == json.loads(text)
    assert loads(b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("text", "reason", "detail"),
    [
        (nested(MAX_DEPTH), "too_deeply_nested", "nested deeper than 64 levels of arrays/objects"),
        (nested(100_000), "too_deeply_nested", "nested deeper than 64 levels of arrays/objects"),
        ("[" * 100_000, "too_deeply_nested", "nested deeper than 64 levels of arrays/objects"),
        (
            "9" * 5000,
            "number_too_long",
            "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits",
        ),
        ('{"a": ', "malformed_json", "Expecting value: column 7"),
        ("", "malformed_json", "Expecting value: column 1"),
    ],
)
def test_hostile_text_raises_one_error_with_a_reason(text, reason, detail):
    with pytest.raises(UntrustedJSONError) as refused:
        loads(text)
    assert (refused.value.reason, refused.value.detail) == (reason, detail)
    assert isinstance(refused.value, ValueError)  # callers catching ValueError still do


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"text": "[{" * 10_000 + ' \\" ] } "quoted" [[['})
    assert nesting_depth(text) == 1
    assert loads(text)["text"].startswith("[{[{")
    # An escaped quote does not end the string: the brackets after it are still inside it.
    assert nesting_depth('["a\\"' + "[" * 100 + '"]') == 1


def test_the_depth_scan_stops_past_the_limit():
    assert nesting_depth("[" * 1_000_000, limit=10) == 11
    assert nesting_depth("[[]][[]]" * 50, limit=64) == 2
