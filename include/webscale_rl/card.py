"""The dataset card: every run explains itself next to its export.

`collect()` reads one run's numbers from the warehouse (the funnel, pass rate and
rejection reasons per stage with examples, distributions, the diversity of the accepted
pairs and the answer-length policy, the token ledger, the source
tokens behind the accepted pairs, params, models and the human audit), and the renderers
turn them into `card.md` and a self-contained `report.html` (plots as embedded PNGs, no
network access needed to view it).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd

from webscale_rl import answer_policy, audit, diversity, warehouse
from webscale_rl.config import run_folder_name
from webscale_rl.llm import ledger as llm_ledger
from webscale_rl.llm import server_metrics
from webscale_rl.params import default as param_default
from webscale_rl.stages import registry

EXAMPLES_PER_REASON = 2


def _stage_rows(con, run_id: str, stage: str) -> tuple[int, dict[str, int]]:
    """(inputs, counts by status) of a stage for the run's work set."""
    rows = con.execute(
        "SELECT status, sum(n)::BIGINT FROM stage_counts WHERE run_id = ? AND stage = ? GROUP BY ALL",
        [run_id, stage],
    ).fetchall()
    by_status = {status: n for status, n in rows}
    return sum(by_status.values()), by_status


def funnel(con, run_id: str) -> list[dict]:
    """Docs in, then what each stage kept (its registry label); then the documents behind
    the accepted pairs."""
    steps = [
        {
            "step": "documents in (new in this run)",
            "unit": "docs",
            "count": warehouse.one(con, "SELECT count(*) FROM run_docs WHERE run_id = ?", [run_id])[
                0
            ],
        }
    ]
    for stage in registry.stages():
        _, by_status = _stage_rows(con, run_id, stage.name)
        steps.append(
            {
                "step": stage.label,
                "unit": _unit(stage),
                "stage": stage.name,
                "count": by_status.get("kept", 0),
            }
        )
    steps.append(
        {
            "step": "documents with an accepted pair",
            "unit": "docs",
            "count": warehouse.one(
                con, "SELECT count(DISTINCT doc_id) FROM accepted_pairs WHERE run_id = ?", [run_id]
            )[0],
        }
    )
    return steps


def _unit(stage) -> str:
    return "docs" if stage.unit == "doc" else "pairs"


def _reasons_sql(stage) -> str:
    """Per reason of a stage's non-kept rows: the count and the first examples by id.

    The examples are picked on ids alone and only they are joined to their text, so the
    query's memory does not grow with the number of rejected rows."""
    key = "doc_id" if stage.unit == "doc" else "qa_id"
    if stage.unit == "doc":
        example_join = "JOIN documents d ON d.doc_id = p.id"
        example = "left(d.text, 160)"
    else:
        example_join = f"JOIN {registry.first_pair_stage().name} g ON g.qa_id = p.id"
        example = (
            "'Q: ' || left(coalesce(g.question, ''), 140) || ' | A: ' || coalesce(g.answer, '')"
        )
    return f"""
        WITH x AS (SELECT s.reason, s.{key} AS id FROM run_docs r JOIN {stage.name} s USING (doc_id)
                   WHERE r.run_id = ? AND s.status <> 'kept'),
        counts AS (SELECT reason, count(*) AS n FROM x GROUP BY reason),
        picked AS (SELECT reason, id FROM x
                   QUALIFY row_number() OVER (PARTITION BY reason ORDER BY id) <= {EXAMPLES_PER_REASON}),
        examples AS (SELECT p.reason, list({{'id': p.id, 'example': {example}}} ORDER BY p.id) AS examples
                     FROM picked p {example_join} GROUP BY p.reason)
        SELECT c.reason, c.n, coalesce(e.examples, []) FROM counts c
        LEFT JOIN examples e ON e.reason IS NOT DISTINCT FROM c.reason
        ORDER BY c.n DESC, c.reason"""


def stage_table(con, run_id: str) -> list[dict]:
    """Per stage: inputs, kept, rejected, failed, pass rate, and reasons with two examples each."""
    out = []
    for stage in registry.stages():
        inputs, by_status = _stage_rows(con, run_id, stage.name)
        reasons = con.execute(_reasons_sql(stage), [run_id]).fetchall()
        out.append(
            {
                "stage": stage.name,
                "unit": _unit(stage),
                "inputs": inputs,
                "kept": by_status.get("kept", 0),
                "rejected": by_status.get("rejected", 0),
                "failed": by_status.get("failed", 0),
                "pass_rate": round(by_status.get("kept", 0) / inputs, 4) if inputs else None,
                "reasons": [
                    {"reason": r, "count": n, "examples": list(ex)} for r, n, ex in reasons
                ],
            }
        )
    return out


ACCEPTED_SQL = "SELECT qa_id, doc_id, persona, answer, domain FROM accepted_pairs WHERE run_id = ?"


def distributions(con, run_id: str) -> dict:
    domains = con.execute(
        f"SELECT domain, count(*) FROM ({ACCEPTED_SQL}) GROUP BY ALL ORDER BY 2 DESC, 1", [run_id]
    ).fetchall()
    personas = con.execute(
        f"SELECT persona, count(*) FROM ({ACCEPTED_SQL}) GROUP BY ALL ORDER BY 2 DESC, 1 LIMIT 15",
        [run_id],
    ).fetchall()
    answers = [
        a
        for (a,) in con.execute(
            f"SELECT answer FROM ({ACCEPTED_SQL}) ORDER BY qa_id", [run_id]
        ).fetchall()
    ]
    lengths = [len(a.split()) for a in answers]
    length_hist: dict[int, int] = {}
    for n in lengths:
        length_hist[n] = length_hist.get(n, 0) + 1
    return {
        "domains": dict(domains),
        "personas": dict(personas),
        "answer_words": dict(sorted(length_hist.items())),
        "answer_chars_max": max((len(a) for a in answers), default=0),
    }


def diversity_of_run(con, run_id: str) -> dict:
    """The diversity figures of the run's accepted pairs (webscale_rl.diversity), with the
    share of questions decontaminate collapsed as near-duplicates."""
    pairs = con.execute(
        "SELECT question, answer, doc_id, domain FROM accepted_pairs WHERE run_id = ? "
        "ORDER BY qa_id",
        [run_id],
    ).fetchall()
    collapsed, considered = con.execute(
        """SELECT count(*) FILTER (WHERE c.reason = 'duplicate_question'), count(*)
           FROM run_docs r JOIN decontaminate c USING (doc_id) WHERE r.run_id = ?""",
        [run_id],
    ).fetchone()
    columns = list(zip(*pairs, strict=True)) if pairs else [[], [], [], []]
    return diversity.summary(*(list(c) for c in columns), collapsed, considered)


def diversity_of_generated(con, run_id: str) -> dict:
    """The same figures over every pair generated for the run's documents, before verify
    (what the model produced; the accepted pairs are what survived), with the share of them
    that near-duplicate an earlier one by decontaminate's own test."""
    from webscale_rl.stages.decontaminate import duplicate_questions

    pairs = con.execute(
        f"""SELECT g.qa_id, g.question, g.answer, g.doc_id, c.domain
            FROM run_docs r JOIN {registry.first_pair_stage().name} g USING (doc_id)
            LEFT JOIN classify c USING (doc_id)
            WHERE r.run_id = ? AND g.status = 'kept' ORDER BY g.qa_id""",
        [run_id],
    ).fetchall()
    near = duplicate_questions([], [(qa_id, q) for qa_id, q, *_ in pairs]) if pairs else {}
    return diversity.summary(
        [p[1] for p in pairs],
        [p[2] for p in pairs],
        [p[3] for p in pairs],
        [p[4] for p in pairs],
        len(near),
        len(pairs),
    )


def answer_policy_of(params: dict) -> dict:
    policy = answer_policy.AnswerPolicy(
        int(params.get("max_answer_words") or param_default("max_answer_words"))
    )
    return {
        "max_words": policy.max_words,
        "max_chars": policy.max_chars,
        "text": policy.describe(),
    }


def learnability(con, run_id: str) -> dict:
    """The policy's pass rates for the run's pairs (the learnability stage): a histogram of
    passes out of k over the measured pairs, with what the pass band kept and dropped."""
    rows = con.execute(
        """SELECT s.samples, s.passes, s.status, s.reason, count(*) FROM run_docs r
           JOIN learnability s USING (doc_id) WHERE r.run_id = ? GROUP BY ALL""",
        [run_id],
    ).fetchall()
    models = con.execute(
        """SELECT DISTINCT s.model FROM run_docs r JOIN learnability s USING (doc_id)
           WHERE r.run_id = ? AND s.model IS NOT NULL ORDER BY 1""",
        [run_id],
    ).fetchall()
    measured = [(k, passes, status, n) for k, passes, status, _, n in rows if passes is not None]
    samples = max((k for k, *_ in measured), default=0)
    histogram = {i: 0 for i in range(samples + 1)} if samples else {}
    for _, passes, _, n in measured:
        histogram[passes] = histogram.get(passes, 0) + n
    by_reason: dict[str, int] = {}
    for _, _, status, reason, n in rows:
        if status != "kept":
            by_reason[reason] = by_reason.get(reason, 0) + n
    return {
        "samples": samples,
        "models": [m for (m,) in models],
        "histogram": histogram,  # passes (of `samples`) -> pairs
        "measured": sum(n for *_, n in measured),
        "kept_never_solved": sum(
            n for _, passes, status, n in measured if passes == 0 and status == "kept"
        ),
        "not_measured": sum(n for k, passes, status, _, n in rows if status == "kept" and not k),
        "dropped": by_reason,
    }


def describe_learnability(learn: dict) -> list[str]:
    """The card's learnability section (markdown lines)."""
    lines = ["## Learnability (the policy's pass rate)", ""]
    if not learn["measured"]:
        note = f" ({learn['not_measured']} pairs kept unmeasured)" if learn["not_measured"] else ""
        return lines + [f"Not measured in this run{note}.", ""]
    k = learn["samples"]
    lines += [
        f"{learn['measured']} pairs answered {k} times each by "
        f"{', '.join(learn['models']) or 'the policy'}; passes out of {k} (pairs):",
        "",
        "| passes | pairs |",
        "|---:|---:|",
    ]
    lines += [f"| {i}/{k} | {n} |" for i, n in learn["histogram"].items()]
    dropped = ", ".join(f"{r} {n}" for r, n in learn["dropped"].items()) or "none"
    lines += [
        "",
        f"Dropped: {dropped}. Kept at 0/{k}: {learn['kept_never_solved']} — too hard for this "
        "policy, or wrong: no sample matched the reference answer, so review them before "
        "trusting them.",
        "",
    ]
    return lines


def ledger(con, run_id: str, accepted_pairs: int) -> dict:
    stages = {
        stage: {
            "calls": s["calls"],
            "failed": s["failed"],
            "retries": s["attempts"] - s["calls"],
            "prompt_tokens": s["prompt_tokens"],
            "completion_tokens": s["completion_tokens"],
            "models": s["models"],
        }
        for stage, s in llm_ledger.per_stage(con, run_id).items()
    }
    total = sum(s["prompt_tokens"] + s["completion_tokens"] for s in stages.values())
    per_pair = total / accepted_pairs if accepted_pairs else None
    return {
        "stages": stages,
        "total_tokens": total,
        "tokens_per_accepted_pair": round(per_pair, 1) if per_pair else None,
        "paper_scale": paper_scale(per_pair),
    }


# The method's reference dataset, and the serving rate the projection assumes: an assumed
# round figure (prompt + completion tokens per second per GPU) for an 8B model on one
# H100-class GPU under vLLM at high concurrency with prefix caching; not measured here.
PAPER_SCALE_PAIRS = 1_200_000
ASSUMED_TOKENS_PER_GPU_S = 10_000


def paper_scale(tokens_per_pair: float | None) -> dict | None:
    """This run's tokens per accepted pair, projected to the reference dataset's size."""
    if not tokens_per_pair:
        return None
    tokens = tokens_per_pair * PAPER_SCALE_PAIRS
    return {
        "pairs": PAPER_SCALE_PAIRS,
        "tokens": round(tokens),
        "assumed_tokens_per_gpu_s": ASSUMED_TOKENS_PER_GPU_S,
        "gpu_hours": round(tokens / ASSUMED_TOKENS_PER_GPU_S / 3600, 1),
    }


def collect(con, run_id: str) -> dict:
    run = warehouse.one(
        con,
        "SELECT run_label, corpus, params, started_at, ended_at, status FROM runs WHERE run_id = ?",
        [run_id],
    )
    if run is None:
        raise ValueError(f"run {run_id!r} is not in the warehouse")
    steps = funnel(con, run_id)
    accepted, source_docs, source_tokens = warehouse.one(
        con,
        """SELECT (SELECT count(*) FROM accepted_pairs WHERE run_id = $run), count(*),
                       coalesce(sum(d.n_tokens), 0)::BIGINT FROM documents d
                WHERE d.doc_id IN (SELECT doc_id FROM accepted_pairs WHERE run_id = $run)""",
        {"run": run_id},
    )
    led = ledger(con, run_id, accepted)
    return {
        "run_id": run_id,
        "run_label": run[0],
        "corpus": run[1],
        "params": json.loads(run[2]) if run[2] else {},
        "started_at": str(run[3]) if run[3] else None,
        "status": run[5],
        "funnel": steps,
        "stages": stage_table(con, run_id),
        "distributions": distributions(con, run_id),
        "diversity": diversity_of_run(con, run_id),
        "diversity_generated": diversity_of_generated(con, run_id),
        "answer_policy": answer_policy_of(json.loads(run[2]) if run[2] else {}),
        "learnability": learnability(con, run_id),
        "ledger": led,
        "accepted_pairs": accepted,
        "source": {"documents": source_docs, "tokens": source_tokens},
        "models": {stage: s["models"] for stage, s in led["stages"].items()},
        "audit": audit.metrics(con, run_id),
        "llm_server": server_metrics.run_summary(con, run_id),
    }


# --- rendering ----------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def render_markdown(card: dict) -> str:
    lines = [f"# Dataset card: run `{card['run_id']}`", ""]
    if card["run_label"]:
        lines += [f"Label: {card['run_label']}", ""]
    lines += [
        f"Corpus `{card['corpus']}`, started {card['started_at']}. "
        f"**{card['accepted_pairs']} accepted pairs** from {card['source']['documents']} source documents "
        f"({card['source']['tokens']:,} source tokens, the method's budget unit).",
        "",
        "## Funnel",
        "",
        "| step | unit | count |",
        "|---|---|---:|",
    ]
    lines += [f"| {s['step']} | {s['unit']} | {s['count']} |" for s in card["funnel"]]
    lines += [
        "",
        "## Stages",
        "",
        "| stage | unit | in | kept | rejected | failed | pass rate |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {s['stage']} | {s['unit']} | {s['inputs']} | {s['kept']} | {s['rejected']} | {s['failed']} | "
        f"{_pct(s['pass_rate'])} |"
        for s in card["stages"]
    ]
    lines += ["", "## Rejection reasons (two examples each)", ""]
    for s in card["stages"]:
        for r in s["reasons"]:
            lines.append(f"- **{s['stage']} / {r['reason']}**: {r['count']}")
            for ex in r["examples"]:
                text = " ".join(str(ex["example"]).split()).replace("|", "\\|")
                lines.append(f"  - `{ex['id'][:12]}`: {text}")
    d = card["distributions"]
    lines += [
        "",
        "## Accepted pairs",
        "",
        "Domains: " + (", ".join(f"{k} {v}" for k, v in d["domains"].items()) or "none"),
        "",
        "Top personas: " + ("; ".join(f"{k} ({v})" for k, v in d["personas"].items()) or "none"),
        "",
        "Answer length (words: pairs): "
        + (", ".join(f"{k}: {v}" for k, v in d["answer_words"].items()) or "none"),
        "",
        f"Answer-length policy (`max_answer_words`): {card['answer_policy']['text']}.",
        "",
    ]
    lines += diversity.describe(card["diversity"])
    lines += diversity.describe(
        card["diversity_generated"], "Diversity of every generated pair (before verify)"
    )
    lines += describe_learnability(card["learnability"])
    lines += [
        "## LLM token ledger",
        "",
        "| stage | models | calls | failed | retries | prompt tokens | completion tokens |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for stage, s in card["ledger"]["stages"].items():
        lines.append(
            f"| {stage} | {', '.join(s['models'])} | {s['calls']} | {s['failed']} | {s['retries']} | "
            f"{s['prompt_tokens']:,} | {s['completion_tokens']:,} |"
        )
    per_pair = card["ledger"]["tokens_per_accepted_pair"]
    lines += [
        "",
        f"Total {card['ledger']['total_tokens']:,} tokens; "
        f"{'n/a' if per_pair is None else f'{per_pair:,.1f}'} tokens per accepted pair.",
        "",
    ]
    scale = card["ledger"].get("paper_scale")
    if scale:
        lines += [
            f"At this rate the method's {scale['pairs']:,} pairs would cost about "
            f"{scale['tokens'] / 1e9:,.2f} B tokens: {scale['gpu_hours']:,.1f} GPU-hours at an "
            f"assumed {scale['assumed_tokens_per_gpu_s']:,} tokens/s per GPU (vLLM, 8B model, "
            "H100-class; not measured here).",
            "",
        ]
    lines += describe_server(card.get("llm_server"), card["ledger"])
    lines += [
        "## Human audit",
        "",
    ]
    lines += audit.describe(card["audit"])
    lines += [
        "",
        "## Params",
        "",
        "```json",
        json.dumps(card["params"], indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


NO_SERVER_METRICS = (
    "The server exposed no vLLM metrics (llama.cpp, a hosted API, or unreachable at the "
    "run's start or end): nothing recorded."
)


def server_account(server: dict | None, led: dict) -> tuple[str, list[list]]:
    """The LLM server's own account of the run (vLLM metrics) beside the ledger's tokens:
    a headline and rows of (measure, server, ledger)."""
    if not server:
        return NO_SERVER_METRICS, []
    headline = (
        f"vLLM {server['version'] or '(version unknown)'} at {server['server']}, between the run's "
        f"start and its dataset card ({server['wall_s']:,.0f} s). A server shared with other runs "
        "counts their requests too."
        + (
            " The server restarted during the run: only what followed is counted."
            if server["server_restarted"]
            else ""
        )
    )
    stages = led["stages"].values()
    na = "n/a"
    rows = [
        [
            "requests served",
            f"{server['requests']:,}",
            f"{sum(s['calls'] + s['retries'] for s in stages):,} attempts",
        ],
        [
            "prompt tokens",
            f"{server['prompt_tokens']:,}",
            f"{sum(s['prompt_tokens'] for s in stages):,}",
        ],
        [
            "generation tokens",
            f"{server['generation_tokens']:,}",
            f"{sum(s['completion_tokens'] for s in stages):,}",
        ],
        ["prefix-cache hit rate (prompt tokens)", _pct(server["prefix_cache_hit_rate"]), ""],
        ["mean tokens per engine step", server["mean_tokens_per_step"] or na, ""],
        ["mean requests running at once", server["mean_running_requests"] or na, ""],
        [
            "mean queue wait (s)",
            na if server["mean_queue_s"] is None else server["mean_queue_s"],
            "",
        ],
        ["preemptions", server["preemptions"], ""],
    ]
    return headline, rows


def describe_server(server: dict | None, led: dict) -> list[str]:
    headline, rows = server_account(server, led)
    lines = ["## LLM server", "", headline, ""]
    if rows:
        lines += ["| measure | server | ledger |", "|---|---:|---:|"]
        lines += [f"| {m} | {v} | {w} |" for m, v, w in rows] + [""]
    return lines


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(card: dict) -> dict[str, str]:
    """Base64 PNGs: funnel, domains, answer lengths, policy passes, tokens per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    charts = [
        (
            "funnel",
            "Funnel",
            [s["step"] for s in card["funnel"]],
            [s["count"] for s in card["funnel"]],
            True,
        ),
        (
            "domains",
            "Accepted pairs by domain",
            list(card["distributions"]["domains"]),
            list(card["distributions"]["domains"].values()),
            True,
        ),
        (
            "answer_words",
            "Answer length (words)",
            [str(k) for k in card["distributions"]["answer_words"]],
            list(card["distributions"]["answer_words"].values()),
            False,
        ),
        (
            "pass_rate",
            "Policy passes per pair (learnability)",
            [f"{i}/{card['learnability']['samples']}" for i in card["learnability"]["histogram"]],
            list(card["learnability"]["histogram"].values()),
            False,
        ),
        (
            "tokens",
            "LLM tokens by stage",
            list(card["ledger"]["stages"]),
            [
                s["prompt_tokens"] + s["completion_tokens"]
                for s in card["ledger"]["stages"].values()
            ],
            True,
        ),
    ]
    for key, title, labels, values, horizontal in charts:
        fig, ax = plt.subplots(
            figsize=(7, 0.35 * max(len(labels), 3) + 1) if horizontal else (7, 3)
        )
        if horizontal:
            ax.barh(labels[::-1], values[::-1], color="#3b6ea8")
        else:
            ax.bar(labels, values, color="#3b6ea8")
        ax.set_title(title)
        if not labels:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        out[key] = _png(fig)
        plt.close(fig)
    return out


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(card: dict) -> str:
    images = plots(card)
    img = {
        k: f'<img class="plot" id="plot-{k}" alt="{k}" src="data:image/png;base64,{v}">'
        for k, v in images.items()
    }
    reasons = [
        [
            s["stage"],
            r["reason"],
            r["count"],
            " || ".join(f"{e['id'][:12]}: {e['example']}" for e in r["examples"]),
        ]
        for s in card["stages"]
        for r in s["reasons"]
    ]
    ledger_rows = [
        [
            stage,
            ", ".join(s["models"]),
            s["calls"],
            s["failed"],
            s["retries"],
            s["prompt_tokens"],
            s["completion_tokens"],
        ]
        for stage, s in card["ledger"]["stages"].items()
    ]
    per_pair = card["ledger"]["tokens_per_accepted_pair"]
    server_headline, server_rows = server_account(card.get("llm_server"), card["ledger"])
    audit_lines = "".join(
        f"<li>{html.escape(line.lstrip('- '))}</li>" for line in audit.describe(card["audit"])
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dataset card: {
        html.escape(card["run_id"])
    }</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
.plot{{max-width:100%;margin:1em 0}}.big{{font-size:1.3em}}</style></head><body>
<h1>Dataset card: run {html.escape(card["run_id"])}</h1>
<p class="big" id="summary"><b>{card["accepted_pairs"]}</b> accepted pairs from {
        card["source"]["documents"]
    } source documents
({card["source"]["tokens"]:,} source tokens). Corpus <code>{
        html.escape(str(card["corpus"]))
    }</code>,
label {html.escape(card["run_label"] or "-")}, started {html.escape(str(card["started_at"]))}.</p>
<h2>Funnel</h2>{
        _table(
            ["step", "unit", "count"], [[s["step"], s["unit"], s["count"]] for s in card["funnel"]]
        )
    }
{img["funnel"]}
<h2>Stages</h2>{
        _table(
            ["stage", "unit", "in", "kept", "rejected", "failed", "pass rate"],
            [
                [
                    s["stage"],
                    s["unit"],
                    s["inputs"],
                    s["kept"],
                    s["rejected"],
                    s["failed"],
                    _pct(s["pass_rate"]),
                ]
                for s in card["stages"]
            ],
        )
    }
<h2>Rejection reasons</h2>{_table(["stage", "reason", "count", "examples"], reasons)}
<h2>Accepted pairs</h2>{img["domains"]}{img["answer_words"]}
{_table(["persona", "pairs"], [[k, v] for k, v in card["distributions"]["personas"].items()])}
<p id="answer-policy">Answer-length policy: {html.escape(card["answer_policy"]["text"])}.</p>
<h2>Diversity</h2><div id="diversity">{
        "".join(
            f"<p>{html.escape(line)}</p>"
            for line in diversity.describe(card["diversity"])[2:]
            if line
        )
    }<h3>Every generated pair (before verify)</h3>{
        "".join(
            f"<p>{html.escape(line)}</p>"
            for line in diversity.describe(card["diversity_generated"])[2:]
            if line
        )
    }</div>
<h2>Learnability</h2><div id="learnability">{
        "".join(
            f"<p>{html.escape(line)}</p>"
            for line in describe_learnability(card["learnability"])[2:]
            if line and not line.startswith("|")
        )
    }{
        _table(
            ["passes", "pairs"],
            [
                [f"{i}/{card['learnability']['samples']}", n]
                for i, n in card["learnability"]["histogram"].items()
            ],
        )
        if card["learnability"]["histogram"]
        else ""
    }</div>{img["pass_rate"]}
<h2>LLM token ledger</h2>{
        _table(
            ["stage", "models", "calls", "failed", "retries", "prompt tokens", "completion tokens"],
            ledger_rows,
        )
    }
<p>Total {card["ledger"]["total_tokens"]:,} tokens; {
        "n/a" if per_pair is None else f"{per_pair:,.1f}"
    } per accepted pair.</p>
{img["tokens"]}
<h2>LLM server</h2><p id="llm-server">{html.escape(server_headline)}</p>{
        _table(["measure", "server", "ledger"], server_rows) if server_rows else ""
    }
<h2>Human audit</h2><ul id="audit">{audit_lines}</ul>
<h2>Params</h2><pre>{html.escape(json.dumps(card["params"], indent=2, sort_keys=True))}</pre>
</body></html>
"""


def write_card(
    db_path: Path, exports_dir: Path, run_id: str, audit_per_stratum: int = audit.PER_STRATUM
) -> dict:
    """Write card.md, report.html and (once) audit.csv next to the run's export."""
    target = exports_dir / run_folder_name(run_id)
    target.mkdir(parents=True, exist_ok=True)
    sheet = target / "audit.csv"
    with warehouse.read(db_path) as con:
        card = collect(con, run_id)
        # Drawn once: never overwrite a sheet someone may be filling in (nor read every pair again).
        sample = None if sheet.exists() else audit.sample(con, run_id, audit_per_stratum)
    (target / "card.md").write_text(render_markdown(card), encoding="utf-8")
    (target / "report.html").write_text(render_html(card), encoding="utf-8")
    (target / "card.json").write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
    if sample is not None:
        audit.write_csv(sample, sheet)
    audit_rows = len(sample) if sample is not None else len(pd.read_csv(sheet, dtype=str))
    return {
        "path": str(target),
        "accepted_pairs": card["accepted_pairs"],
        "audit_rows": audit_rows,
        "funnel": {s["step"]: s["count"] for s in card["funnel"]},
    }
