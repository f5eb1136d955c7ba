"""Selection, re-pointing and money on a hand-made account (``scenario.py``): every record
gets the decision its rule says, with the reason, under the defaults and another config."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from migration_pipeline.config import DEFAULT_CONFIG
from migration_pipeline.db import Warehouse
from migration_pipeline.defs.cleanse import checks
from migration_pipeline.defs.cleanse.assets import cleanse_assets
from migration_pipeline_tests.cleanse import scenario
from migration_pipeline_tests.cleanse.conftest import Cleansed, materialize_cleanse
from migration_pipeline_tests.cleanse.rawdata import load_raw


@pytest.fixture(scope="module")
def scenario_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_raw(tmp_path_factory.mktemp("scenario") / "extracted.duckdb", scenario.ENTITIES)


@pytest.fixture(scope="module")
def cleansed_scenario(scenario_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Cleansed:
    with pytest.MonkeyPatch.context() as env:
        return materialize_cleanse(scenario_raw, tmp_path_factory.mktemp("defaults"), env)


def decisions(db: Path) -> dict[tuple[str, str], tuple[str, str, str | None]]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "select entity, record_id, decision, reason, merged_into from clean.selection"
        ).fetchall()
    return {(e, r): (d, reason, merged) for e, r, d, reason, merged in rows}


def test_every_record_gets_the_decision_of_its_rule(cleansed_scenario: Cleansed):
    assert cleansed_scenario.result.success
    found = decisions(cleansed_scenario.db)
    assert set(found) == set(scenario.EXPECTED)
    for key, (decision, reason, merged_into) in scenario.EXPECTED.items():
        assert found[key][0] == decision, (key, found[key])
        assert reason in found[key][1], (key, found[key])
        assert found[key][2] == merged_into, (key, found[key])


def test_reference_date_defaults_to_the_newest_update(cleansed_scenario: Cleansed):
    with duckdb.connect(str(cleansed_scenario.db), read_only=True) as con:
        rules = con.execute(
            "select reference_date::VARCHAR, reference_date_source from clean.selection_rules"
        ).fetchall()
    assert rules == [("2026-10-01", "newest update_time in the data")]


def test_references_move_to_survivors_and_unkeepable_ones_say_why(cleansed_scenario: Cleansed):
    with duckdb.connect(str(cleansed_scenario.db), read_only=True) as con:
        deals = {
            row[0]: row[1:]
            for row in con.execute(
                "select id, person_id, source_person_id, org_id, problems from clean.deals"
            ).fetchall()
        }
        activity = con.execute(
            "select person_id, source_person_id from clean.activities where id = 1005"
        ).fetchall()
        person_11 = con.execute(
            "select status, survivor_id, org_id, source_org_id from clean.persons where id = 11"
        ).fetchall()
    assert deals[100][:3] == (10, 11, 1)  # person 11 → 10, organization 2 → 1
    assert deals[107][0] is None and deals[107][3] == ["person 999 not found"]
    assert deals[108][3] == ["stage 999 not found"]  # so the selection fails it
    assert deals[112][3] == ["owner 77 not found: the default amoCRM user owns the lead"]
    assert activity == [(10, 11)]
    assert person_11 == [("merged", 10, 1, 2)]


def test_money_is_converted_at_the_recorded_rate_and_rounded_half_away_from_zero(
    cleansed_scenario: Cleansed,
):
    with duckdb.connect(str(cleansed_scenario.db), read_only=True) as con:
        rows = {
            row[0]: row[1:]
            for row in con.execute(
                "select record_id, value, currency, rate::VARCHAR, rate_date::VARCHAR, "
                "rate_source, price, error from clean.amounts"
            ).fetchall()
        }
    assert rows["100"] == (
        1000.5,
        "USD",
        "80.5000000000",
        "2026-11-01",
        "sandbox defaults",
        80540,
        None,
    )  # fmt: skip  (1000.50 × 80.5 = 80540.25)
    assert rows["101"][-2:] == (3, None)  # 2.5 RUB → 3
    assert rows["lead-2"][-2:] == (  # -2.5 → -3, away from zero; no amoCRM budget is < 0
        -3,
        "negative value -2.5 RUB: an amoCRM budget cannot be negative; fix it in Pipedrive",
    )
    assert rows["105"][-2:] == (None, "unknown currency XYZ: add a rate to the config")
    assert rows["107"][-2:] == (None, None)  # no value: no price, no error


def test_archive_export_keeps_the_reason(cleansed_scenario: Cleansed):
    csv = cleansed_scenario.data_dir / "exports" / "archive" / "deals.csv"
    text = csv.read_text(encoding="utf-8")
    assert "unknown currency XYZ: add a rate to the config" in text
    assert "deleted in Pipedrive" in text
    assert ",open deal," not in text  # migrating deals are not in the archive


OTHER_POLICIES = """
[selection]
reference_date = 2030-01-01

[selection.deals]
won = { policy = "all" }
lost = { policy = "within", months = 12 }
archived = { policy = "all" }

[selection.persons]
policy = "with_contact"

[selection.organizations]
policy = "all"

[selection.activities]
done = { policy = "none" }

[selection.notes]
policy = "none"

[selection.mail_messages]
policy = "none"
"""


def test_other_policies(scenario_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cleansed = materialize_cleanse(scenario_raw, tmp_path, monkeypatch)  # defaults first…
    defaults = DEFAULT_CONFIG.read_text(encoding="utf-8")
    config = tmp_path / "migration.toml"  # the default rates, other selection rules
    config.write_text(defaults[: defaults.index("[selection]")] + OTHER_POLICIES, "utf-8")
    monkeypatch.setenv("MIGRATION_CONFIG", str(config))
    assert dg.materialize(  # …then the same file again under the other policies
        cleanse_assets,
        resources={"warehouse": Warehouse(path=str(cleansed.db))},
        instance=dg.DagsterInstance.ephemeral(),
    ).success
    found = decisions(cleansed.db)
    assert found[("deals", "102")][:2] == ("migrate", "won: policy all")
    assert found[("deals", "103")][0] == "archive"  # 2026-09-01 is > 12 months before 2030
    assert found[("deals", "106")][0] == "migrate"
    assert found[("persons", "13")][0] == "archive"  # no valid phone or e-mail
    assert found[("organizations", "7")][:2] == ("migrate", "organizations policy: all")
    assert found[("activities", "1001")][0] == "archive"
    assert found[("notes", "2000")][:2] == ("archive", "notes policy: none")
    assert found[("mail_messages", "4000")][0] == "archive"
    assert found[("deals", "105")][0] == "failed"


def test_blocking_checks_catch_a_merged_reference_and_a_lost_decision(
    cleansed_scenario: Cleansed, tmp_path: Path
):
    db = tmp_path / "broken.duckdb"
    shutil.copy(cleansed_scenario.db, db)
    with duckdb.connect(str(db)) as con:
        con.execute("update clean.deals set person_id = 11 where id = 100")  # 11 merged into 10
        con.execute("delete from clean.selection where entity = 'notes' and record_id = '2000'")
    warehouse = Warehouse(path=str(db))
    references = checks.no_merged_references(warehouse, "deals")
    accounted = checks.every_record_accounted_for(warehouse)
    assert not references.passed and references.metadata["bad person_id → persons"].value == 1
    assert not accounted.passed and accounted.metadata["notes unaccounted"].value == 1
