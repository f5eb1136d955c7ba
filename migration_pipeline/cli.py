"""``migration-pipeline``: run the migration end to end, or open the Dagster UI on it.

``migrate`` runs every stage through Dagster in the project's instance (``DAGSTER_HOME``,
default ``<data dir>/dagster_home``), so the runs it starts are the runs ``ui`` shows. With no
``PIPEDRIVE_BASE_URL`` / ``AMOCRM_BASE_URL`` it migrates the embedded sandbox.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
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
    for number, key in enumerate(keys, start=1):
        result = _run(instance, "load", partition_key=key)
        print(f"[load {number}/{len(keys)}] {key} {'ok' if result.success else 'FAILED'}")
        for name, value in _load_metadata(result).items():
            if name.split(" ", 1)[0] in KINDS and isinstance(value, int):
                totals[name] = totals.get(name, 0) + value
        if not result.success:
            failed.append(key)
            print("\n".join(_failure_lines(result)))
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
