"""Training jobs on a Ray cluster: submit through Ray's job API, watch through its REST API.

Submitting goes through `ray.job_submission.JobSubmissionClient` (it packs the job folder as
the job's working_dir and uploads it), run by the training venv's Python (`ray_python()`,
`make verl-venv`): Airflow's own venv carries no `ray`. Everything after submission — the
deferred task's trigger polling the job, streaming its log, stopping it when the Airflow
task is cancelled — is plain HTTP against the Ray dashboard's job endpoints (GET
/api/jobs/<id>, GET /api/jobs/<id>/logs, POST /api/jobs/<id>/stop), so the triggerer needs
no Ray either.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from webscale_rl.config import ConfigError
from webscale_rl.training.venvs import venv_python

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
SUBMIT_SCRIPT = Path(__file__).with_name("ray_submit.py")
DEFAULT_DASHBOARD_PORT = 8265


def ray_python() -> Path:
    """The interpreter that has `ray` (the verl training venv unless WEBSCALE_RL_RAY_PYTHON)."""
    return venv_python(
        "WEBSCALE_RL_RAY_PYTHON",
        ".venv-verl",
        "verl-venv",
        "ray[default] (the version your cluster runs)",
    )


def dashboard_url(address: str) -> str:
    """Ray's job API lives on the dashboard (http://head:8265), not on the GCS port or the
    `ray://` client port; a bare host:port gets http://."""
    address = address.strip().rstrip("/")
    if address.startswith("ray://"):
        raise ConfigError(
            f"ray_address {address!r} is a Ray Client address; jobs are submitted to the "
            f"dashboard: http://<head>:{DEFAULT_DASHBOARD_PORT}"
        )
    if not re.match(r"^https?://", address):
        address = "http://" + address
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(:\d+)?(/[\w\-./]*)?", address):
        raise ConfigError(f"ray_address {address!r} is not an http(s) URL of a Ray dashboard")
    return address


@dataclass
class RayJobSpec:
    address: str  # the dashboard URL
    submission_id: str  # the key: a retried task attaches to the job it submitted
    entrypoint: str  # a shell command, run in the unpacked working_dir on the head node
    working_dir: str  # shipped to the cluster by the job API
    env_vars: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    entrypoint_num_cpus: float | None = None


def submit(spec: RayJobSpec, python: Path | None = None, timeout_s: float = 600) -> dict:
    """Submit (or attach to) the job; {"submission_id", "attached", "status"}."""
    python = python or ray_python()
    try:
        done = subprocess.run(
            [str(python), str(SUBMIT_SCRIPT)],
            input=json.dumps(asdict(spec)),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"submitting to Ray at {spec.address} took over {timeout_s:.0f}s (uploading "
            f"{spec.working_dir}?)"
        ) from exc
    if done.returncode != 0:
        raise RuntimeError(
            f"could not submit the job to Ray at {spec.address} (is the cluster up and its "
            f"dashboard reachable from this worker?): {done.stderr.strip()[-2000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the job's REST endpoints (the trigger, tests) -----------------------------------------


async def job_info(client, address: str, submission_id: str) -> dict:
    resp = await client.get(f"{address}/api/jobs/{submission_id}")
    resp.raise_for_status()
    return resp.json()


async def job_logs(client, address: str, submission_id: str) -> str:
    resp = await client.get(f"{address}/api/jobs/{submission_id}/logs")
    resp.raise_for_status()
    return resp.json().get("logs") or ""


async def stop_job(client, address: str, submission_id: str) -> bool:
    """Ask Ray to stop the job (SIGTERM to its entrypoint, then SIGKILL); True if it was
    still running."""
    resp = await client.post(f"{address}/api/jobs/{submission_id}/stop")
    resp.raise_for_status()
    return bool(resp.json().get("stopped"))


# --- reading the job's log ---------------------------------------------------------------


def new_lines(logs: str, seen_chars: int) -> tuple[list[str], int]:
    """The complete lines after `seen_chars` characters of the log, and the new offset (a
    line still being written waits for its newline)."""
    end = logs.rfind("\n") + 1
    if end <= seen_chars:
        return [], seen_chars
    return logs[seen_chars:end].splitlines(), end


def tail(logs: str, lines: int = 40) -> str:
    return "\n".join(logs.rstrip("\n").splitlines()[-lines:])


VERL_STEP = re.compile(r"\bstep:(\d+) - (.+)$")


def verl_metrics(logs: str) -> dict:
    """verl's console logger prints `step:N - key:value - key:value ...` per step; the last
    step's numbers and the mean reward (critic/score/mean) of every step."""
    last: dict[str, float] = {}
    score_per_step: list[float] = []
    steps = 0
    for line in logs.splitlines():
        match = VERL_STEP.search(line)
        if not match:
            continue
        values = {}
        for part in match.group(2).split(" - "):
            key, _, raw = part.partition(":")
            try:
                values[key.strip()] = float(raw)
            except ValueError:
                continue
        steps, last = int(match.group(1)), values
        if "critic/score/mean" in values:
            score_per_step.append(values["critic/score/mean"])
    return {"steps": steps, "last_step": last, "score_per_step": score_per_step}
