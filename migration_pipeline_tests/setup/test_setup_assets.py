"""Group ``amocrm_setup`` materialised with ``dg.materialize`` against the fake amoCRM.

The raw tables come from the tiny sandbox (scale tiny, seed 3, the account every ``world``
serves), extracted once per module and copied into each test's DuckDB file. Its amoCRM account
starts with users for most Pipedrive users (not 21536704, not the inactive 21536705), one
pipeline "Воронка", PHONE/EMAIL contact fields and the loss reasons "Дорого" and
"Выбрали конкурента".
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from migration_pipeline.config import DEFAULT_CONFIG
from migration_pipeline.defs.extract.assets import raw_assets
from migration_pipeline.defs.setup.assets import (
    map_fields,
    map_loss_reasons,
    map_pipelines,
    setup_assets,
)
from migration_pipeline.defs.setup.checks import setup_checks
from migration_pipeline.resources import AmoCrmResource, PipedriveResource, Warehouse
from migration_pipeline_tests.conftest import SANDBOX_VARIABLES, World

RAW_TABLES = [
    "users",
    "pipelines",
    "stages",
    "deals",
    "deal_fields",
    "person_fields",
    "organization_fields",
    "activity_types",
]
ENTITIES = ("leads", "contacts", "companies")
PIPEDRIVE_PIPELINES = {1: "Продажи", 2: "Партнёры", 3: "Enterprise"}


@pytest.fixture(scope="module")
def raw_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A DuckDB file holding the raw tables the setup reads, extracted from the sandbox."""
    root = tmp_path_factory.mktemp("raw")
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in SANDBOX_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("MIGRATION_DATA_DIR", str(root / "data"))
        world = World(data_dir=root / "data", monkeypatch=monkeypatch)
        world.configure(scale="tiny", seed=3, pipedrive_burst=10_000, amocrm_rps=1_000, ban_after=0)
        result = dg.materialize(
            [asset for asset in raw_assets if asset.key.path[1] in RAW_TABLES],
            instance=dg.DagsterInstance.ephemeral(),
            resources={
                "pipedrive": PipedriveResource(retry_backoff_seconds=0.01),
                "warehouse": Warehouse(path=str(world.duckdb)),
            },
        )
        assert result.success
        yield world.duckdb


@pytest.fixture
def setup_world(world: World, raw_copy: Path) -> World:
    """A fresh sandbox world whose DuckDB holds the raw tables; config: the packaged defaults."""
    world.data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(raw_copy, world.duckdb)
    configure(world, "")
    return world


def configure(world: World, mapping_toml: str) -> None:
    """The packaged defaults plus ``mapping_toml`` (a ``[mapping]`` section) as the config."""
    path = world.data_dir / "migration.toml"
    path.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8") + "\n" + mapping_toml)
    world.monkeypatch.setenv("MIGRATION_CONFIG", str(path))


def materialize_setup(
    world: World,
    *,
    assets: list[Any] | None = None,
    amocrm: AmoCrmResource | None = None,
    **options: Any,
) -> dg.ExecuteInProcessResult:
    """The group with its checks (or ``assets``) against the world's fake amoCRM, in an
    ephemeral (in-memory) Dagster instance: nothing here needs run history."""
    return dg.materialize(
        assets if assets is not None else [*setup_assets, *setup_checks],
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "pipedrive": PipedriveResource(),
            "amocrm": amocrm or AmoCrmResource(retry_backoff_seconds=0.01),
            "warehouse": Warehouse(path=str(world.duckdb)),
        },
        raise_on_error=False,
        **options,
    )


def rows(world: World, table: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        cursor = con.execute(f"select * from map.{table}")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def account_state() -> dict[str, Any]:
    """What the fake account holds, read through the client (lists: duplicates would show)."""
    with AmoCrmResource().client() as client:
        return {
            "pipelines": client.pipelines(),
            "loss_reasons": client.loss_reasons(),
            "fields": {entity: client.custom_fields(entity) for entity in ENTITIES},
        }


def named(items: Iterable[Any], name: str) -> Any:
    """The one item called ``name``."""
    (found,) = [item for item in items if item.name == name]
    return found


def counts(state: dict[str, Any]) -> dict[str, int]:
    return {
        "pipelines": len(state["pipelines"]),
        "statuses": sum(len(p.statuses) for p in state["pipelines"]),
        "loss_reasons": len(state["loss_reasons"]),
        **{entity: len(fields) for entity, fields in state["fields"].items()},
    }


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def failures(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        event.step_failure_data.error.message
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error
    )


def stage_names(world: World) -> dict[int, list[str]]:
    """Pipedrive pipeline id → its live stage names in ``order_nr``."""
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        found = con.execute(
            "select pipeline_id, name from raw.stages where not is_deleted order by pipeline_id, order_nr"
        ).fetchall()
    names: dict[int, list[str]] = {}
    for pipeline_id, name in found:
        names.setdefault(pipeline_id, []).append(name)
    return names


def test_setup_maps_by_name_creates_what_is_missing_and_nothing_twice(setup_world: World) -> None:
    before = counts(account_state())
    assert before["pipelines"] == 1 and before["loss_reasons"] == 2

    first = materialize_setup(setup_world)
    assert first.success, failures(first)
    assert all(checks_of(first).values()) and len(checks_of(first)) == 7
    state = account_state()
    after_first = counts(state)

    # users: by e-mail (case-insensitively: 21536702's is upper case), the rest to the default
    users = {r["pipedrive_user_id"]: r for r in rows(setup_world, "users")}
    account = rows(setup_world, "account")[0]
    assert account["currency"] == "RUB" and account["default_user_id"] == account["current_user_id"]
    assert {i: r["matched_by"] for i, r in users.items()} == {
        21536701: "email",
        21536702: "email",
        21536703: "email",
        21536704: "default",
        21536705: "default",
    }
    assert users[21536702]["pipedrive_email"] == "GRIGORIY.SHAROV@SEVERNYVETER.RU"
    assert users[21536702]["amo_email"].casefold() == "grigoriy.sharov@severnyveter.ru"
    assert {users[i]["amo_user_id"] for i in (21536704, 21536705)} == {account["default_user_id"]}
    assert users[21536704]["note"] == "no amoCRM user with this e-mail"
    metadata = materialization_metadata(first, "users")
    assert metadata["defaulted"] == 2
    assert "lyubov.vishnyakova@severnyveter.ru" in metadata["defaulted_users"]

    # pipelines: all three created, their statuses in the stages' order
    pipelines = {r["pipedrive_pipeline_id"]: r for r in rows(setup_world, "pipelines")}
    assert {i: r["pipedrive_name"] for i, r in pipelines.items()} == PIPEDRIVE_PIPELINES
    assert all(r["created"] for r in pipelines.values())
    assert after_first["pipelines"] == before["pipelines"] + 3
    for pipeline_id, names in stage_names(setup_world).items():
        amo = named(state["pipelines"], PIPEDRIVE_PIPELINES[pipeline_id])
        assert amo.id == pipelines[pipeline_id]["amo_pipeline_id"]
        assert [s.name for s in amo.statuses if s.id not in (142, 143)] == names

    # statuses: one per live stage, won → 142 and lost → 143 in every pipeline
    statuses = rows(setup_world, "statuses")
    closed = {
        (r["pipedrive_pipeline_id"], r["outcome"]): r["amo_status_id"]
        for r in statuses
        if r["outcome"] != "open"
    }
    assert closed == {
        (p, o): {"won": 142, "lost": 143}[o] for p in PIPEDRIVE_PIPELINES for o in ("won", "lost")
    }
    assert all(r["pipedrive_stage_id"] is None for r in statuses if r["outcome"] != "open")
    opened = [r for r in statuses if r["outcome"] == "open"]
    assert len(opened) == sum(len(n) for n in stage_names(setup_world).values())
    by_id = {s.id: s for p in state["pipelines"] for s in p.statuses}
    assert all(by_id[r["amo_status_id"]].name == r["pipedrive_stage_name"] for r in opened)

    # loss reasons: the two the account had are reused, the other three created
    reasons = {r["lost_reason"]: r for r in rows(setup_world, "loss_reasons")}
    assert set(reasons) == {
        "Дорого",
        "Выбрали конкурента",
        "Проект отложен",
        "Нет бюджета",
        "Не отвечает",
    }
    assert {t for t, r in reasons.items() if r["created"]} == {
        "Проект отложен",
        "Нет бюджета",
        "Не отвечает",
    }
    assert all(
        named(state["loss_reasons"], t).id == r["amo_loss_reason_id"] for t, r in reasons.items()
    )

    # fields: the migration's own on every entity, and the custom ones with their enums
    fields = rows(setup_world, "fields")
    own = {(r["entity"], r["purpose"]) for r in fields if r["purpose"] != "custom"}
    assert own == {(e, "pipedrive_id") for e in ENTITIES} | {
        ("leads", p) for p in ("original_amount", "original_currency", "exchange_rate", "rate_date")
    } | {("contacts", "merged_ids"), ("companies", "merged_ids")}
    assert all(r["created"] for r in fields)
    for row in fields:
        amo = named(state["fields"][row["entity"]], row["amo_field_name"])
        assert (amo.id, amo.type) == (row["amo_field_id"], row["amo_field_type"])
    assert_enum_maps_follow_labels(setup_world, fields, state)

    # task types: meeting and lunch → MEETING, the rest → FOLLOW_UP (the fake has no others)
    task_types = {
        r["pipedrive_type"]: r["amo_task_type_id"] for r in rows(setup_world, "task_types")
    }
    assert task_types == {
        "call": 1,
        "deadline": 1,
        "demo": 1,
        "email": 1,
        "lunch": 2,
        "meeting": 2,
        "task": 1,
    }

    # a second run reads the account first and matches everything by name
    tables = {t: rows(setup_world, t) for t in ("pipelines", "statuses", "loss_reasons", "fields")}
    second = materialize_setup(setup_world, assets=setup_assets)
    assert second.success, failures(second)
    assert counts(account_state()) == after_first
    for table, earlier in tables.items():
        again = rows(setup_world, table)
        assert not any(r["created"] for r in again), table
        assert [{**r, "created": None} for r in again] == [{**r, "created": None} for r in earlier]
    created = {
        key: value
        for table in ("pipelines", "statuses", "loss_reasons", "fields")
        for key, value in materialization_metadata(second, table).items()
        if key.endswith("_created")
    }
    assert created == {
        "pipelines_created": 0,
        "statuses_created": 0,
        "loss_reasons_created": 0,
        "fields_created": 0,
    }


def materialization_metadata(result: dg.ExecuteInProcessResult, table: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == dg.AssetKey(["map", table]):
            return {name: value.value for name, value in materialization.metadata.items()}
    raise AssertionError(f"map.{table} was not materialised")


def assert_enum_maps_follow_labels(world: World, fields: list[dict], state: dict[str, Any]) -> None:
    """Each Pipedrive option id maps to the amoCRM enum carrying the option's label."""
    sources = {
        "leads": "deal_fields",
        "contacts": "person_fields",
        "companies": "organization_fields",
    }
    enum_rows = [r for r in fields if r["enum_map"] is not None]
    assert {r["pipedrive_type"] for r in enum_rows} == {"enum", "set"}
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        for row in enum_rows:
            ((options,),) = con.execute(
                f"select options from raw.{sources[row['entity']]} where key = ?",
                [row["pipedrive_key"]],
            ).fetchall()
            labels = {str(o["id"]): o["label"] for o in json.loads(options)}
            amo = named(state["fields"][row["entity"]], row["amo_field_name"])
            assert amo.type == {"enum": "select", "set": "multiselect"}[row["pipedrive_type"]]
            values = {enum.id: enum.value for enum in amo.enums}
            enum_map = json.loads(row["enum_map"])
            assert set(enum_map) == set(labels)
            assert {option: values[enum] for option, enum in enum_map.items()} == labels


def test_overrides_default_user_and_what_the_account_already_has(setup_world: World) -> None:
    with AmoCrmResource().client() as client:
        client.create_custom_fields(
            "leads",
            [
                {"type": "numeric", "name": "Скидка, %"},  # fits a Pipedrive double: reused
                {"type": "numeric", "name": "Источник"},  # cannot hold varchar values
                {"type": "select", "name": "Тип клиента", "enums": [{"value": "Новый"}]},
            ],
        )
        voronka = next(p for p in client.pipelines() if p.name == "Воронка")
    configure(
        setup_world,
        """
        [mapping]
        default_user_email = "Ratmir.Trofimov@severnyveter.ru"
        user_overrides = { "lyubov.vishnyakova@severnyveter.ru" = "JAIME.MILLER@severnyveter.ru" }
        pipeline_overrides = { "продажи" = "Воронка" }
        """,
    )
    result = materialize_setup(setup_world)
    assert result.success, failures(result)
    state = account_state()

    users = {r["pipedrive_user_id"]: r for r in rows(setup_world, "users")}
    ratmir, jaime = users[21536701]["amo_user_id"], users[21536703]["amo_user_id"]
    assert rows(setup_world, "account")[0]["default_user_id"] == ratmir
    assert (users[21536704]["amo_user_id"], users[21536704]["matched_by"]) == (jaime, "override")
    assert (users[21536705]["amo_user_id"], users[21536705]["matched_by"]) == (ratmir, "default")

    # "Продажи" goes into the existing "Воронка": its "Переговоры" is reused, the rest appended
    pipelines = {r["pipedrive_pipeline_id"]: r for r in rows(setup_world, "pipelines")}
    assert pipelines[1]["amo_pipeline_id"] == voronka.id
    assert (pipelines[1]["created"], pipelines[1]["matched_by"]) == (False, "override")
    assert pipelines[2]["created"] and pipelines[3]["created"]
    assert "Продажи" not in {p.name for p in state["pipelines"]}
    seeded = [s.name for s in voronka.statuses if s.id not in (142, 143)]
    amo = [s.name for s in named(state["pipelines"], "Воронка").statuses if s.id not in (142, 143)]
    appended = [n for n in stage_names(setup_world)[1] if n != "Переговоры"]
    assert amo == seeded + appended
    sales = {
        r["pipedrive_stage_name"]: r
        for r in rows(setup_world, "statuses")
        if r["pipedrive_pipeline_id"] == 1
    }
    assert sales["Переговоры"]["amo_status_id"] in {s.id for s in voronka.statuses}
    assert not sales["Переговоры"]["created"] and all(sales[n]["created"] for n in appended)

    fields = {r["pipedrive_name"]: r for r in rows(setup_world, "fields") if r["entity"] == "leads"}
    assert (fields["Скидка, %"]["amo_field_name"], fields["Скидка, %"]["created"]) == (
        "Скидка, %",
        False,
    )
    assert fields["Источник"]["amo_field_name"] == "Источник (Pipedrive)"
    assert fields["Источник"]["amo_field_type"] == "text"
    assert fields["Тип клиента"]["amo_field_name"] == "Тип клиента (Pipedrive)"
    assert len(json.loads(fields["Тип клиента"]["enum_map"])) == 4
    assert_enum_maps_follow_labels(setup_world, list(rows(setup_world, "fields")), state)


def test_create_missing_false_fails_before_anything_is_sent(setup_world: World) -> None:
    configure(setup_world, "[mapping]\ncreate_missing = false\n")
    before = counts(account_state())
    result = materialize_setup(setup_world)
    assert not result.success
    message = failures(result)
    for missing in (
        "pipeline 'Продажи'",
        "pipeline 'Enterprise'",
        "'Нет бюджета'",
        "leads: 'Pipedrive ID' (text)",
        "contacts: 'Роль в закупке' (select)",
    ):
        assert missing in message
    assert "create_missing is false" in message and "Nothing was sent" in message
    assert counts(account_state()) == before
    # what needs nothing created still maps
    assert {r["pipedrive_type"] for r in rows(setup_world, "task_types")} >= {"call", "meeting"}


@dg.asset(key=["plan", "probe"], deps=[dg.AssetKey(["map", "statuses"])])
def plan_probe() -> None:
    """Stands for the load plan: downstream of the mapping."""


def test_blocking_checks_fail_when_something_is_unmapped(setup_world: World) -> None:
    assert materialize_setup(setup_world, assets=setup_assets).success
    # Pipedrive changed after the setup ran: a new lost reason and a new user
    with duckdb.connect(str(setup_world.duckdb)) as con:
        con.execute(
            "update raw.deals set lost_reason = 'Передумали' where id = (select min(id) from raw.deals where status = 'lost')"
        )
        con.execute(
            "insert into raw.users (id, name, email) values (99, 'New', 'new@severnyveter.ru')"
        )
    checks_only = materialize_setup(setup_world, selection=dg.AssetSelection.checks(*setup_checks))
    assert not checks_only.success
    evaluations = {c.check_name: c for c in checks_only.get_asset_check_evaluations()}
    assert {name for name, c in evaluations.items() if not c.passed} == {
        "every_lost_reason_mapped",
        "every_user_mapped",
    }
    assert (
        "'Передумали' is not mapped"
        in evaluations["every_lost_reason_mapped"].metadata["details"].value
    )
    assert "Pipedrive user 99" in evaluations["every_user_mapped"].metadata["details"].value

    # a live deal in a stage Pipedrive does not list has no place in amoCRM: the cleanse fails
    # it (clean.deals.placement_error), and it does not block the setup of every other deal
    with duckdb.connect(str(setup_world.duckdb)) as con:
        con.execute(
            "update raw.deals set stage_id = 999 where id = (select min(id) from raw.deals where status = 'open')"
        )
    result = materialize_setup(setup_world, assets=[*setup_assets, *setup_checks, plan_probe])
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    with duckdb.connect(str(setup_world.duckdb), read_only=True) as con:
        assert con.execute(
            "select count(*) from map.statuses where pipedrive_stage_id = 999"
        ).fetchall() == [(0,)]

    # a stage Pipedrive lists but the mapping does not know (added after the setup ran) blocks
    # the plan: it is the mapping that is incomplete, not the deal
    with duckdb.connect(str(setup_world.duckdb)) as con:
        con.execute(
            "insert into raw.stages (id, name, pipeline_id, order_nr) "
            "select 998, 'Новый этап', pipeline_id, 99 from raw.deals where stage_id = 999"
        )
        con.execute("update raw.deals set stage_id = 998 where stage_id = 999")
    result = materialize_setup(setup_world, selection=dg.AssetSelection.checks(*setup_checks))
    assert not result.success
    evaluations = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert [name for name, c in evaluations.items() if not c.passed] == ["every_deal_status_mapped"]
    details = evaluations["every_deal_status_mapped"].metadata["details"].value
    assert "stage 998, outcome open have no status mapping" in details


def test_lost_answers_are_found_by_name_not_created_again(setup_world: World) -> None:
    # half the creates commit but their answer is lost: the step retries, re-reads, matches
    faults = AmoCrmResource(sandbox_faults="lost=0.5,seed=4", retry_backoff_seconds=0.01)
    writers = [map_pipelines, map_loss_reasons, map_fields]
    result = materialize_setup(setup_world, assets=writers, amocrm=faults)
    assert result.success, failures(result)
    assert setup_world.amocrm.faults_injected().get("lost", 0) > 0
    assert any(event.event_type_value == "STEP_UP_FOR_RETRY" for event in result.all_events)
    state = account_state()
    assert sorted(p.name for p in state["pipelines"]) == sorted(
        ["Воронка", *PIPEDRIVE_PIPELINES.values()]
    )
    assert len(state["loss_reasons"]) == 5
    for entity, fields in state["fields"].items():
        names = [f.name for f in fields]
        assert len(names) == len(set(names)), entity
