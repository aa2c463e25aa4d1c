"""The project as it would sit in a checkout at a long path (a user's workspace, a CI
runner's): `include/` copied there for real, so the package's own idea of where the project
lives (REPO_ROOT, the venvs' ROOT) is that path, and the built venvs and model linked in."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import ROOT

MIN_CHARS = 150
LINKED = (".venv-vllm", ".models", ".venv-verl", ".venv-train")


def make(base: Path, min_chars: int = MIN_CHARS) -> Path:
    """A checkout folder at least `min_chars` long under `base`, holding include/ and links
    to the venvs and model that exist in this checkout."""
    parts, path = 0, base.resolve()
    while len(str(path / "webscale-rl")) < min_chars:
        parts += 1
        path = path / f"workspace-{parts:02d}-of-a-user-with-deep-folders"
    path = path / "webscale-rl"
    path.mkdir(parents=True)
    shutil.copytree(ROOT / "include", path / "include", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in LINKED:
        if (ROOT / name).exists():
            (path / name).symlink_to(ROOT / name)
    return path
