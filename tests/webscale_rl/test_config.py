from __future__ import annotations

import os
from pathlib import Path

import pytest

from webscale_rl.config import ConfigError, load_settings, resolve_corpus

pytestmark = pytest.mark.unit


def _touch(path: Path, text: str = '{"text": "x"}\n') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_follow_the_environment(data_dir, monkeypatch):
    s = load_settings()
    assert s.data_dir == data_dir.resolve()
    assert s.db_path == data_dir.resolve() / "warehouse.duckdb"
    monkeypatch.setenv("WEBSCALE_RL_DB", str(data_dir / "elsewhere" / "w.duckdb"))
    assert load_settings().db_path == (data_dir / "elsewhere" / "w.duckdb").resolve()


def test_relative_file_directory_and_glob_resolve_under_the_data_dir(data_dir):
    a = _touch(data_dir / "corpus" / "a.jsonl")
    b = _touch(data_dir / "corpus" / "sub" / "b.parquet")
    _touch(data_dir / "corpus" / "notes.txt")
    s = load_settings()
    assert resolve_corpus("corpus/a.jsonl", s) == [a.resolve()]
    assert resolve_corpus("corpus", s) == sorted([a.resolve(), b.resolve()])
    assert resolve_corpus("corpus/**/*.parquet", s) == [b.resolve()]
    assert resolve_corpus(str(a), s) == [a.resolve()]


@pytest.mark.parametrize(
    "corpus", ["../outside.jsonl", "/etc/passwd", "corpus/../../outside.jsonl"]
)
def test_paths_outside_the_allowed_roots_are_refused(data_dir, corpus):
    _touch(data_dir.parent / "outside.jsonl")
    _touch(data_dir / "corpus" / "a.jsonl")
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        resolve_corpus(corpus, load_settings())


def test_glob_and_symlink_escapes_are_refused(data_dir):
    outside = _touch(data_dir.parent / "secret.jsonl")
    os.symlink(outside, data_dir / "link.jsonl")
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        resolve_corpus("link.jsonl", load_settings())
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        resolve_corpus("../*.jsonl", load_settings())


def test_extra_allowed_root(data_dir, monkeypatch):
    extra = data_dir.parent / "mounted"
    f = _touch(extra / "x.jsonl")
    monkeypatch.setenv("WEBSCALE_RL_ALLOWED_ROOTS", str(extra))
    assert resolve_corpus(str(f), load_settings()) == [f.resolve()]


def test_missing_and_empty_corpus_messages(data_dir):
    s = load_settings()
    with pytest.raises(ConfigError, match="not found"):
        resolve_corpus("nope.jsonl", s)
    with pytest.raises(ConfigError, match="is empty"):
        resolve_corpus("  ", s)
    _touch(data_dir / "docs" / "README.txt", "no corpus here")
    with pytest.raises(ConfigError, match="matched no corpus files"):
        resolve_corpus("docs", s)


def test_a_corpus_file_whose_name_is_not_utf8_is_refused_naming_it(data_dir):
    _touch(data_dir / "corpus" / "good.jsonl")
    bad = data_dir / "corpus" / os.fsdecode(b"caf\xe9.jsonl")  # saved by a Latin-1 system
    _touch(bad)
    with pytest.raises(ConfigError) as refused:
        resolve_corpus("corpus", load_settings())
    assert str(refused.value) == (
        f"corpus 'corpus' matches a file whose name is not valid UTF-8 "
        f"({ascii(str(bad.resolve()))}): rename it (e.g. `convmv -f latin1 -t utf-8`)"
    )
