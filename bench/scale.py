"""The cost curve: the whole `webscale_rl` DAG on 1k, 10k (and 100k) documents, instant server.

Each size runs the real DAG with the standard CLI (`airflow dags test webscale_rl -c ...`)
in a fresh Airflow home and data dir, on a corpus of real text (bench/corpus.py), against
the project's test server in its own process with no added latency: the model costs
nothing, so what is measured is everything else (Airflow, DuckDB, GX, the LLM client,
the stages' own code). While the run goes, the process's RSS is sampled every 50 ms; after
it, each task instance's start and end come from Airflow's metadata DB, so every task gets
its wall time and the peak RSS seen while it ran.

Printed per size: wall time, peak RSS, documents and LLM calls per second, and the time and
peak RSS of each task (mapped shards summed); then the ratios between sizes against the
targets: 10x the documents in <= 11x the time, and peak RSS flat in corpus size (<= 1.5x
for 10x the documents).

    .venv/bin/python bench/scale.py [--docs 1000 10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "bench"))

import corpus  # noqa: E402
import results  # noqa: E402

from webscale_rl.scripted_llm import spawn  # noqa: E402

TIME_RATIO_TARGET = 1.1  # 10x the documents in at most 11x the time
RSS_RATIO_TARGET = 1.5  # "flat": 10x the documents in at most 1.5x the peak memory


def _rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children, in MB (0 once it is gone)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.time(), _rss_mb(self.pid)))
            time.sleep(self.every_s)

    def peak(self, start: float = 0.0, end: float = float("inf")) -> float:
        window = [mb for t, mb in self.samples if start <= t <= end]
        return max(window, default=0.0)


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else 0.0


def task_times(airflow_db: Path, since: float) -> list[dict]:
    """Each task instance's task_id, start and end (epoch seconds), from the metadata DB,
    of the runs started after `since` (the copied DB may hold older runs)."""
    con = sqlite3.connect(airflow_db)
    try:
        rows = con.execute(
            "SELECT task_id, map_index, start_date, end_date, state FROM task_instance "
            "WHERE dag_id = 'webscale_rl' ORDER BY start_date"
        ).fetchall()
    finally:
        con.close()
    times = [
        {"task": t, "map_index": m, "start": _ts(s), "end": _ts(e), "state": st}
        for t, m, s, e, st in rows
    ]
    return [t for t in times if t["start"] >= since]


def warehouse_counts(db: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "documents": one("SELECT count(*) FROM documents"),
            "llm_calls": one("SELECT count(*) FROM llm_calls"),
            "accepted_pairs": one("SELECT count(*) FROM decontaminate WHERE status = 'kept'"),
            "outcomes": dict(
                con.execute("SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL").fetchall()
            ),
        }
    finally:
        con.close()


def _env(home: Path, data: Path, base_url: str) -> dict:
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        WEBSCALE_RL_DATA_DIR=str(data),
        AIRFLOW_CONN_LLM_DEFAULT=json.dumps(
            {
                "conn_type": "webscale_rl_llm",
                "host": base_url,
                "password": "EMPTY",
                "extra": {"model": "fake-model", "max_concurrency": 64},
            }
        ),
    )
    env.pop("WEBSCALE_RL_DB", None)
    return env


def server_stats(base_url: str) -> dict:
    import httpx

    return httpx.get(base_url.removesuffix("/v1") + "/admin/stats", timeout=10).json()


def run_dag(home: Path, data: Path, base_url: str, conf: dict, log_path: Path) -> dict:
    """One `airflow dags test webscale_rl` run; wall time, RSS and per-task figures."""
    started = time.time()
    calls_before = server_stats(base_url)["completions_ok"]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "airflow"), "dags", "test", "webscale_rl", "-c", json.dumps(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(home, data, base_url),
            cwd=ROOT,
        )
        sampler = RssSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.done.set()
        sampler.join()
    wall = time.time() - started
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"the run failed (exit {rc}); log {log_path}:\n{tail}")
    tasks: dict[str, dict] = {}
    for ti in task_times(home / "airflow.db", started):
        entry = tasks.setdefault(ti["task"], {"seconds": 0.0, "instances": 0, "peak_rss_mb": 0.0})
        entry["seconds"] += max(0.0, ti["end"] - ti["start"])
        entry["instances"] += 1
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"], sampler.peak(ti["start"], ti["end"]))
    return {
        "wall_s": wall,
        "peak_rss_mb": sampler.peak(),
        "in_tasks_s": sum(t["seconds"] for t in tasks.values()),
        "tasks": tasks,
        "calls_sent": server_stats(base_url)["completions_ok"] - calls_before,
    }


def run_size(n_docs: int, workdir: Path, base_url: str, conf_extra: dict) -> dict:
    home, data = workdir / f"airflow-{n_docs}", workdir / f"data-{n_docs}"
    home.mkdir()
    shutil.copy(ROOT / ".airflow" / "airflow.db", home / "airflow.db")
    corpus_bytes = corpus.write_jsonl(data / "scale" / "corpus.jsonl", n_docs)
    conf = {"corpus": "scale", "run_label": f"bench scale {n_docs}", **conf_extra}
    figures = run_dag(home, data, base_url, conf, workdir / f"airflow-{n_docs}.log")
    return {
        "docs": n_docs,
        "corpus_mb": corpus_bytes / 1e6,
        "home": str(home),
        "data": str(data),
        **figures,
        **warehouse_counts(data / "warehouse.duckdb"),
    }


def ledger_status(db: Path) -> dict[str, str]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT request_hash, status FROM llm_calls").fetchall())
    finally:
        con.close()


def zero_waste(first: dict, workdir: Path, base_url: str, conf_extra: dict, k: int) -> list:
    """P2 on the first size's warehouse: re-run the same corpus, then add `k` documents and
    run again. Counted: the calls the server answered in each run, and, from the ledger
    (one row per distinct request), the requests the later runs sent that an earlier run
    had already sent, split by how they had ended (success: paid twice)."""
    home, data, n = Path(first["home"]), Path(first["data"]), first["docs"]
    db = data / "warehouse.duckdb"
    conf = {"corpus": "scale", **conf_extra}
    before = ledger_status(db)
    rerun = run_dag(home, data, base_url, {**conf, "run_label": "re-run"}, workdir / "rerun.log")
    corpus.write_jsonl(data / "scale" / "corpus.jsonl", n + k)  # the same n, then k new
    between = ledger_status(db)
    more = run_dag(
        home, data, base_url, {**conf, "run_label": f"+{k}"}, workdir / "incremental.log"
    )
    after = ledger_status(db)
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        sent_again = con.execute(
            "SELECT request_hash FROM llm_calls WHERE run_id IN "
            "(SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 2)"
        ).fetchall()
    finally:
        con.close()
    earlier = {**before, **{h: s for h, s in between.items() if h not in before}}
    again = [h for (h,) in sent_again if h in earlier]
    repaid = sum(earlier[h] == "success" for h in again)
    new_requests = len(set(after) - set(between))
    per_doc = first["calls_sent"] / n
    print(
        f"\nP2 zero waste on the {n:,}-document warehouse: full run {first['calls_sent']:,} calls "
        f"({per_doc:.2f} per document); re-run {rerun['calls_sent']} calls in "
        f"{rerun['wall_s']:.1f} s; +{k} documents: {more['calls_sent']} calls "
        f"({more['calls_sent'] / k:.2f} per new document, {new_requests} new requests in the "
        f"ledger) in {more['wall_s']:.1f} s; requests sent again by the later runs: {len(again)} "
        f"({repaid} of them had succeeded)"
    )
    return [
        results.Figure(
            "P2 zero waste",
            "calls sent by a re-run",
            rerun["calls_sent"],
            "= 0",
            rerun["calls_sent"] == 0,
        ),
        results.Figure(
            "P2 zero waste",
            f"calls per new document (+{k}) / calls per document (full run)",
            (more["calls_sent"] / k) / per_doc,
            "about 1 (the same mix of documents)",
            None,
        ),
        results.Figure(
            "P2 zero waste",
            "successful requests sent again by the re-run and the incremental run",
            repaid,
            "= 0",
            repaid == 0,
        ),
    ]


def print_size(r: dict) -> None:
    print(
        f"\n{r['docs']:,} documents ({r['corpus_mb']:.1f} MB): wall {r['wall_s']:.1f} s, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB, {r['docs'] / r['wall_s']:.1f} docs/s, "
        f"{r['llm_calls']:,} LLM calls ({r['llm_calls'] / r['wall_s']:.0f}/s), "
        f"{r['accepted_pairs']:,} accepted pairs; outside tasks (Airflow) "
        f"{r['wall_s'] - r['in_tasks_s']:.1f} s"
    )
    print(f"  {'task':28} {'instances':>9} {'seconds':>9} {'share':>6} {'peak RSS MB':>12}")
    for name, t in sorted(r["tasks"].items(), key=lambda kv: -kv[1]["seconds"]):
        print(
            f"  {name:28} {t['instances']:9d} {t['seconds']:9.1f} {t['seconds'] / r['wall_s']:6.1%} "
            f"{t['peak_rss_mb']:12.0f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--conf", default="{}", help="extra run params (JSON)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument(
        "--waste-k",
        type=int,
        default=100,
        help="P2: documents added for the incremental run (0: skip P2)",
    )
    args = parser.parse_args()
    if not (ROOT / ".airflow" / ".migrated").exists():
        sys.exit("no migrated Airflow metadata DB: run `make airflow-db` first (make bench does)")
    workdir = Path(tempfile.mkdtemp(prefix="webscale-rl-scale-"))
    server, url = spawn()
    runs = []
    try:
        print(f"pool of {len(corpus.paragraph_pool())} real-text paragraphs; work dir {workdir}")
        for n in sorted(args.docs):
            runs.append(run_size(n, workdir, url, json.loads(args.conf)))
            print_size(runs[-1])
        waste = (
            zero_waste(runs[0], workdir, url, json.loads(args.conf), args.waste_k)
            if args.waste_k
            else []
        )
    finally:
        server.terminate()
        server.wait(10)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    figures = list(waste)
    from webscale_rl.stages import registry

    llm_stages = {s.name for s in registry.stages() if s.llm}
    for r in runs:
        in_llm = sum(t["seconds"] for name, t in r["tasks"].items() if name in llm_stages)
        figures.append(
            results.Figure(
                "P6 orchestration",
                f"share of wall time outside the LLM stages, {r['docs']:,} docs, instant server",
                (r["wall_s"] - in_llm) / r["wall_s"],
                "(reported)",
                None,
            )
        )
    for small, big in zip(runs, runs[1:], strict=False):
        growth = big["docs"] / small["docs"]
        time_ratio = (big["wall_s"] / small["wall_s"]) / growth
        rss_ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
        figures += [
            results.Figure(
                "P5 cost curve",
                f"time {big['docs']:,} / {small['docs']:,} docs, per document",
                time_ratio,
                f"<= {TIME_RATIO_TARGET}",
                time_ratio <= TIME_RATIO_TARGET,
            ),
            results.Figure(
                "P5 cost curve",
                f"peak RSS {big['docs']:,} / {small['docs']:,} docs",
                rss_ratio,
                f"<= {RSS_RATIO_TARGET}",
                rss_ratio <= RSS_RATIO_TARGET,
            ),
        ]
    results.emit(figures, details={"scale_runs": runs})
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
