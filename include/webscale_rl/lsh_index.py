"""Keep-first near-duplicate search over MinHash signatures, with the LSH index in DuckDB.

near_dedup (documents) and decontaminate (questions) compare each new item, in arrival
order, with every item kept before it, in this run or an earlier one. An in-memory LSH
index of everything kept grows with the corpus (datasketch's took ~11 KB per document), so
the index lives in an in-memory DuckDB database, spilling to a temporary folder past its
memory. The cap (WEBSCALE_RL_DUCKDB_MEMORY_LIMIT) is per task: the index gets MEMORY_SHARE
of it, and the stage's warehouse connection, open beside it, the rest.

New items go in batches: a batch is matched against the index in one DuckDB join and
against its own earlier kept items in a batch-sized datasketch LSH; then its kept items
join the index. Memory is bounded by the batch, not the corpus; the join's work grows with
index size x batches, fine to millions of items.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator

import duckdb
import numpy as np
import pyarrow as pa
from datasketch import LeanMinHash, MinHashLSH

from webscale_rl import warehouse
from webscale_rl.stages import common

# (key, uint32 MinHash signature, payload the similarity function confirms candidates on)
Item = tuple[str, np.ndarray, bytes]
MEMORY_SHARE = 0.5


def _lean(hashvalues: np.ndarray) -> LeanMinHash:
    # LSH buckets read only the hash values; seed and scheme are never compared here.
    return LeanMinHash(seed=1, hashvalues=hashvalues, scheme="affine32")


class KeptIndex:
    """The items kept so far, banded for LSH. Band layout (b bands of r rows) is
    datasketch's for the threshold and weights; a band's bucket is DuckDB's 64-bit hash of
    the band's bytes, so two signatures share a bucket when the band's r values are equal
    (or, once in ~2^64, by collision)."""

    def __init__(self, threshold: float, num_perm: int, weights: tuple[float, float]):
        layout = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
        self.bands, self.band_bytes = layout.b, layout.r * 4  # uint32 values
        self._spill = tempfile.TemporaryDirectory(prefix="webscale-rl-lsh-")
        self.con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": warehouse.memory_limit(MEMORY_SHARE),
                "temp_directory": self._spill.name,
            },
        )
        # Bands point at the kept row's position: 18 bytes a band instead of the key.
        self.con.execute("CREATE TABLE kept (pos BIGINT, key VARCHAR, payload BLOB)")
        self.con.execute("CREATE TABLE bands (band USMALLINT, bucket UBIGINT, pos BIGINT)")
        self.size = 0

    def _banded(self, source: str, ref: str) -> str:
        width = self.band_bytes
        return f"""SELECT b.band::USMALLINT AS band,
                          hash(hv[b.band * {width} + 1 : (b.band + 1) * {width}]) AS bucket,
                          {ref}
                   FROM {source}, range({self.bands}) b(band)"""

    @staticmethod
    def _frame(items: list[Item], first_pos: int = 0) -> pa.Table:
        return pa.table(
            {
                "pos": pa.array(range(first_pos, first_pos + len(items)), pa.int64()),
                "key": pa.array([k for k, _, _ in items], pa.string()),
                "hv": pa.array([hv.astype(np.uint32).tobytes() for _, hv, _ in items], pa.binary()),
                "payload": pa.array([p for _, _, p in items], pa.binary()),
            }
        )

    def add(self, items: list[Item]) -> None:
        if not items:
            return
        self.con.register("_add", self._frame(items, self.size))
        self.con.execute("INSERT INTO kept SELECT pos, key, payload FROM _add")
        self.con.execute(f"INSERT INTO bands {self._banded('_add', 'pos')}")
        self.con.unregister("_add")
        self.size += len(items)

    def candidates(self, items: list[Item]) -> dict[str, list[tuple[str, bytes]]]:
        """Per item: the kept items sharing at least one band bucket, with their payloads."""
        if not items or not self.size:
            return {}
        self.con.register("_query", self._frame(items))
        rows = self.con.execute(
            f"""WITH q AS ({self._banded("_query", "key")}),
                     hits AS (SELECT DISTINCT q.key AS key, i.pos AS pos
                              FROM q JOIN bands i ON i.band = q.band AND i.bucket = q.bucket)
                SELECT h.key, k.key, k.payload FROM hits h JOIN kept k ON k.pos = h.pos"""
        ).fetchall()
        self.con.unregister("_query")
        found: dict[str, list[tuple[str, bytes]]] = {}
        for key, candidate, payload in rows:
            found.setdefault(key, []).append((candidate, payload))
        return found

    def close(self) -> None:
        self.con.close()
        self._spill.cleanup()


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def keep_first(
    prior: Iterable[Item],
    new: Iterable[Item],
    *,
    threshold: float,
    num_perm: int,
    weights: tuple[float, float],
    similarity: Callable[[bytes, bytes], float],
    batch_rows: int,
) -> dict[str, tuple[str, float]]:
    """For each new item that near-duplicates one kept before it: (kept key, similarity).

    Prior items are all in the index; new ones are taken in order and indexed only when
    kept, so a chain of copies links every copy to the first one. LSH candidates are
    confirmed with `similarity` on the payloads (LSH alone lets some far pairs through);
    the most similar at or above the threshold wins, ties to the smallest key.
    """
    index = KeptIndex(threshold, num_perm, weights)
    try:
        for chunk in _chunks(prior, batch_rows):
            index.add(chunk)
        duplicates: dict[str, tuple[str, float]] = {}
        for batch in _chunks(new, batch_rows):
            earlier = index.candidates(batch)
            local = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
            local_payloads: dict[str, bytes] = {}
            kept: list[Item] = []
            for key, hv, payload in batch:
                scores = {c: similarity(payload, p) for c, p in earlier.get(key, ())}
                for c in local.query(_lean(hv)):
                    scores[c] = similarity(payload, local_payloads[c])
                best = common.best_candidate(scores, scores.__getitem__, threshold)
                if best:
                    duplicates[key] = best
                else:
                    local.insert(key, _lean(hv), check_duplication=False)
                    local_payloads[key] = payload
                    kept.append((key, hv, payload))
            index.add(kept)
        return duplicates
    finally:
        index.close()
