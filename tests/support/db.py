"""Reading the warehouse in tests: a short read-only connection per query."""

from __future__ import annotations

from pathlib import Path

import duckdb


def query(path: Path, sql: str, params=None) -> list[tuple]:
    """All rows of `sql`; `path` is a warehouse file or a data dir holding warehouse.duckdb."""
    db = path / "warehouse.duckdb" if path.is_dir() else path
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
