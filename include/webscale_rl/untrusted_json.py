"""Parsing JSON text this project did not write: corpus lines, model replies, benchmark
files, a judge's verdicts.

`json.loads` raises more than `JSONDecodeError` on hostile input: `RecursionError` for deep
nesting (`[[[[…]]]]` 100,000 levels), `ValueError` for an integer of more than 4,300 digits
(CPython's int-conversion limit), `MemoryError` for a value too big to build. Each of those
escaped the callers' `except JSONDecodeError` and failed a whole task. `loads` here turns
every one into `UntrustedJSONError` with a reason a warehouse row can carry, and checks the
nesting depth before the parser recurses, so no input reaches the interpreter's limit.
"""

from __future__ import annotations

import json
import re

# Deeper than any corpus record's metadata or any reply our schemas allow (theirs is <= 4),
# far below the interpreter's recursion limit (1000).
MAX_DEPTH = 64

# A JSON string literal (escapes included); unrolled so a long string costs one linear scan.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_OPEN = frozenset("[{")

REASONS = ("malformed_json", "too_deeply_nested", "number_too_long", "value_too_large")


class UntrustedJSONError(ValueError):
    """The text is no JSON value we can take: `reason` is one of REASONS, `detail` says where."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """The deepest bracket nesting outside string literals, counted up to `limit` + 1 (the
    scan stops there). Brackets inside strings (a document's text) never count."""
    # Fewer brackets than the limit cannot nest deeper: the common case costs two C scans.
    if text.count("[") + text.count("{") <= limit:
        return 0
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def loads(text: str | bytes, max_depth: int = MAX_DEPTH):
    """`json.loads`, raising only UntrustedJSONError for anything it cannot take."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    if nesting_depth(text, max_depth) > max_depth:
        raise UntrustedJSONError(
            "too_deeply_nested", f"nested deeper than {max_depth} levels of arrays/objects"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UntrustedJSONError("malformed_json", f"{exc.msg}: column {exc.colno}") from None
    except RecursionError:  # only if a caller lifted max_depth past the interpreter's limit
        raise UntrustedJSONError(
            "too_deeply_nested", "nesting exceeds the recursion limit"
        ) from None
    except MemoryError:
        raise UntrustedJSONError("value_too_large", "the value does not fit in memory") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        if "digits" in str(exc):
            raise UntrustedJSONError("number_too_long", str(exc).split(";")[0]) from None
        raise UntrustedJSONError("malformed_json", str(exc)[:200]) from None
