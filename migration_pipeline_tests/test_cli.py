"""``migration-pipeline migrate``: the README's first command, end to end on the sandbox."""

from __future__ import annotations

import re

import pytest

from migration_pipeline.cli import main
from migration_pipeline_tests.conftest import World


def test_migrate_runs_every_stage_and_a_second_run_creates_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--scale", "tiny", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    for stage in ("[extract] ok", "[cleanse] ok", "[setup] ok", "[plan] ok", "migration finished"):
        assert stage in first
    created = {kind: int(n) for kind, n in re.findall(r"^\s+(\w+)\s+(\d+) created", first, re.M)}
    assert created["lead"] > 0 and created["contact"] > 0 and created["task"] > 0
    assert world.amocrm.entity_counts()["leads"] == created["lead"]

    assert main(["migrate"]) == 0
    second = capsys.readouterr().out
    assert set(re.findall(r"^\s+\w+\s+(\d+) created", second, re.M)) == {"0"}
    assert world.amocrm.entity_counts()["leads"] == created["lead"]
