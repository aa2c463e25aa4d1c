"""Settings read from the environment, and safe resolution of user-supplied corpus paths."""

from __future__ import annotations

import glob
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from webscale_rl.errors import FatalError

HOST_ID_ENV = "WEBSCALE_RL_HOST_ID"


def host_id() -> str:
    """Who this worker is on the shared storage (owner of leases and journals): the hostname,
    or WEBSCALE_RL_HOST_ID where several workers share one (containers, one test machine).
    Also usable as Airflow's `[core] hostname_callable` (webscale_rl.config.host_id), so the
    metadata DB names the same host."""
    return os.environ.get(HOST_ID_ENV, "").strip() or socket.gethostname()


CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
MAX_CORPUS_CHARS = 4096  # PATH_MAX on Linux: a longer param cannot name a file


def run_folder_name(run_id: str) -> str:
    """A folder name for a run: Airflow run ids hold ':' and '+'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


class ConfigError(FatalError, ValueError):
    """A setting or parameter is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_path: Path
    allowed_roots: tuple[Path, ...]
    benchmarks_dir: Path | None = None

    @property
    def data_docs_dir(self) -> Path:
        return self.data_dir / "data_docs"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"


def load_settings() -> Settings:
    """Read WEBSCALE_RL_DATA_DIR (default ./data), WEBSCALE_RL_DB, WEBSCALE_RL_ALLOWED_ROOTS and
    WEBSCALE_RL_BENCHMARKS_DIR (evaluation sets to decontaminate against; default
    $WEBSCALE_RL_DATA_DIR/benchmarks, read when it exists).

    Extra allowed roots (os.pathsep-separated) let a deployment read corpora from a
    mounted volume outside the data dir; nothing else outside them is ever read.
    """
    data_dir = Path(os.environ.get("WEBSCALE_RL_DATA_DIR", "./data")).expanduser().resolve()
    db_env = os.environ.get("WEBSCALE_RL_DB")
    db_path = Path(db_env).expanduser().resolve() if db_env else data_dir / "warehouse.duckdb"
    extra = [
        Path(p).expanduser().resolve()
        for p in os.environ.get("WEBSCALE_RL_ALLOWED_ROOTS", "").split(os.pathsep)
        if p.strip()
    ]
    bench_env = os.environ.get("WEBSCALE_RL_BENCHMARKS_DIR", "").strip()
    benchmarks_dir = (
        Path(bench_env).expanduser().resolve() if bench_env else data_dir / "benchmarks"
    )
    return Settings(
        data_dir=data_dir,
        db_path=db_path,
        allowed_roots=(data_dir, *extra),
        benchmarks_dir=benchmarks_dir,
    )


def _is_corpus_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(CORPUS_SUFFIXES)


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def resolve_corpus(corpus: str, settings: Settings, allow_empty: bool = False) -> list[Path]:
    """Turn the `corpus` param (file, directory or glob) into a sorted list of files.

    Relative paths resolve under the data dir. Every match is resolved through symlinks
    and must lie inside an allowed root; anything else is refused, never read. No match is
    an error unless `allow_empty` (a landing directory waiting for files).
    """
    corpus = (corpus or "").strip()
    if not corpus:
        raise ConfigError(
            "param 'corpus' is empty: give a file, directory or glob under the data dir"
        )
    if "\x00" in corpus:
        raise ConfigError("param 'corpus' contains a NUL byte")
    if len(corpus) > MAX_CORPUS_CHARS:
        raise ConfigError(
            f"param 'corpus' is {len(corpus)} characters long; at most {MAX_CORPUS_CHARS}"
        )
    try:
        return _resolve(corpus, settings, allow_empty)
    except OSError as exc:  # e.g. a name too long for the file system: a bad param, not a retry
        raise ConfigError(f"corpus '{corpus}' cannot be resolved: {exc.strerror or exc}") from None


def _utf8_name(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes come back from os as lone surrogates
        return False
    return True


def _resolve(corpus: str, settings: Settings, allow_empty: bool) -> list[Path]:
    raw = Path(corpus).expanduser()
    pattern = raw if raw.is_absolute() else settings.data_dir / raw
    roots = settings.allowed_roots
    roots_text = ", ".join(str(r) for r in roots)

    def outside(resolved: Path) -> ConfigError:
        return ConfigError(
            f"corpus '{corpus}' resolves to {resolved}, outside the allowed roots ({roots_text}); "
            "put the files under WEBSCALE_RL_DATA_DIR or add their folder to WEBSCALE_RL_ALLOWED_ROOTS"
        )

    if glob.has_magic(str(pattern)):
        # Check the folder the glob starts from before listing anything, so a pattern cannot
        # list (or probe for) names outside the allowed roots; '..' after a wildcard could
        # climb out of it again.
        parts = raw.parts
        first = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
        if ".." in parts[first:]:
            raise ConfigError(
                f"corpus '{corpus}' has '..' after a wildcard: name the folder without it"
            )
        base = Path(*parts[:first]) if first else Path()
        base = (base if raw.is_absolute() else settings.data_dir / base).resolve()
        if not _inside(base, roots):
            raise outside(base)
        candidates = [Path(p) for p in sorted(glob.glob(str(pattern), recursive=True))]
    else:
        resolved = pattern.resolve()
        if not _inside(resolved, roots):
            raise outside(resolved)
        if not resolved.exists():
            raise ConfigError(
                f"corpus '{corpus}' not found (looked for {resolved}); relative paths resolve under "
                f"the data dir {settings.data_dir}"
            )
        candidates = sorted(p for p in resolved.rglob("*")) if resolved.is_dir() else [resolved]

    files: list[Path] = []
    for candidate in candidates:
        real = candidate.resolve()
        if not _inside(real, roots):
            raise ConfigError(
                f"corpus '{corpus}' matches {candidate}, which resolves to {real}, outside the "
                f"allowed roots ({roots_text})"
            )
        if _is_corpus_file(real):
            if not _utf8_name(real):  # the warehouse keys rows by file name, in UTF-8
                raise ConfigError(
                    f"corpus '{corpus}' matches a file whose name is not valid UTF-8 "
                    f"({ascii(str(real))}): rename it (e.g. `convmv -f latin1 -t utf-8`)"
                )
            files.append(real)
    if not files and not allow_empty:
        raise ConfigError(
            f"corpus '{corpus}' matched no corpus files (expected {', '.join(CORPUS_SUFFIXES)}) "
            f"under {pattern}"
        )
    return sorted(set(files))
