"""Training stacks live in venvs of their own, never in Airflow's: the interpreter of each."""

from __future__ import annotations

import os
from pathlib import Path

from webscale_rl.config import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def venv_python(env_var: str, venv: str, make_target: str, holding: str) -> Path:
    """`env_var` if set, else the project's `<venv>/bin/python`; a clear error when missing."""
    configured = os.environ.get(env_var, "").strip()
    path = Path(configured) if configured else ROOT / venv / "bin" / "python"
    if not path.exists():
        raise ConfigError(
            f"no Python with {holding} at {path}: run `make {make_target}` (or set {env_var} "
            f"to a python with {holding} installed)"
        )
    return path
