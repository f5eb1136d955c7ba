"""Jobs the command line runs in order, and that the UI offers as well."""

from __future__ import annotations

import dagster as dg

from migration_pipeline.defs.load.assets import PLAN_TABLES, deal_batches


@dg.definitions
def jobs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[
            dg.define_asset_job(
                "extract_pipedrive",
                selection=dg.AssetSelection.groups("pipedrive_raw"),
                description="Extract every Pipedrive entity into DuckDB raw.* (the backup).",
            ),
            dg.define_asset_job(
                "cleanse",
                selection=dg.AssetSelection.groups("cleansed"),
                description="Cleanse the extracted data: contacts, duplicates, money, selection, report.",
                # One process, steps in order: every step writes the one DuckDB file, so steps
                # in parallel processes would only queue on its lock; the heavy steps use the
                # cores themselves.
                executor_def=dg.in_process_executor,
            ),
            dg.define_asset_job(
                "amocrm_setup",
                selection=dg.AssetSelection.groups("amocrm_setup"),
                description="Read the amoCRM account, create what the migration needs there and "
                "write the mappings (map.*); blocking checks stop here if anything is left unmapped.",
            ),
            dg.define_asset_job(
                "plan",
                selection=dg.AssetSelection.keys(*[["plan", t] for t in PLAN_TABLES]),
                description="Plan the load: payloads and partitions (registers new partitions).",
            ),
            dg.define_asset_job(
                "load",
                selection=dg.AssetSelection.keys(["ledger", "entities"]),
                partitions_def=deal_batches,
                description="Load one partition of deals into amoCRM, exactly once.",
            ),
            dg.define_asset_job(
                "verify",
                selection=dg.AssetSelection.groups("verify"),
                description="Read the load back from amoCRM and write the report that accounts "
                "for every extracted record.",
            ),
        ]
    )
