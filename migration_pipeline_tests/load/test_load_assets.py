"""The load end to end: the project's jobs against the fake amoCRM (design §2 invariants)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from migration_pipeline_tests.conftest import World
from migration_pipeline_tests.pipeline import FAST, plan, run_job, run_stages

# Every test starts from the tiny account extracted, cleansed and mapped once per session.
pytestmark = pytest.mark.usefixtures("set_up_world")


def planned(world: World) -> dict[str, int]:
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        return {
            table: con.execute(f"select count(*) from plan.{table}").fetchall()[0][0]
            for table in ("leads", "contacts", "companies", "tasks", "notes")
        }


def assert_each_planned_entity_exists_once(world: World) -> None:
    counts = planned(world)
    fake = world.amocrm
    for entity in ("leads", "contacts", "companies"):
        per_id = fake.creations_per_pipedrive_id(entity)
        assert len(per_id) == counts[entity], entity
        assert set(per_id.values()) == {1}, f"duplicates among {entity}"
    existing = fake.entity_counts()
    assert existing["tasks"] == counts["tasks"]
    assert existing["notes"] == counts["notes"]


def load_until_done(
    instance: dg.DagsterInstance, keys: list[str], faults: str | None = None, attempts: int = 8
) -> int:
    """Run every partition, re-running the failed ones as a user would; returns runs made."""
    runs = 0
    pending = list(keys)
    for _ in range(attempts):
        failed = []
        for key in pending:
            runs += 1
            resources = {"amocrm": {**FAST, "sandbox_faults": faults} if faults else FAST}
            if not run_job(instance, "load", partition_key=key, resources=resources).success:
                failed.append(key)
        if not failed:
            return runs
        pending = failed
    raise AssertionError(f"partitions still failing after {attempts} rounds: {pending}")


def test_a_clean_load_creates_every_planned_entity_once_and_a_rerun_nothing(world: World) -> None:
    with dg.instance_for_test() as instance:
        keys = plan(instance, deals_per_partition=5)
        assert len(keys) > 2
        load_until_done(instance, keys, attempts=1)
        assert_each_planned_entity_exists_once(world)
        served = world.amocrm.requests_served()
        load_until_done(instance, keys, attempts=1)
        assert world.amocrm.requests_served() == served  # a re-run sends nothing
    assert_each_planned_entity_exists_once(world)


@pytest.mark.parametrize("seed", [1, 2])
def test_faults_and_reruns_never_duplicate(world: World, seed: int) -> None:
    faults = f"lost=0.15,5xx=0.1,timeout=0.05,429=0.05,seed={seed}"
    with dg.instance_for_test() as instance:
        keys = plan(instance, deals_per_partition=5)
        load_until_done(
            instance,
            keys,
            faults=f"amocrm.{faults.replace(',', ',amocrm.').replace('amocrm.seed', 'seed')}",
        )
    injected = world.amocrm.faults_injected()
    assert injected.get("lost", 0) > 0
    assert_each_planned_entity_exists_once(world)


def test_a_lead_amocrm_rejects_fails_its_deal_and_the_rest_loads(world: World) -> None:
    with dg.instance_for_test() as instance:
        keys = plan(instance, deals_per_partition=50)
        with duckdb.connect(str(world.duckdb)) as con:
            deal, payload = con.execute(
                "select source_key, payload from plan.leads order by source_key limit 1"
            ).fetchall()[0]
            broken = {**json.loads(payload), "price": 10**12}  # over amoCRM's budget range
            con.execute(
                "update plan.leads set payload = ? where source_key = ?", [json.dumps(broken), deal]
            )
        result = run_job(instance, "load", partition_key=keys[0], resources={"amocrm": FAST})
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.step_failure_data.user_failure_data.description
        assert f"deal {deal}: lead not created: amoCRM rejected it" in message
        assert "price" in message
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        in_partition = con.execute(
            "select count(*) from plan.leads where partition_key = ?", [keys[0]]
        ).fetchall()[0][0]
    assert len(world.amocrm.creations_per_pipedrive_id("leads")) == in_partition - 1


def test_a_contact_no_deal_uses_that_amocrm_rejects_fails_its_partition(
    world: World, tmp_path: Path
) -> None:
    """A failure with no deal to name (here a contact of a ``c`` partition) still fails the
    partition under its own name, so a re-run is due; the rest of the partition loads."""
    config = tmp_path / "migration.toml"
    config.write_text('[selection.persons]\npolicy = "all"\n', encoding="utf-8")
    world.monkeypatch.setenv("MIGRATION_CONFIG", str(config))
    with dg.instance_for_test() as instance:
        run_stages(instance, ("cleanse",))  # every person migrates: some need a ``c`` partition
        plan(instance, deals_per_partition=50)
        with duckdb.connect(str(world.duckdb)) as con:
            partition, contact, payload = con.execute(
                "select n.partition_key, c.source_key, c.payload from plan.contacts c "
                "join plan.needs n on n.kind = 'contact' and n.source_key = c.source_key "
                "where n.partition_key like 'c%' order by all limit 1"
            ).fetchall()[0]
            in_partition = con.execute(
                "select count(*) from plan.needs where kind = 'contact' and partition_key = ?",
                [partition],
            ).fetchall()[0][0]
            broken = {**json.loads(payload), "name": "x" * 300}  # over amoCRM's 255
            con.execute(
                "update plan.contacts set payload = ? where source_key = ?",
                [json.dumps(broken), contact],
            )
        result = run_job(instance, "load", partition_key=partition, resources={"amocrm": FAST})
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.step_failure_data.user_failure_data.description
        assert f"contact {contact}: not created: amoCRM rejected it" in message
        assert "TooLong" in message
    assert len(world.amocrm.creations_per_pipedrive_id("contacts")) == in_partition - 1


def _load_in_another_process(keys: list[str], environment: dict[str, str]) -> None:
    os.environ.update(environment)
    from migration_pipeline.instance import get_instance
    from migration_pipeline_tests.pipeline import run_job

    instance = get_instance()
    for key in keys:
        run_job(
            instance,
            "load",
            partition_key=key,
            ops={"ledger__entities": {"config": {"lease_seconds": 1.0}}},
        )


def test_two_processes_loading_at_once_stay_under_the_limit_and_share_contacts(
    world: World,
) -> None:
    world.configure(amocrm_rps=7)
    from migration_pipeline.instance import get_instance

    instance = get_instance()
    keys = plan(instance, deals_per_partition=4)
    environment = {k: v for k, v in os.environ.items() if k.startswith(("MIGRATION_", "DAGSTER_"))}
    started = time.time()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_load_in_another_process, args=(keys[i::2], environment))
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert world.amocrm.max_requests_per_second(since=started) <= 7
    load_until_done(instance, keys, attempts=2)  # whatever waited on the other process finishes
    assert_each_planned_entity_exists_once(world)


def test_a_run_killed_mid_partition_is_finished_by_a_rerun(world: World, tmp_path: Path) -> None:
    world.configure(faults="amocrm.latency=150ms")
    from migration_pipeline.instance import get_instance

    instance = get_instance()
    keys = plan(instance, deals_per_partition=50)
    environment = {k: v for k, v in os.environ.items() if k.startswith(("MIGRATION_", "DAGSTER_"))}
    worker = multiprocessing.get_context("spawn").Process(
        target=_load_in_another_process, args=(keys[:1], environment)
    )
    worker.start()
    deadline = time.monotonic() + 60
    while world.amocrm.requests_served() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.kill()  # SIGKILL: no cleanup, claims left behind
    worker.join()
    world.configure(faults="")
    time.sleep(1.1)  # the dead loader's lease runs out
    result = run_job(
        instance,
        "load",
        partition_key=keys[0],
        ops={"ledger__entities": {"config": {"lease_seconds": 1.0}}},
    )
    assert result.success
    load_until_done(instance, keys[1:], attempts=1)
    assert_each_planned_entity_exists_once(world)


def test_a_ban_stops_the_partition_with_a_clear_message(world: World) -> None:
    with dg.instance_for_test() as instance:
        keys = plan(instance)
        result = run_job(
            instance,
            "load",
            partition_key=keys[0],
            resources={"amocrm": {**FAST, "sandbox_faults": "amocrm.ban=1.0"}},
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "blocked the account" in str(
        failure.step_failure_data.error.cause or failure.step_failure_data.error
    )
    assert world.amocrm.entity_counts().get("leads", 0) == 0


def test_leads_inbox_leads_load_as_tagged_leads_with_their_activities(world: World) -> None:
    with dg.instance_for_test() as instance:
        keys = plan(instance)
        with duckdb.connect(str(world.duckdb), read_only=True) as con:
            migrating = con.execute(
                "select count(*) from clean.selection where entity = 'leads' and decision = 'migrate'"
            ).fetchall()[0][0]
            inbox = con.execute(
                "select source_key, partition_key, payload from plan.leads "
                "where source_key like 'lead:%'"
            ).fetchall()
            on_inbox = con.execute(
                "select count(*) from plan.tasks where entity_key like 'lead:%'"
            ).fetchall()[0][0]
            selected_on_inbox = con.execute(
                "select count(*) from clean.activities a join clean.selection s "
                "on s.entity = 'activities' and s.record_id = a.id::varchar "
                "where s.decision = 'migrate' and a.deal_id is null and a.lead_id is not null"
            ).fetchall()[0][0]
            first_stage = con.execute(
                "select m.amo_status_id from raw.stages s join raw.pipelines p on p.id = s.pipeline_id "
                "join map.statuses m on m.pipedrive_stage_id = s.id and m.outcome = 'open' "
                "order by p.order_nr, p.id, s.order_nr, s.id limit 1"
            ).fetchall()[0][0]
        assert migrating > 0 and len(inbox) == migrating
        assert {key for _, key, _ in inbox} <= {k for k in keys if k.startswith("l")}
        for _, _, payload in inbox:
            lead = json.loads(payload)
            assert lead["status_id"] == first_stage
            assert {"name": "Pipedrive leads inbox"} in lead["_embedded"]["tags"]
        load_until_done(instance, keys)
    found = world.amocrm.creations_per_pipedrive_id("leads")
    assert all(found.get(key) == 1 for key, _, _ in inbox)
    assert on_inbox == selected_on_inbox
    assert_each_planned_entity_exists_once(world)
