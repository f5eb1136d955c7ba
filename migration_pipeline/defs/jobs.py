"""Jobs the command line runs in order, and that the UI offers as well."""

from __future__ import annotations

import dagster as dg

EXTRACT_JOB = "extract_pipedrive"


@dg.definitions
def jobs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[
            dg.define_asset_job(
                EXTRACT_JOB,
                selection=dg.AssetSelection.groups("pipedrive_raw"),
                description="Extract every Pipedrive entity into DuckDB raw.* (the backup).",
            )
        ]
    )
