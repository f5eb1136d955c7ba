"""Where the pipeline keeps its files, read from the environment at call time (never at import).

Everything generated lives under one data directory (``MIGRATION_DATA_DIR``, default ``data/``
beside ``pyproject.toml``): the DuckDB file, the sandbox's state, exports and the default
``DAGSTER_HOME``. A second data directory is a second, independent world.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data directory as an absolute path (created if missing)."""
    raw = os.environ.get("MIGRATION_DATA_DIR") or str(PROJECT_ROOT / "data")
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def duckdb_path() -> Path:
    """The DuckDB file every stage reads and writes (``MIGRATION_DUCKDB_PATH``)."""
    raw = os.environ.get("MIGRATION_DUCKDB_PATH")
    return Path(raw).expanduser().resolve() if raw else data_dir() / "migration.duckdb"


def dagster_home() -> Path:
    """``DAGSTER_HOME`` if set, else ``<data dir>/dagster_home`` (absolute, created)."""
    raw = os.environ.get("DAGSTER_HOME")
    path = Path(raw).expanduser().resolve() if raw else data_dir() / "dagster_home"
    path.mkdir(parents=True, exist_ok=True)
    return path
