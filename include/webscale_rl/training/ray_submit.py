"""Submit one Ray job through Ray's job API; run by the Python that has `ray` installed.

Airflow's venv does not carry Ray (its pins would have to agree with Airflow's), so the train
task runs this file with the training venv's interpreter (`ray_jobs.ray_python()`):

    <ray python> ray_submit.py  < spec.json   ->  {"submission_id": ..., "attached": bool}

spec: {"address", "submission_id", "entrypoint", "working_dir", "env_vars", "metadata",
"entrypoint_num_cpus"}. `JobSubmissionClient.submit_job` zips `working_dir` and uploads it to
the cluster, which is what the launcher relies on to ship the data and the reward.

A submission id is a key: when a job with that id already exists and is pending, running or
succeeded (a retried or cleared Airflow task), this attaches to it instead of paying for the
run again; a failed or stopped one gets a fresh id (`<id>-r2`, `-r3`, ...).
Only the standard library and `ray` are imported here: the file is run by path.
"""

from __future__ import annotations

import json
import sys

ATTACHABLE = {"PENDING", "RUNNING", "SUCCEEDED"}


def submit(spec: dict) -> dict:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(spec["address"])
    base = spec["submission_id"]
    for attempt in range(1, 100):
        sid = base if attempt == 1 else f"{base}-r{attempt}"
        try:
            info = client.get_job_info(sid)
        except RuntimeError as exc:  # the client raises RuntimeError for any HTTP error
            if "does not exist" not in str(exc):
                raise
            info = None
        if info is not None:
            if str(info.status) in ATTACHABLE:
                return {"submission_id": sid, "attached": True, "status": str(info.status)}
            continue
        runtime_env = {"working_dir": spec["working_dir"]}
        if spec.get("env_vars"):
            runtime_env["env_vars"] = spec["env_vars"]
        client.submit_job(
            entrypoint=spec["entrypoint"],
            submission_id=sid,
            runtime_env=runtime_env,
            metadata={k: str(v) for k, v in (spec.get("metadata") or {}).items()},
            entrypoint_num_cpus=spec.get("entrypoint_num_cpus"),
        )
        return {"submission_id": sid, "attached": False, "status": "PENDING"}
    raise RuntimeError(f"99 earlier jobs under submission id {base!r}; pick another")


if __name__ == "__main__":
    print(json.dumps(submit(json.load(sys.stdin))))
