"""Session-wide fixtures for the `live` tier: the expensive things started once per test
run and shared by every live test that needs them (all live tests run on one worker, one
at a time, so "once per session" is once per suite)."""

from __future__ import annotations

import pytest

from support import long_checkout


@pytest.fixture(scope="session")
def long_checkout_dir(tmp_path_factory):
    """The project as a checkout at a 150+ character path (include/ copied, venvs linked):
    the embedded vLLM server and the Ray head are started as from there."""
    return long_checkout.make(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="session")
def ray_head(long_checkout_dir):
    """One local Ray head for the suite, run by the long checkout's Ray venv; skips with the
    fix when Ray is not installed."""
    from webscale_rl.training.ray_head import LocalRayHead

    python = long_checkout_dir / ".venv-verl" / "bin" / "python"
    if not python.exists():
        pytest.skip("no Ray: run `make verl-venv` (it creates .venv-verl)")
    head = LocalRayHead(num_cpus=2, python=python).start()
    yield head
    head.stop()
    assert not head.temp_dir.exists(), f"the Ray head left {head.temp_dir} behind"
