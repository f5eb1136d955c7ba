"""The Dagster instance the command line and ``dagster dev`` share.

Runs started by ``migration-pipeline migrate`` are the runs the UI shows only if both use the
same ``DAGSTER_HOME``. We default it to ``<data dir>/dagster_home`` (absolute) and write a
``dagster.yaml`` there on first use: SQLite storage, no telemetry, and the ``amocrm`` pool that
bounds how many load partitions write to the account at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from . import settings

DAGSTER_YAML = """\
# Written by migration_pipeline.instance on first use; edit freely, it is not overwritten.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 2
  runs:
    max_concurrent_runs: 4
"""


def ensure_dagster_home() -> Path:
    """Set ``DAGSTER_HOME`` (if unset) to the project default and make sure it has a
    ``dagster.yaml``. Returns the absolute path."""
    home = settings.dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    return home


def get_instance() -> dg.DagsterInstance:
    """The persistent instance under ``DAGSTER_HOME`` (created on first use)."""
    ensure_dagster_home()
    return dg.DagsterInstance.get()
