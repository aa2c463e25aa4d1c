"""Short private folders for the Unix sockets our servers create.

A Unix-domain socket's path is at most 107 bytes (`sizeof(sockaddr_un.sun_path)` less the
NUL). vLLM's engine makes its ZMQ IPC sockets in its temp dir (`<dir>/<uuid4>`, 37 more
bytes), Ray its raylet and plasma sockets in its session dir, PostgreSQL `.s.PGSQL.<port>`,
Python's multiprocessing `pymp-*/listener-*`. A folder inside the checkout puts that limit
at the mercy of where the checkout lives (a 56-character path already broke vLLM), so
socket folders come from here: under the system temp dir, created 0700, removed by their
owner when the server stops. Caches stay in the checkout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SUN_PATH_MAX = 107
# Room left for what a server writes inside the folder: Ray's longest socket name under its
# temp dir (session_<date>_<time>_<pid>/sockets/plasma_store) is ~75 bytes.
DEFAULT_ROOM = 80


class SocketDirError(RuntimeError):
    """No temp dir is short enough for a socket folder."""


def make(prefix: str, room: int = DEFAULT_ROOM) -> Path:
    """A new private (0700) folder whose path leaves `room` bytes of the socket-path limit
    for the names created inside it. The system temp dir is tried first (TMPDIR, so a user
    can point it elsewhere), then /tmp when TMPDIR itself is too long."""
    tried = []
    for base in dict.fromkeys((tempfile.gettempdir(), "/tmp")):
        # mkdtemp adds 8 random characters to the prefix, and a separator on each side.
        if len(os.fsencode(base)) + len(prefix) + 8 + 2 + room <= SUN_PATH_MAX:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        tried.append(base)
    raise SocketDirError(
        f"no temp dir leaves {room} bytes for socket names under the {SUN_PATH_MAX}-byte "
        f"Unix-socket limit (tried {', '.join(tried)}): set TMPDIR to a short folder, e.g. /tmp"
    )


def remove(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
