"""socket_dir.make: a private folder whose path leaves room under the 107-byte socket limit."""

from __future__ import annotations

import tempfile

import pytest

from webscale_rl import socket_dir

pytestmark = pytest.mark.unit


@pytest.fixture
def temp_dir_at(monkeypatch):
    def point(path):
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv("TMPDIR", str(path))
        monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
        return path

    return point


def test_a_short_temp_dir_is_used_and_the_folder_is_private(temp_dir_at, tmp_path):
    base = temp_dir_at(tmp_path / "t")
    room = socket_dir.SUN_PATH_MAX - len(str(base)) - len("p-") - 10
    made = socket_dir.make("p-", room=room)
    assert made.parent == base and made.stat().st_mode & 0o777 == 0o700
    assert len(str(made)) + room <= socket_dir.SUN_PATH_MAX
    socket_dir.remove(made)
    assert not made.exists()


def test_a_temp_dir_too_long_for_the_room_falls_back_to_tmp(temp_dir_at, tmp_path):
    temp_dir_at(tmp_path / ("x" * 120))
    made = socket_dir.make("wsrl-vllm-", room=40)
    assert made.parent.as_posix() == "/tmp"
    socket_dir.remove(made)


def test_no_room_anywhere_is_an_error_that_says_what_to_set(temp_dir_at, tmp_path):
    temp_dir_at(tmp_path / ("x" * 120))
    with pytest.raises(socket_dir.SocketDirError, match=r"set TMPDIR to a short folder"):
        socket_dir.make("p-", room=100)
