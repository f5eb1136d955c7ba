"""Read-back and report: the project's jobs against the fake amoCRM after a real load."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest

from migration_pipeline.clients.amocrm import AmoCrmClient
from migration_pipeline.resources import AmoCrmResource
from migration_pipeline_tests.conftest import World
from migration_pipeline_tests.pipeline import FAST, plan, run_job

pytestmark = pytest.mark.usefixtures("set_up_world")


def load_all(instance: dg.DagsterInstance, keys: list[str]) -> list[str]:
    """Load every partition once; returns the ones that failed."""
    return [
        key
        for key in keys
        if not run_job(instance, "load", partition_key=key, resources={"amocrm": FAST}).success
    ]


def verify(instance: dg.DagsterInstance) -> tuple[bool, dict]:
    """Run the verify job; (check passed, the report's materialization metadata)."""
    result = run_job(instance, "verify", resources={"amocrm": FAST})
    assert result.success
    checks = result.get_asset_check_evaluations()
    (check,) = [c for c in checks if c.check_name == "report_adds_up"]
    (report,) = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key.path == ["report", "migration"]
    ]
    return check.passed, report.metadata


def table(world: World, sql: str) -> list[tuple]:
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_clean_migration_reads_back_as_planned_and_adds_up(world: World) -> None:
    with dg.instance_for_test() as instance:
        assert load_all(instance, plan(instance)) == []
        passed, metadata = verify(instance)
    assert passed
    assert table(world, "select count(*) from report.mismatches") == [(0,)]
    checked = dict(table(world, "select kind, checked from report.readback"))
    planned = dict(
        table(
            world,
            "select 'lead', count(*) from plan.leads union all select 'contact', count(*) "
            "from plan.contacts union all select 'company', count(*) from plan.companies",
        )
    )
    assert checked == planned
    assert table(world, "select count(*) from report.migration where not adds_up") == [(0,)]
    # Every extracted record is in the outcomes exactly once.
    extracted = table(world, "select sum(extracted) from report.migration")[0][0]
    assert table(world, "select count(*) from report.outcomes")[0][0] == extracted
    migrated = table(world, "select sum(migrated) from report.migration")[0][0]
    assert migrated > 0
    text = (world.data_dir / "migration_report.md").read_text(encoding="utf-8")
    assert "All sums add up" in text
    assert metadata["report"].value == text
    assert metadata["requests"].value > 0


def test_a_record_changed_in_amocrm_is_a_mismatch_and_fails_the_check(world: World) -> None:
    with dg.instance_for_test() as instance:
        assert load_all(instance, plan(instance)) == []
        key, amo_id, payload = table(
            world,
            "select p.source_key, l.amo_id, p.payload from plan.leads p join ledger.entities l "
            "on l.kind = 'lead' and l.source_key = p.source_key order by 1 limit 1",
        )[0]
        # Someone edits the lead in amoCRM after the load.
        resource = AmoCrmResource(**FAST)
        with resource.client() as client:
            assert isinstance(client, AmoCrmClient)
            client.update("leads", [{"id": amo_id, "price": json.loads(payload)["price"] + 1}])
        passed, metadata = verify(instance)
    assert not passed
    rows = table(world, "select source_key, field, expected, actual from report.mismatches")
    price = json.loads(payload)["price"]
    assert rows == [(key, "price", str(price), str(price + 1))]
    assert "differ from the plan" in metadata["report"].value


def test_a_rejected_lead_is_failed_with_amocrms_reason_and_the_sums_still_add_up(
    world: World,
) -> None:
    with dg.instance_for_test() as instance:
        keys = plan(instance)
        deal = table(world, "select min(source_key) from plan.leads where source_key not like 'l%'")
        (deal,) = deal[0]
        with duckdb.connect(str(world.duckdb)) as con:
            (payload,) = con.execute(
                "select payload from plan.leads where source_key = ?", [deal]
            ).fetchall()[0]
            broken = {**json.loads(payload), "price": 10**12}
            con.execute(
                "update plan.leads set payload = ? where source_key = ?", [json.dumps(broken), deal]
            )
        assert load_all(instance, keys) != []
        passed, _ = verify(instance)
    assert passed  # everything that loaded reads back as planned; the failure is accounted for
    outcome, reason = table(
        world,
        f"select outcome, reason from report.outcomes where entity = 'deals' and record_id = '{deal}'",
    )[0]
    assert outcome == "failed"
    assert "price" in reason
    failed = table(world, "select failed from report.migration where entity = 'deals'")[0][0]
    assert failed == 1
    assert table(world, "select count(*) from report.migration where not adds_up") == [(0,)]
