"""Shared fixtures: a private sandbox world (data directory, DuckDB file, Dagster home) per test.

Everything the pipeline reads from the environment is pointed into ``tmp_path``, so tests
never touch ``data/`` and never see each other's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from migration_pipeline.sandbox import SandboxSettings, amocrm_fake, pipedrive_fake

SANDBOX_VARIABLES = (
    "MIGRATION_DATA_DIR",
    "MIGRATION_DUCKDB_PATH",
    "DAGSTER_HOME",
    "MIGRATION_SANDBOX_SCALE",
    "MIGRATION_SANDBOX_SEED",
    "MIGRATION_SANDBOX_FAULTS",
    "MIGRATION_SANDBOX_FROM_DIR",
    "MIGRATION_SANDBOX_AMOCRM_RPS",
    "MIGRATION_SANDBOX_PIPEDRIVE_BURST",
    "MIGRATION_SANDBOX_PIPEDRIVE_DAILY_TOKENS",
    "MIGRATION_SANDBOX_BAN_AFTER",
    "MIGRATION_SANDBOX_BAN_SECONDS",
    "MIGRATION_SANDBOX_CURRENCY",
    "PIPEDRIVE_BASE_URL",
    "PIPEDRIVE_API_TOKEN",
    "AMOCRM_BASE_URL",
    "AMOCRM_ACCESS_TOKEN",
)


@dataclass
class World:
    """One test's sandbox world; ``configure`` changes it through the environment."""

    data_dir: Path
    monkeypatch: pytest.MonkeyPatch

    def configure(self, **variables: object) -> SandboxSettings:
        for name, value in variables.items():
            self.monkeypatch.setenv(f"MIGRATION_SANDBOX_{name.upper()}", str(value))
        return self.settings

    @property
    def settings(self) -> SandboxSettings:
        return SandboxSettings.from_env()

    @property
    def duckdb(self) -> Path:
        return self.data_dir / "migration.duckdb"

    @property
    def pipedrive(self):  # noqa: ANN201
        return pipedrive_fake(self.settings)

    @property
    def amocrm(self):  # noqa: ANN201
        return amocrm_fake(self.settings)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A tiny, fast sandbox: limits high enough that tests never wait on them."""
    for name in SANDBOX_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MIGRATION_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    world = World(data_dir=data_dir, monkeypatch=monkeypatch)
    world.configure(scale="tiny", seed=3, pipedrive_burst=10_000, amocrm_rps=1_000, ban_after=0)
    return world


@pytest.fixture(scope="session")
def _set_up_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory after extract, cleanse and amoCRM setup on the tiny sandbox, made once
    per session; ``set_up_world`` copies it so each load test starts from there."""
    from migration_pipeline_tests.pipeline import run_stages

    root = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as patch:
        for name in SANDBOX_VARIABLES:
            patch.delenv(name, raising=False)
        world = World(data_dir=root / "data", monkeypatch=patch)
        patch.setenv("MIGRATION_DATA_DIR", str(world.data_dir))
        world.configure(scale="tiny", seed=3, pipedrive_burst=10_000, amocrm_rps=1_000, ban_after=0)
        import dagster as dg

        with dg.instance_for_test() as instance:
            run_stages(instance, ("extract_pipedrive", "cleanse", "amocrm_setup"))
    return world.data_dir


@pytest.fixture
def set_up_world(world: World, _set_up_template: Path) -> World:
    """``world`` with the tiny account already extracted, cleansed and mapped (not planned)."""
    import shutil

    shutil.copytree(_set_up_template, world.data_dir, dirs_exist_ok=True)
    return world
