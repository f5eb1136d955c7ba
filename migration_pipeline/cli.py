"""``migration-pipeline``: run the migration end to end, or open the Dagster UI on it.

``migrate`` runs every stage through Dagster in the project's instance (``DAGSTER_HOME``,
default ``<data dir>/dagster_home``), so the runs it starts are the runs ``ui`` shows. With no
``PIPEDRIVE_BASE_URL`` / ``AMOCRM_BASE_URL`` it migrates the embedded sandbox.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from . import settings
from .load.loader import KINDS
from .sandbox import SCALES

STAGES: tuple[tuple[str, str], ...] = (
    ("extract", "extract_pipedrive"),
    ("cleanse", "cleanse"),
    ("setup", "amocrm_setup"),
    ("plan", "plan"),
)
# Dagster's console logger prints every framework event at DEBUG; the steps' own progress
# (counts, retries, 429s) is INFO. The UI keeps the full event log either way.
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _apply_sandbox_flags(args: argparse.Namespace) -> None:
    """Flags win over the environment; they are passed on through it, so every Dagster step
    process sees the same sandbox."""
    if args.data_dir:
        os.environ["MIGRATION_DATA_DIR"] = str(Path(args.data_dir).resolve())
    for flag, variable in (
        ("scale", "MIGRATION_SANDBOX_SCALE"),
        ("seed", "MIGRATION_SANDBOX_SEED"),
        ("faults", "MIGRATION_SANDBOX_FAULTS"),
    ):
        value = getattr(args, flag)
        if value is not None:
            os.environ[variable] = str(value)
    if args.from_dir:
        os.environ["MIGRATION_SANDBOX_FROM_DIR"] = str(Path(args.from_dir).resolve())


def _run(instance, job_name: str, partition_key: str | None = None, ops: dict | None = None):  # noqa: ANN001, ANN202
    from .definitions import defs

    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={**QUIET, "ops": ops or {}},
        partition_key=partition_key,
    )


def _failure_lines(result) -> list[str]:  # noqa: ANN001
    lines = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            error = event.step_failure_data.error
            message = (error.cause.message if error.cause else error.message).strip()
            lines.append(f"    {event.step_key}: {message}")
    return lines


def _load_metadata(result) -> dict:  # noqa: ANN001
    """A load partition's counts, from its materialisation or, when it failed, its failure."""
    for event in result.all_events:
        if event.is_step_materialization:
            return {
                k: v.value
                for k, v in event.step_materialization_data.materialization.metadata.items()
            }
        if event.is_step_failure and event.step_failure_data.user_failure_data:
            return {
                k: v.value for k, v in event.step_failure_data.user_failure_data.metadata.items()
            }
    return {}


def _rows(result) -> list[str]:  # noqa: ANN001
    lines = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        rows = materialization.metadata.get("dagster/row_count")
        if rows is not None:
            lines.append(
                f"    {materialization.asset_key.to_user_string():<28} {rows.value:>8} rows"
            )
    return lines


def cmd_migrate(args: argparse.Namespace) -> int:
    _apply_sandbox_flags(args)
    from .instance import get_instance

    instance = get_instance()
    # Create the instance's storage here, before the worker processes open it: several
    # processes creating a fresh SQLite storage at once race on its schema.
    instance.get_runs(limit=1)
    instance.get_dynamic_partitions("deal_batches")
    with PartitionLoader(args.parallel) as loader:
        return _migrate(args, instance, loader)


def _migrate(args: argparse.Namespace, instance, loader: PartitionLoader) -> int:  # noqa: ANN001
    target = os.environ.get("AMOCRM_BASE_URL") or "the sandbox"
    print(f"migration: Pipedrive → amoCRM ({target}); DuckDB {settings.duckdb_path()}")
    print(
        f"Dagster instance: {instance.root_directory} (see the runs: uv run migration-pipeline ui)"
    )
    for stage, job_name in STAGES:
        started = time.monotonic()
        ops = (
            {"load_plan": {"config": {"sample_partitions": args.sample}}}
            if job_name == "plan"
            else None
        )
        result = _run(instance, job_name, ops=ops)
        print(
            f"[{stage}] {'ok' if result.success else 'FAILED'} in {time.monotonic() - started:.1f}s"
        )
        print("\n".join(_rows(result)))
        if not result.success:
            print("\n".join(_failure_lines(result)))
            print(f"migration stopped at {stage}; fix the cause and re-run (finished work is kept)")
            return 1
    keys = sorted(instance.get_dynamic_partitions("deal_batches"))
    if args.sample:
        keys = _sample_partitions(keys)
    failed = []
    totals: dict[str, int] = {}
    started = time.monotonic()
    for number, loaded in enumerate(loader.run(keys), start=1):
        print(f"[load {number}/{len(keys)}] {loaded.key} {'ok' if loaded.success else 'FAILED'}")
        for name, value in loaded.metadata.items():
            if name.split(" ", 1)[0] in KINDS and isinstance(value, int):
                totals[name] = totals.get(name, 0) + value
        if not loaded.success:
            failed.append(loaded.key)
            print("\n".join(loaded.failure))
    print(
        f"[load] {len(keys) - len(failed)} of {len(keys)} partitions loaded in {time.monotonic() - started:.1f}s"
    )
    for kind in KINDS:
        counts = {
            w: totals.get(f"{kind} {w}", 0)
            for w in ("created", "reconciled", "already there", "failed")
        }
        print(f"    {kind:<16} " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    verified = _verify(instance)
    if failed:
        print(
            f"failed partitions: {', '.join(failed)}. What loaded stays loaded; re-run "
            "`migration-pipeline migrate` or backfill the failed partitions of ledger/entities in the UI."
        )
        return 1
    if not verified:
        return 1
    print("migration finished")
    return 0


def _verify(instance) -> bool:  # noqa: ANN001
    """Read the load back, write the report and print its summary; True when it adds up."""
    from .db import connect
    from .verify.report import adds_up

    started = time.monotonic()
    result = _run(instance, "verify")
    print(f"[verify] {'ok' if result.success else 'FAILED'} in {time.monotonic() - started:.1f}s")
    if not result.success:
        print("\n".join(_failure_lines(result)))
        return False
    with connect(settings.duckdb_path(), read_only=True) as con:
        totals = con.execute("select * from report.migration order by entity").fetchall()
        problems = adds_up(con)
    columns = ("extracted", "migrated", "merged", "archived", "failed", "quarantined")
    print(f"    {'entity':<18}" + "".join(f"{c:>12}" for c in columns))
    for entity, *numbers, _ in totals:
        print(f"    {entity:<18}" + "".join(f"{n:>12}" for n in numbers))
    print(
        "\n".join(f"    PROBLEM: {p}" for p in problems)
        or "    every sum adds up; amoCRM holds what the plan says"
    )
    print(f"report: {settings.data_dir() / 'migration_report.md'} (and report.* in DuckDB)")
    return not problems


@dataclass(frozen=True)
class Loaded:
    """One load partition's run, as the parent process sees it."""

    key: str
    success: bool
    metadata: dict
    failure: list[str]


_worker_instance = None
"""A worker process's Dagster instance, made once when it starts (``_start_worker``): making
one costs about 50 ms, which would otherwise come before every partition's first request."""


def _start_worker() -> None:
    global _worker_instance
    from .definitions import defs  # noqa: F401 - importing Dagster and the project is the cost
    from .instance import get_instance

    _worker_instance = get_instance()


def _started() -> None:
    """A task for a new worker: it runs once ``_start_worker`` is done."""


def _load_one(key: str) -> Loaded:
    from .instance import get_instance

    result = _run(_worker_instance or get_instance(), "load", partition_key=key)
    return Loaded(key, result.success, _load_metadata(result), _failure_lines(result))


class PartitionLoader:
    """Runs the ``load`` job for partitions, ``parallel`` at a time, each in its own process
    (one Dagster run each, as a backfill from the UI would).

    Two at a time is the default, as the ``amocrm`` pool's limit in the instance's dagster.yaml:
    one partition's start (its Dagster run, reading its plan) and its last, partly filled
    batches overlap the other's requests, so the account's budget stays used. The limit stays
    one per account: every process takes its slots from the same limiter file, and the ledger's
    claims keep a contact two partitions share from being created twice.

    The worker processes start (and import Dagster, a few seconds) when the loader is made, so
    ``migrate`` makes it first and they are ready by the time extraction and cleansing are done.
    """

    def __init__(self, parallel: int = 2) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._warming: list[Future] = []
        if parallel > 1:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=parallel, mp_context=context, initializer=_start_worker
            )
            self._warming = [self._pool.submit(_started) for _ in range(parallel)]

    def __enter__(self) -> PartitionLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (partitions not started yet are not loaded)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def ready(self) -> None:
        """Wait until the worker processes have started (the load benchmark times from here)."""
        for future in self._warming:
            future.result()

    def run(self, keys: list[str]) -> Iterator[Loaded]:
        """Load ``keys``; yields each partition's outcome as it ends."""
        if self._pool is None:
            yield from map(_load_one, keys)
            return
        futures = [self._pool.submit(_load_one, key) for key in keys]
        yield from (future.result() for future in as_completed(futures))


def _sample_partitions(keys: list[str]) -> list[str]:
    from .db import connect

    with connect(settings.duckdb_path(), read_only=True) as con:
        sample = {
            row[0]
            for row in con.execute(
                "select partition_key from plan.partitions where sample"
            ).fetchall()
        }
    return [key for key in keys if key in sample]


def cmd_ui(args: argparse.Namespace) -> int:
    from .instance import ensure_dagster_home

    home = ensure_dagster_home()
    print(f"DAGSTER_HOME={home}")
    # The interpreter running us has dagster installed, whether or not its bin is on PATH.
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(settings.PROJECT_ROOT / "workspace.yaml"),
        "-p",
        str(args.port),
    ]
    return subprocess.call(command, cwd=settings.PROJECT_ROOT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="migration-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="run the whole migration through Dagster")
    migrate.add_argument("--data-dir", help="data directory (default: MIGRATION_DATA_DIR or data/)")
    migrate.add_argument("--scale", choices=SCALES, help="sandbox dataset size (default small)")
    migrate.add_argument("--seed", type=int, help="sandbox generator seed (default 1)")
    migrate.add_argument("--faults", help="sandbox fault spec, e.g. 429=0.05,lost=0.02,seed=7")
    migrate.add_argument("--from-dir", help="sandbox: serve this folder of <entity>.jsonl files")
    migrate.add_argument(
        "--sample",
        type=int,
        default=0,
        metavar="N",
        help="a test migration: plan as usual, then load only the first N partitions",
    )
    migrate.add_argument(
        "--parallel",
        type=int,
        default=2,
        metavar="N",
        help="load partitions N at a time, each in its own process, under one rate limit "
        "(default 2)",
    )
    migrate.set_defaults(func=cmd_migrate)
    ui = sub.add_parser("ui", help="open the Dagster UI on this project and instance")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
