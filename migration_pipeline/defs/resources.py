"""Bind the resources. Tokens come only from the environment (``dg.EnvVar``), bound only when
set: an ``EnvVar`` on an unset variable fails every run at start, and the sandbox needs none."""

from __future__ import annotations

import os

import dagster as dg

from migration_pipeline.resources import AmoCrmResource, PipedriveResource, Warehouse


def _env(name: str) -> dg.EnvVar | None:
    return dg.EnvVar(name) if os.environ.get(name) else None


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "pipedrive": PipedriveResource(
                base_url=_env("PIPEDRIVE_BASE_URL"), api_token=_env("PIPEDRIVE_API_TOKEN")
            ),
            "amocrm": AmoCrmResource(
                base_url=_env("AMOCRM_BASE_URL"), access_token=_env("AMOCRM_ACCESS_TOKEN")
            ),
            "warehouse": Warehouse(path=_env("MIGRATION_DUCKDB_PATH")),
        }
    )
