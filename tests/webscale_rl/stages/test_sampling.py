"""Per-stage sampling: generation sampled by default (the method's temperature 1.0), every
other stage greedy; a sampled request's seed comes from its own content, so two requests
draw independently and a re-run sends the same request, which the ledger answers."""

from __future__ import annotations

import pytest

from webscale_rl import pipeline, prompts
from webscale_rl.llm import LLMClient, LLMSettings
from webscale_rl.params import RunParams
from webscale_rl.scripted_llm import FakeLLM
from webscale_rl.stages import common

BASE = LLMSettings(base_url="http://127.0.0.1:9/v1", seed=1234)


def settings(**params) -> LLMSettings:
    return pipeline.llm_settings(RunParams.from_params(params), BASE)


def request(s: LLMSettings, stage: str, text: str):
    return common.make_request(
        s, stage, "doc", prompts.filter_messages(text), {"type": "object"}, "x", "x.v1"
    )


@pytest.mark.unit
def test_defaults_sample_generation_and_keep_every_other_stage_greedy():
    s = settings()
    assert s.sampling_for("generate") == (1.0, 1.0, 1234)
    for stage in ("llm_filter", "classify", "verify"):
        assert s.sampling_for(stage) == (0.0, 1.0, 1234)
    greedy = request(s, "verify", "A document.")
    assert (greedy.temperature, greedy.seed) == (0.0, 1234)  # as before seeds were derived


@pytest.mark.unit
def test_a_sampled_requests_seed_comes_from_its_content():
    s = settings()
    a, a_again, b = (request(s, "generate", t) for t in ("Doc one.", "Doc one.", "Doc two."))
    assert a.temperature == 1.0
    assert a.seed == a_again.seed and a.request_hash == a_again.request_hash
    assert a.seed != b.seed
    assert 0 <= a.seed < 2**31 and a.seed != 1234
    # another base seed is another draw for the same request
    other = request(settings(sampling={"generate": {"seed": 99}}), "generate", "Doc one.")
    assert other.seed != a.seed and other.request_hash != a.request_hash


@pytest.mark.unit
def test_the_param_merges_over_the_defaults_stage_by_stage_and_key_by_key():
    s = settings(sampling={"generate": {"top_p": 0.9}, "verify": {"temperature": 0.3, "seed": 7}})
    assert s.sampling_for("generate") == (1.0, 0.9, 1234)  # temperature kept from the default
    assert s.sampling_for("verify") == (0.3, 1.0, 7)
    assert settings(sampling={"generate": {"temperature": 0}}).sampling_for("generate")[0] == 0.0
    # top_p joins a request's identity only when it restricts sampling
    assert (
        request(s, "generate", "x").request_hash
        != request(settings(), "generate", "x").request_hash
    )


@pytest.mark.e2e
def test_the_server_receives_the_stage_sampling_and_a_rerun_is_answered_by_the_ledger(tmp_path):
    with FakeLLM() as server:
        base = LLMSettings(base_url=server.base_url, model=server.model)
        s = pipeline.llm_settings(
            RunParams.from_params({"sampling": {"generate": {"top_p": 0.8}}}), base
        )
        reqs = [
            common.make_request(
                s,
                stage,
                f"doc-{i}",
                prompts.filter_messages(f"Document {i}. It has three sentences. Really."),
                prompts.load("llm_filter").schema,
                "llm_filter",
                "llm_filter.v1",
            )
            for i in range(3)
            for stage in ("generate", "llm_filter")
        ]
        db = tmp_path / "w.duckdb"
        first = LLMClient(s, db, "run-1").run(reqs)
        bodies = list(server.requests_log)
        again = LLMClient(s, db, "run-2").run(reqs)
    assert all(r.ok for r in first.values())
    sampled = [b for b in bodies if b["temperature"] == 1.0]
    greedy = [b for b in bodies if b["temperature"] == 0.0]
    assert len(sampled) == len(greedy) == 3
    assert all(b["top_p"] == 0.8 for b in sampled) and all("top_p" not in b for b in greedy)
    assert len({b["seed"] for b in sampled}) == 3 and {b["seed"] for b in greedy} == {base.seed}
    assert all(r.cached for r in again.values())  # the same requests: nothing sent again
    assert len(server.requests_log) == len(bodies)
