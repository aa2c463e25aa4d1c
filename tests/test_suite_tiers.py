"""The tier rules hold: run in a nested pytest session (pytester, in-process) on small
test files written here, under the real plugin (tests/support/tiers.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e  # the nested tests start a subprocess on purpose

CONFTEST = 'pytest_plugins = ["support.tiers"]\n'


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("WEBSCALE_RL_TEST_TIMINGS", raising=False)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_a_test_without_a_tier_fails_collection(suite):
    suite.makepyfile(
        test_one="""
        import pytest

        @pytest.mark.unit
        def test_marked():
            pass

        def test_unmarked():
            pass
        """
    )
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "-m", "unit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_one.py::test_unmarked: a test carries exactly one tier*"])


def test_two_tiers_on_one_test_fail_collection(suite):
    suite.makepyfile(
        test_two="""
        import pytest

        pytestmark = pytest.mark.unit

        @pytest.mark.e2e
        def test_both():
            pass
        """
    )
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_both*(found: e2e, unit)*"])


def test_a_unit_test_may_not_start_a_process_or_listen_but_an_e2e_test_may(suite):
    suite.makepyfile(
        test_guard="""
        import multiprocessing
        import socket
        import subprocess
        import sys

        import pytest

        @pytest.fixture(scope="module")
        def server():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                sock.listen()
                yield sock

        @pytest.mark.unit
        def test_unit_subprocess():
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        @pytest.mark.unit
        def test_unit_process():
            multiprocessing.Process(target=print).start()

        @pytest.mark.unit
        def test_unit_module_fixture_listens(server):
            pass

        @pytest.mark.e2e
        def test_e2e_subprocess_and_server():
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                sock.listen()

        @pytest.mark.unit
        def test_unit_pure_after_the_others():
            assert sorted([3, 1, 2]) == [1, 2, 3]
        """
    )
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            # pytest prints set-up errors before failures
            "*test_unit_module_fixture_listens is marked unit but listens on a socket*",
            "*test_unit_subprocess is marked unit but starts a subprocess*",
            "*test_unit_process is marked unit but starts a process*",
        ]
    )


def test_live_tests_join_the_live_group(suite):
    suite.makepyfile(
        test_live="""
        import pytest

        pytestmark = pytest.mark.live

        def test_groups(request):
            groups = [m.args[0] for m in request.node.iter_markers("xdist_group")]
            assert groups == ["live"]
        """
    )
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
