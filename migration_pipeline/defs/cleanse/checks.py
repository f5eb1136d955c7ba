"""Data invariants of the cleansed group, as asset check results. Each function queries the
DuckDB file the asset just wrote; the specs (which are blocking) live with the assets."""

from __future__ import annotations

import dagster as dg

from migration_pipeline.cleanse import dedup, selection
from migration_pipeline.db import Warehouse

NO_MERGED_REFERENCES = "no_merged_references"
EVERY_RECORD_ACCOUNTED_FOR = "every_record_accounted_for"


def no_merged_references_spec(table: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NO_MERGED_REFERENCES,
        asset=dg.AssetKey(["clean", table]),
        blocking=True,
        description=(
            "every person and organization reference in clean."
            f"{table} names an active record: none points at a merged-away, deleted or "
            "missing one"
        ),
    )


def no_merged_references(warehouse: Warehouse, table: str) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        counts = dedup.references_to_inactive(con, table)
    return dg.AssetCheckResult(
        check_name=NO_MERGED_REFERENCES,
        passed=not any(counts.values()),
        metadata={f"bad {name}": int(count) for name, count in counts.items()},
    )


def every_record_accounted_for_spec() -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        EVERY_RECORD_ACCOUNTED_FOR,
        asset=dg.AssetKey(["clean", "selection"]),
        blocking=True,
        description=(
            "every extracted record of every migrated entity has exactly one decision "
            "(migrate, archive, merged or failed) with a reason, and no decision names a "
            "record that was not extracted"
        ),
    )


def every_record_accounted_for(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        missing = selection.unaccounted(con)
    return dg.AssetCheckResult(
        check_name=EVERY_RECORD_ACCOUNTED_FOR,
        passed=not any(missing.values()),
        metadata={f"{entity} unaccounted": int(count) for entity, count in missing.items()},
    )
