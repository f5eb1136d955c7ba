"""Run the project's own jobs (the ``Definitions`` the UI loads) against a test's sandbox."""

from __future__ import annotations

from typing import Any

import dagster as dg

from migration_pipeline.definitions import defs

QUIET = {"console": {"config": {"log_level": "WARNING"}}}


def run_job(
    instance: dg.DagsterInstance,
    name: str,
    *,
    partition_key: str | None = None,
    resources: dict[str, dict[str, Any]] | None = None,
    ops: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    run_config: dict[str, Any] = {"loggers": QUIET}
    if resources:
        run_config["resources"] = {key: {"config": value} for key, value in resources.items()}
    if ops:
        run_config["ops"] = ops
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance, partition_key=partition_key, raise_on_error=False, run_config=run_config
    )


FAST = {"retry_backoff_seconds": 0.01}


def run_stages(instance: dg.DagsterInstance, jobs: tuple[str, ...]) -> None:
    for job in jobs:
        needed = defs.resolve_job_def(job).required_resource_keys
        resources = {key: FAST for key in ("pipedrive", "amocrm") if key in needed}
        assert run_job(instance, job, resources=resources).success, f"{job} failed"


def plan(instance: dg.DagsterInstance, **config: Any) -> list[str]:
    """Run the plan job; returns the load partitions, in order."""
    result = run_job(instance, "plan", ops={"load_plan": {"config": config}} if config else None)
    assert result.success, "plan failed"
    return sorted(instance.get_dynamic_partitions("deal_batches"))
