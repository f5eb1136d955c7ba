"""Fixtures for the cleansing tests: raw tables extracted from a generated sandbox account
(once per session: extraction is the slow part), and the cleansed group materialised on a
private copy of them."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from migration_pipeline.config import DEFAULT_CONFIG
from migration_pipeline.db import Warehouse
from migration_pipeline.defs.cleanse.assets import cleanse_assets
from migration_pipeline.extract.engine import extract
from migration_pipeline.extract.specs import SPECS
from migration_pipeline.resources import PipedriveResource
from migration_pipeline.sandbox.generator import generate
from migration_pipeline_tests.conftest import SANDBOX_VARIABLES

SCALE, SEED = "small", 7


@dataclass(frozen=True)
class Extracted:
    """A generated account extracted into raw tables, with the generator's truth."""

    raw_db: Path
    truth: dict


@pytest.fixture(scope="session")
def small_account(tmp_path_factory: pytest.TempPathFactory) -> Extracted:
    """The ``small`` sandbox account (seed 7: not the seed the rules were tuned on), extracted
    through the fake Pipedrive by the real extractor."""
    root = tmp_path_factory.mktemp("small_account")
    dataset = root / "dataset"
    generate(SCALE, SEED, dataset)
    with pytest.MonkeyPatch.context() as env:
        for name in SANDBOX_VARIABLES:
            env.delenv(name, raising=False)
        env.setenv("MIGRATION_DATA_DIR", str(root / "data"))
        env.setenv("MIGRATION_SANDBOX_FROM_DIR", str(dataset))
        env.setenv("MIGRATION_SANDBOX_PIPEDRIVE_BURST", "100000")
        env.setenv("MIGRATION_SANDBOX_BAN_AFTER", "0")
        raw_db = root / "extracted.duckdb"
        with PipedriveResource().client() as client:
            for spec in SPECS:
                extract(client, raw_db, spec, progress=lambda message: None)
    return Extracted(raw_db, json.loads((dataset / "truth.json").read_text()))


@dataclass(frozen=True)
class Cleansed:
    db: Path
    data_dir: Path
    result: dg.ExecuteInProcessResult


def materialize_cleanse(raw_db: Path, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Cleansed:
    """Copy ``raw_db`` into ``directory`` and materialise the whole cleansed group on it, with
    the packaged default config and ``directory/data`` as the data directory."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "migration.duckdb"
    shutil.copy(raw_db, db)
    monkeypatch.setenv("MIGRATION_DATA_DIR", str(directory / "data"))
    monkeypatch.setenv("MIGRATION_CONFIG", str(DEFAULT_CONFIG))
    result = dg.materialize(
        cleanse_assets,
        resources={"warehouse": Warehouse(path=str(db))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    return Cleansed(db, directory / "data", result)


@pytest.fixture(scope="module")
def cleansed_small(small_account: Extracted, tmp_path_factory: pytest.TempPathFactory) -> Cleansed:
    """The cleansed group materialised once on the small account, shared by a module."""
    with pytest.MonkeyPatch.context() as env:
        return materialize_cleanse(
            small_account.raw_db, tmp_path_factory.mktemp("cleansed_small"), env
        )
