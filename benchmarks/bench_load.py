"""Load benchmark: every partition of a seed-scale plan into the fake amoCRM at 7 requests/s.

    uv run python benchmarks/bench_load.py [--scale seed] [--rps 7] [--deals-per-partition 1000]
        [--parallel 2]

Extraction, cleansing and setup run first (not timed, Pipedrive limits relaxed); then every
load partition runs, two at a time in their own processes, as ``migration-pipeline migrate``
does. Reports the load's wall time, requests used ÷ the bound Σ⌈n/250⌉ over what it creates,
achieved requests/s ÷ the limit, 429s, and the speed-up over the 12 hours the hand-made
migration in ``shared/seeds/001`` took at one request per second.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def bound(db: Path) -> int:
    """Σ⌈n/250⌉ per kind of entity the load creates (contact→company links included)."""
    with duckdb.connect(str(db), read_only=True) as con:
        counts = {
            "companies": "select count(*) from plan.companies",
            "contacts": "select count(*) from plan.contacts",
            "links": "select count(*) from plan.contacts where company_key is not null",
            "leads": "select count(*) from plan.leads",
        }
        total = sum(math.ceil(con.execute(sql).fetchall()[0][0] / 250) for sql in counts.values())
        for table in ("tasks", "notes"):
            for (n,) in con.execute(
                f"select count(*) from plan.{table} group by entity_type"
            ).fetchall():
                total += math.ceil(n / 250)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="seed")
    parser.add_argument("--rps", type=float, default=7.0)
    parser.add_argument("--deals-per-partition", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=2, help="partitions at a time, as migrate")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    os.environ.update(
        MIGRATION_DATA_DIR=str(work / "data"),
        DAGSTER_HOME=str(work / "dagster_home"),
        MIGRATION_SANDBOX_SCALE=args.scale,
        MIGRATION_SANDBOX_PIPEDRIVE_BURST="100000",
        MIGRATION_SANDBOX_PIPEDRIVE_DAILY_TOKENS="100000000",  # `large` needs more than a day's
        MIGRATION_SANDBOX_AMOCRM_RPS="1000",  # setup is not what we measure
    )
    from migration_pipeline.cli import PartitionLoader
    from migration_pipeline.definitions import defs
    from migration_pipeline.instance import get_instance
    from migration_pipeline.limiter import WAIT_BUFFER_MS, window_rate
    from migration_pipeline.sandbox import SandboxSettings, amocrm_fake

    instance = get_instance()
    started = time.monotonic()
    for job in ("extract_pipedrive", "cleanse", "amocrm_setup"):
        assert (
            defs.resolve_job_def(job)
            .execute_in_process(instance=instance, run_config=QUIET)
            .success
        ), job
    plan_config = {
        **QUIET,
        "ops": {"load_plan": {"config": {"deals_per_partition": args.deals_per_partition}}},
    }
    assert (
        defs.resolve_job_def("plan")
        .execute_in_process(instance=instance, run_config=plan_config)
        .success
    )
    prepared = time.monotonic() - started

    os.environ["MIGRATION_SANDBOX_AMOCRM_RPS"] = f"{args.rps:g}"
    fake = amocrm_fake(SandboxSettings.from_env())
    before = fake.requests_served()
    keys = sorted(instance.get_dynamic_partitions("deal_batches"))
    # The workers start with the limit now in the environment; `migrate` starts them before
    # extraction, so their start-up (importing Dagster) is not part of its load either.
    loader = PartitionLoader(args.parallel)
    loader.ready()
    load_started = time.time()
    started = time.monotonic()
    rate_limited = 0
    for loaded in loader.run(keys):
        assert loaded.success, loaded.failure
        rate_limited += loaded.metadata["rate_limited_429"]
    wall = time.monotonic() - started
    load_ended = time.time()
    loader.close()
    used = fake.requests_served() - before
    times = fake.request_times(since=load_started)
    window = window_rate(args.rps)
    ceiling = window.limit / ((window.interval + WAIT_BUFFER_MS) / 1000)
    needed = bound(work / "data" / "migration.duckdb")
    counts = fake.entity_counts()
    duplicates = sum(
        1
        for entity in ("leads", "contacts", "companies")
        for n in fake.creations_per_pipedrive_id(entity).values()
        if n > 1
    )
    print(
        f"## Load benchmark: scale `{args.scale}`, {args.rps:g} requests/s, {len(keys)} partitions, "
        f"{args.parallel} at a time\n"
    )
    print("| figure | value |\n| --- | --- |")
    print(f"| extract + cleanse + setup + plan (not timed against the limit) | {prepared:.1f} s |")
    print(f"| created | {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))} |")
    print(f"| load wall time | {wall:.1f} s |")
    print(
        f"| requests used / bound Σ⌈n/250⌉ | {used} / {needed} = {used / needed:.3f} (goal ≤ 1.10) |"
    )
    print(
        f"| achieved requests/s ÷ limit | {used / wall:.2f} ÷ {args.rps:g} = {used / wall / args.rps:.2f} (goal ≥ 0.90) |"
    )
    print(
        f"| requests/s between the first request and the last | {(len(times) - 1) / (times[-1] - times[0]):.2f} "
        f"(the limiter's sustained ceiling: {window.limit} per {window.interval + WAIT_BUFFER_MS} ms = {ceiling:.2f}) |"
    )
    print(
        f"| before the first request / after the last | {times[0] - load_started:.2f} s / "
        f"{load_ended - times[-1]:.2f} s (Dagster runs starting and ending, plan and ledger reads) |"
    )
    print(
        f"| busiest second at the server | {fake.max_requests_per_second(since=load_started)} requests |"
    )
    print(f"| 429s received (goal 0) | {rate_limited} |")
    print(f"| duplicates by Pipedrive id | {duplicates} |")
    print(f"| speed-up over the 12 h hand migration | {12 * 3600 / wall:.0f}× |")


if __name__ == "__main__":
    main()
