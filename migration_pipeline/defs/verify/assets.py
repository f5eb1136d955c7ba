"""Group ``verify``: read the load back from amoCRM, and the report that accounts for every
extracted record (see :mod:`migration_pipeline.verify`).

``report/readback`` reads amoCRM (through the same rate-limited client as the load), so it
runs in the ``amocrm`` pool; ``report/migration`` is pure DuckDB and also writes the Markdown
file ``<data dir>/migration_report.md`` a customer can read. Its check fails when a sum does
not add up or the read-back found a difference.

No ``from __future__ import annotations`` here (Dagster checks the ``context`` annotation).
"""

import dagster as dg

from migration_pipeline import settings
from migration_pipeline.db import Warehouse, table_metadata
from migration_pipeline.resources import AmoCrmResource
from migration_pipeline.verify import report
from migration_pipeline.verify.readback import read_back

GROUP = "verify"
REPORT_FILE = "migration_report.md"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["report", "readback"],
            group_name=GROUP,
            kinds={"amocrm", "duckdb"},
            deps=[dg.AssetKey(["ledger", "entities"])],
            description="report.readback: per kind, records read back, not found, and differing.",
        ),
        dg.AssetSpec(
            ["report", "mismatches"],
            group_name=GROUP,
            kinds={"duckdb"},
            deps=[dg.AssetKey(["ledger", "entities"])],
            description="report.mismatches: every difference: kind, Pipedrive key, amoCRM id, "
            "field, expected (the plan) and actual (amoCRM).",
        ),
    ],
    pool="amocrm",
)
def readback(context: dg.AssetExecutionContext, amocrm: AmoCrmResource, warehouse: Warehouse):
    """Read back every lead, contact and company the ledger says was created (250 a page,
    within the account's rate limit) and compare it field by field with the plan."""
    with amocrm.client() as client:
        found = read_back(client, warehouse.file(), progress=context.log.info)
    with warehouse.connect() as con:
        report.write_readback(con, found)
        metadata = {t: table_metadata(con, f"report.{t}") for t in ("readback", "mismatches")}
    context.log.info(
        "read back %d records with %d requests: %d not found, %d differences",
        sum(found.checked.values()),
        found.requests,
        sum(found.missing.values()),
        len(found.mismatches),
    )
    yield dg.MaterializeResult(
        asset_key=["report", "readback"],
        metadata={**metadata["readback"], "requests": found.requests},
    )
    yield dg.MaterializeResult(asset_key=["report", "mismatches"], metadata=metadata["mismatches"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["report", "outcomes"],
            group_name=GROUP,
            kinds={"duckdb"},
            deps=[["clean", "selection"], ["ledger", "entities"]],
            description="report.outcomes: every extracted record with where it ended "
            "(migrated, merged, archived, failed, quarantined), its reason and amoCRM id.",
        ),
        dg.AssetSpec(
            ["report", "migration"],
            group_name=GROUP,
            kinds={"duckdb"},
            deps=[
                ["report", "outcomes"],
                ["report", "readback"],
                ["report", "mismatches"],
                ["report", "pre_migration"],
            ],
            description="report.migration: per entity type, extracted = migrated + merged + "
            "archived + failed + quarantined; the Markdown report; the file "
            f"<data dir>/{REPORT_FILE}.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "report_adds_up",
            asset=["report", "migration"],
            description="Every sum adds up, and the read-back found every record as planned.",
        )
    ],
)
def migration_report(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Where every extracted record ended, whether that adds up, what the read-back found,
    and what the load cost."""
    with warehouse.connect() as con:
        report.build(con)
        markdown = report.render(con)
        problems = report.adds_up(con)
        cost = report.load_cost(con)
        outcomes = table_metadata(con, "report.outcomes")
        migration = table_metadata(con, "report.migration")
    path = settings.data_dir() / REPORT_FILE
    path.write_text(markdown, encoding="utf-8")
    context.log.info("report written to %s", path)
    yield dg.MaterializeResult(asset_key=["report", "outcomes"], metadata=outcomes)
    yield dg.MaterializeResult(
        asset_key=["report", "migration"],
        metadata={
            **migration,
            "report": dg.MetadataValue.md(markdown),
            "file": dg.MetadataValue.path(str(path)),
            "requests": cost["requests"],
            "rate_limited_429": cost["rate_limited"],
            "load_seconds": round(float(cost["seconds"]), 1),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=["report", "migration"],
        check_name="report_adds_up",
        passed=not problems,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
    )
