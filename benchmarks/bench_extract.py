"""Extraction benchmark: the whole ``pipedrive_raw`` group against the sandbox at realistic limits.

    uv run python benchmarks/bench_extract.py [--scale seed] [--burst 80] [--workers 4]

Reports wall time, requests made ÷ the minimum needed (list pages at 500 per page plus one
call per deal whose counts say it has sub-resources), the Pipedrive token cost, 429s received,
and peak memory. Every table is also compared with the generated dataset: counts must be equal.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def minimum_requests(db: Path) -> int:
    """List pages at the maximum page size, plus one call per deal and sub-resource with a count."""
    from migration_pipeline.extract.specs import SPECS

    pages = 0
    with duckdb.connect(str(db), read_only=True) as con:
        for spec in SPECS:
            if spec.per_deal is not None:
                counts = con.execute(
                    f"select {spec.per_deal.count_column} from raw.deals "
                    f"where {spec.per_deal.count_column} > 0"
                ).fetchall()
                pages += sum(math.ceil(n / 500) for (n,) in counts)
                continue
            for endpoint in spec.endpoints:
                if endpoint.api == "flat":
                    pages += 1
                    continue
                n = con.execute(
                    f"select count(*) from raw.{spec.table} where source = ?", [endpoint.source]
                ).fetchall()[0][0]
                pages += max(1, math.ceil(n / 500))
    return pages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="seed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burst", type=int, default=80, help="Pipedrive requests per 2 s")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    os.environ.update(
        MIGRATION_DATA_DIR=str(work / "data"),
        MIGRATION_SANDBOX_SCALE=args.scale,
        MIGRATION_SANDBOX_SEED=str(args.seed),
        MIGRATION_SANDBOX_PIPEDRIVE_BURST=str(args.burst),
    )
    from migration_pipeline.defs.extract.assets import raw_assets
    from migration_pipeline.resources import PipedriveResource, Warehouse
    from migration_pipeline.sandbox import SandboxSettings, pipedrive_fake
    from migration_pipeline.sandbox.dataset import read_entity

    settings = SandboxSettings.from_env()
    started = time.monotonic()
    dataset = settings.dataset_dir()
    generated = time.monotonic() - started
    db = work / "data" / "migration.duckdb"

    started = time.monotonic()
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            raw_assets,
            instance=instance,
            resources={"pipedrive": PipedriveResource(), "warehouse": Warehouse(path=str(db))},
        )
    wall = time.monotonic() - started
    assert result.success

    made = rate_limited = tokens = 0
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        made += metadata["requests"].value
        rate_limited += metadata["rate_limited_429"].value
        tokens += metadata["token_cost"].value
    served = pipedrive_fake(settings).requests_served()
    needed = minimum_requests(db)

    files = {"mail_messages": "deal_mail_messages"}
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw' "
                "and table_name not like '\\_%' escape '\\' and table_name <> 'quarantine' order by 1"
            ).fetchall()
        ]
        mismatches = []
        for table in tables:
            rows = con.execute(f"select count(*) from raw.{table}").fetchall()[0][0]
            expected = len(read_entity(dataset, files.get(table, table)))
            if rows != expected:
                mismatches.append(f"{table}: {rows} extracted, {expected} in the dataset")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"## Extraction benchmark: scale `{args.scale}`, burst {args.burst} requests / 2 s\n")
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| dataset generation | {generated:.1f} s |")
    print(f"| wall time (20 assets, in-process) | {wall:.1f} s |")
    print(f"| requests made (client) / served (server) | {made} / {served} |")
    print(f"| minimum needed | {needed} |")
    print(f"| made ÷ minimum (goal ≤ 1.05) | {made / needed:.3f} |")
    print(
        f"| bound at the burst limit (minimum ÷ {args.burst / 2:g}/s) | {needed / (args.burst / 2):.1f} s |"
    )
    print(f"| Pipedrive token cost | {tokens} |")
    print(f"| 429s received (goal 0) | {rate_limited} |")
    print(f"| peak RSS | {peak_mib:.0f} MiB |")
    print(f"| tables equal to the dataset | {len(tables) - len(mismatches)} of {len(tables)} |")
    for line in mismatches:
        print(f"- MISMATCH {line}")


if __name__ == "__main__":
    main()
