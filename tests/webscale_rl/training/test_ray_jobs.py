"""The pure parts of training on Ray: addresses, the log reader, verl's step lines, the
trigger's round trip through Airflow's serialization. Jobs on a real Ray head:
tests/test_train_ray_e2e.py."""

from __future__ import annotations

import asyncio

import pytest

from webscale_rl.config import ConfigError
from webscale_rl.training import ray_jobs
from webscale_rl.training.ray_trigger import RayJobTrigger
from webscale_rl.training.tasks import TrainParams

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://10.0.0.5:8265", "http://10.0.0.5:8265"),
        ("10.0.0.5:8265/", "http://10.0.0.5:8265"),
        ("https://ray.example.com", "https://ray.example.com"),
        (" http://127.0.0.1:34777 ", "http://127.0.0.1:34777"),
    ],
)
def test_the_dashboard_url_is_normalised(given, url):
    assert ray_jobs.dashboard_url(given) == url


def test_a_ray_client_address_is_refused_with_what_to_give_instead():
    with pytest.raises(ConfigError, match=r"dashboard: http://<head>:8265"):
        ray_jobs.dashboard_url("ray://head:10001")
    with pytest.raises(ConfigError, match="not an http"):
        ray_jobs.dashboard_url("http://head:8265; rm -rf /")


def test_the_param_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("WEBSCALE_RL_RAY_ADDRESS", "head-from-env:8265")
    assert TrainParams().ray_dashboard() == "http://head-from-env:8265"
    assert TrainParams(ray_address="other:8265").ray_dashboard() == "http://other:8265"
    monkeypatch.delenv("WEBSCALE_RL_RAY_ADDRESS")
    assert TrainParams().ray_dashboard() is None


@pytest.mark.parametrize("bad", [{"ray_poll_s": 0}, {"ray_wait_hours": 0}, {"ray_poll_s": "x"}])
def test_ray_waits_must_be_positive_integers(bad):
    with pytest.raises(ConfigError):
        TrainParams.from_params(bad)


def test_new_lines_hands_out_each_complete_line_once():
    lines, seen = ray_jobs.new_lines("a\nb\npart", 0)
    assert (lines, seen) == (["a", "b"], 4)
    assert ray_jobs.new_lines("a\nb\npart", seen) == ([], 4)  # the half line waits
    assert ray_jobs.new_lines("a\nb\npartial done\nc\n", seen) == (["partial done", "c"], 19)
    assert ray_jobs.new_lines("", 0) == ([], 0)


def test_tail_keeps_the_last_lines():
    logs = "".join(f"line {i}\n" for i in range(100))
    assert ray_jobs.tail(logs, 3) == "line 97\nline 98\nline 99"
    assert ray_jobs.tail("", 3) == ""


def test_verl_step_lines_give_the_last_step_and_the_reward_per_step():
    logs = (
        "(TaskRunner pid=1) step:1 - actor/pg_loss:0.5 - critic/score/mean:0.25 - note:n/a\n"
        "some other line with step: in it\n"
        "(TaskRunner pid=1) step:2 - actor/pg_loss:-0.125 - critic/score/mean:0.5 - "
        "timing_s/step:12.5\n"
    )
    m = ray_jobs.verl_metrics(logs)
    assert m["steps"] == 2 and m["score_per_step"] == [0.25, 0.5]
    assert m["last_step"] == {
        "actor/pg_loss": -0.125,
        "critic/score/mean": 0.5,
        "timing_s/step": 12.5,
    }
    assert ray_jobs.verl_metrics("no steps here") == {
        "steps": 0,
        "last_step": {},
        "score_per_step": [],
    }


def test_the_trigger_survives_airflows_serialization():
    trigger = RayJobTrigger(
        "http://h:8265", "webscale-rl-x", poll_interval_s=3, train_run_id="r", echo={"a": [1]}
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "webscale_rl.training.ray_trigger.RayJobTrigger"
    again = RayJobTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)


def test_without_the_ray_venv_the_error_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("WEBSCALE_RL_RAY_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(ConfigError, match="make verl-venv"):
        ray_jobs.ray_python()


def test_a_dashboard_that_stays_unreachable_ends_the_wait_with_a_message():
    """A port nobody listens on: the trigger retries for unreachable_limit_s, then reports."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    trigger = RayJobTrigger(
        f"http://127.0.0.1:{port}",
        "job-1",
        poll_interval_s=0.05,
        unreachable_limit_s=0.2,
        echo={"launcher": "verl"},
    )
    event = only_event(trigger)
    assert event["status"] == "UNREACHABLE" and event["echo"] == {"launcher": "verl"}
    assert f"Ray dashboard http://127.0.0.1:{port} unreachable" in event["message"]
    assert "the job may still be running" in event["message"]


def only_event(trigger) -> dict:
    """Run the trigger to its end, as the triggerer does; it must fire exactly one event."""

    async def collect():
        return [event.payload async for event in trigger.run()]

    [event] = asyncio.run(collect())
    return event
