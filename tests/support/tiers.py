"""The suite's tiers, declared here and nowhere else (a pytest plugin the root conftest loads).

Every test carries exactly one tier marker, on the function, its class or its module's
`pytestmark`; a test without one, or with two, fails collection. `make test-fast` runs
`unit`, `make test` all but `distributed`, `make test-distributed` only `distributed`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import pytest

TIERS = {
    "unit": "pure code: no subprocess, no process, no listening socket (enforced); seconds",
    "e2e": "the in-process test server, a DAG run under dag.test(), or a subprocess of "
    "the project's own code",
    "live": "real servers: vLLM, llama.cpp, Airflow api-server/scheduler, Chromium, Ray; "
    "one at a time (xdist group `live`, added by this plugin)",
    "distributed": "a CeleryExecutor deployment (PostgreSQL, Redis, two workers)",
}
LIVE_GROUP = "live"
# WEBSCALE_RL_TEST_TIMINGS names a JSONL file: each test's start, end, worker, tier, groups.
TIMINGS_ENV = "WEBSCALE_RL_TEST_TIMINGS"


def pytest_configure(config):
    for name, doc in TIERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def tier_of(item) -> str:
    """The one tier marker a test carries; a UsageError names the test otherwise."""
    names = [mark.name for mark in item.iter_markers() if mark.name in TIERS]
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise pytest.UsageError(
            f"{item.nodeid}: a test carries exactly one tier marker of {sorted(TIERS)} "
            f"(found: {found}); the tiers are declared in tests/support/tiers.py"
        )
    return names[0]


def xdist_groups(item) -> list[str]:
    """The item's xdist group names, sorted, read as pytest-xdist reads them."""
    return sorted(
        {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
    )


@pytest.hookimpl(tryfirst=True)
def pytest_itemcollected(item):
    """Check the tier as each test is collected, so a missing marker fails collection
    before any `-m` selection, and put every live test in the `live` xdist group."""
    if tier_of(item) == "live" and LIVE_GROUP not in xdist_groups(item):
        item.add_marker(pytest.mark.xdist_group(LIVE_GROUP))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Make `--dist loadgroup` group for real. pytest-xdist 3.8 tags a test of an
    `xdist_group` by rewriting `item._nodeid` to `<nodeid>@<group>`; pytest 9 builds the
    nodeid from `item._id` and never reads `_nodeid`, so the scheduler saw no group and
    spread the live tests over both workers. The same tag, where pytest 9 reads it."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        groups = xdist_groups(item)
        if groups and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


class UnitTierViolation(RuntimeError):
    """A `unit` test (or a fixture it sets up) tried to start a process or a server."""


@contextlib.contextmanager
def unit_tier_guard(nodeid: str):
    """Keep the `unit` tier honest: while a unit test sets up, runs and tears down (its
    fixtures of any scope included), starting a subprocess or a process, or listening on
    a socket, raises, so a test that needs one must say so with `e2e` or `live`."""
    import multiprocessing.process
    import socket

    def refuse(what):
        def _raise(*args, **kwargs):
            raise UnitTierViolation(f"{nodeid} is marked unit but {what}: mark it e2e or live")

        return _raise

    patches = [
        (subprocess.Popen, "__init__", refuse("starts a subprocess")),
        (multiprocessing.process.BaseProcess, "start", refuse("starts a process")),
        (socket.socket, "listen", refuse("listens on a socket")),
    ]
    missing = object()  # socket.socket inherits `listen` from _socket.socket
    saved = [(owner, name, owner.__dict__.get(name, missing)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            if original is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Runs each test (set-up, call, tear-down) inside its tier's guard. With
    WEBSCALE_RL_TEST_TIMINGS set, its wall-clock start and end, worker, tier and xdist
    group go to that file: scripts/test_overlap.py reads it to show (or refute) that the
    live tests never ran beside each other."""
    tier = tier_of(item)
    start = time.time()
    try:
        with unit_tier_guard(item.nodeid) if tier == "unit" else contextlib.nullcontext():
            return (yield)
    finally:
        timings = os.environ.get(TIMINGS_ENV)
        if timings:
            line = {
                "nodeid": item.nodeid,
                "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
                "tier": tier,
                "groups": xdist_groups(item),
                "start": start,
                "end": time.time(),
            }
            with open(timings, "a") as out:  # one short append per test: never interleaved
                out.write(json.dumps(line) + "\n")
