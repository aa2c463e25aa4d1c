"""What the client must make of a real model's reply, worked out from the reply alone.

A live test cannot choose what a 135M model writes, so instead of accepting every outcome it
derives the one outcome the client owes for the text that came back (one attempt, no retry)
and checks the client's verdict against it: a client that took prose as success, or called
a schema violation truncated, fails."""

from __future__ import annotations

import json
import re

import jsonschema

_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def expected_kind(raw: str | None, schema: dict, completion_tokens: int, max_tokens: int):
    """None for a reply the client must accept, else the error kind it must record."""
    if completion_tokens >= max_tokens:
        return "truncated"
    text = (raw or "").strip()
    fenced = _FENCED.match(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return "invalid_json"
    try:
        jsonschema.Draft202012Validator(schema).validate(value)
    except jsonschema.ValidationError:
        return "schema_mismatch"
    return None


def check(result, schema: dict, max_tokens: int) -> str | None:
    """Assert the client's verdict on one single-attempt call is the one its raw reply owes."""
    want = expected_kind(result.raw, schema, result.completion_tokens, max_tokens)
    assert result.attempts == 1, result.attempts
    assert result.error_kind == want, (want, result.error_kind, result.error, result.raw)
    assert result.ok == (want is None)
    if want is None:
        jsonschema.validate(result.parsed, schema)
    else:
        assert result.parsed is None and result.raw is not None
    return want
