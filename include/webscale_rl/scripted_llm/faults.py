"""The faults the scripted server injects, chosen deterministically per request body and
attempt (a rate per kind), for the first n tries of every request, or for every request
whose document holds a marker."""

from __future__ import annotations

from webscale_rl.scripted_llm.answers import stable

FAULT_KINDS = (
    "http_500",
    "http_503",
    "http_429",
    "http_400",
    "timeout",
    "malformed_json",
    "missing_fields",
    "truncated",
    "refusal",
)


def choose(faults: dict, key: str, attempt: int, tries: int, text: str) -> str | None:
    """The fault for this attempt, or None. `key` is the request body's hash, `attempt` how
    often that exact body came before, `tries` how often the request did (any seed), `text`
    the prompt (for a permanent fault's marker)."""
    first = faults.get("fail_first")
    if first and tries < int(first.get("n", 1)):
        return first["kind"]
    permanent = faults.get("permanent")
    if permanent and permanent.get("match") and permanent["match"] in text:
        return permanent["kind"]
    for kind in FAULT_KINDS:
        rate = float(faults.get(kind, 0) or 0)
        if rate and stable(f"{kind}|{key}|{attempt}") / 0xFFFFFFFF < rate:
            return kind
    return None
