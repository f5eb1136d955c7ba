"""The mapping rules as plain functions, on hand-made accounts (no sandbox, no Dagster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_pipeline.clients.amocrm import CustomField, FieldEnum, Pipeline, Status, User
from migration_pipeline.config import ConfigError, load_config
from migration_pipeline.setup import mapping
from migration_pipeline.setup.config import MappingConfig
from migration_pipeline.setup.mapping import (
    MappingError,
    SourceActivityType,
    SourceField,
    SourcePipeline,
    SourceStage,
    SourceUser,
    WantedField,
)


def user(id: int, email: str | None, *, active: bool = True) -> User:
    return User(id, f"user {id}", email, is_admin=False, is_active=active, raw={})


def field(id: int, name: str, type_: str, enums: tuple[str, ...] = ()) -> CustomField:
    choices = tuple(FieldEnum(id * 100 + n, value, None, n) for n, value in enumerate(enums))
    return CustomField(id, name, type_, None, "leads", choices, raw={})


def pipeline(id: int, name: str, *statuses: tuple[int, str, int]) -> Pipeline:
    own = tuple(Status(s, id, n, sort, 0, True) for s, n, sort in statuses)
    closed = (Status(142, id, "won", 10000, 0, False), Status(143, id, "lost", 11000, 0, False))
    return Pipeline(id, name, 1, False, False, own + closed, raw={})


# -- config -------------------------------------------------------------------------------------


def test_config_normalises_e_mails_and_names() -> None:
    config = MappingConfig(
        default_user_email=" Boss@Acme.RU ",
        user_overrides={"Old@Acme.com ": "NEW@acme.ru"},
        pipeline_overrides={"  Sales ": " Воронка  продаж "},
    )
    assert config.default_user_email == "boss@acme.ru"
    assert config.user_overrides == {"old@acme.com": "new@acme.ru"}
    assert config.pipeline_overrides == {"sales": "Воронка продаж"}
    assert config.create_missing is True


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[mapping]\ncreate_mising = false\n", "mapping.create_mising: unknown key"),
        ('[mapping]\ndefault_user_email = "nobody"\n', "'nobody' is not an e-mail address"),
        (
            '[mapping.user_overrides]\n"A@x.ru" = "b@x.ru"\n"a@x.ru " = "c@x.ru"\n',
            "are the same once trimmed and lower-cased",
        ),
        ('[mapping.pipeline_overrides]\nSales = " "\n', "empty pipeline name"),
        ("[mapping\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "migration.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_a_file_without_the_section_means_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "migration.toml"
    path.write_text('[phones]\ndefault_region = "RU"\n', encoding="utf-8")
    assert load_config(path).mapping == MappingConfig()


# -- users --------------------------------------------------------------------------------------


def test_users_match_by_e_mail_then_overrides_then_default() -> None:
    users = [
        SourceUser(1, "Ann", " ANN@acme.ru "),
        SourceUser(2, "Bob", "bob@acme.com"),
        SourceUser(3, "Cid", None),
        SourceUser(4, "Dan", "dan@acme.ru"),
        SourceUser(5, "Eve", "eve@acme.ru"),
    ]
    amo = [user(10, "boss@acme.ru"), user(11, "ann@acme.ru"), user(12, "robert@acme.ru")]
    amo += [user(13, "dan@acme.ru", active=False)]
    rows = mapping.user_rows(users, amo, {"bob@acme.com": "robert@acme.ru"}, amo[0])
    got = {r["pipedrive_user_id"]: (r["amo_user_id"], r["matched_by"], r["note"]) for r in rows}
    assert got == {
        1: (11, "email", None),
        2: (12, "override", None),
        3: (10, "default", "no e-mail in Pipedrive"),
        4: (10, "default", "the amoCRM user with this e-mail is inactive"),
        5: (10, "default", "no amoCRM user with this e-mail"),
    }


def test_user_overrides_must_name_real_users() -> None:
    users = [SourceUser(1, "Ann", "ann@acme.ru")]
    with pytest.raises(MappingError) as error:
        mapping.user_rows(
            users, [user(10, "boss@acme.ru")], {"typo@acme.ru": "x@acme.ru"}, user(10, None)
        )
    assert error.value.items == (
        "user_overrides: 'typo@acme.ru' is not the e-mail of a Pipedrive user",
        "user_overrides: no active amoCRM user has the e-mail 'x@acme.ru'",
    )


def test_default_user_is_configured_or_the_current_user() -> None:
    amo = [user(10, "boss@acme.ru"), user(11, "ann@acme.ru")]
    assert mapping.default_user(amo, 10, None).id == 10
    assert mapping.default_user(amo, 10, "ann@acme.ru").id == 11
    with pytest.raises(MappingError, match="default_user_email names no active amoCRM user"):
        mapping.default_user(amo, 10, "gone@acme.ru")


# -- pipelines and statuses ---------------------------------------------------------------------


def test_new_pipelines_carry_their_stages_in_order_and_overrides_merge() -> None:
    pipelines = [SourcePipeline(1, "Sales", 2), SourcePipeline(2, " sales  team", 1)]
    stages = [
        SourceStage(12, 1, "Won over", 2),
        SourceStage(11, 1, "Lead in", 1),
        SourceStage(21, 2, "lead IN", 1),
        SourceStage(22, 2, "Demo", 2),
    ]
    existing = [pipeline(100, "Воронка", (101, "Lead in", 20))]
    overrides = {"sales": "Продажи", "sales team": "Продажи"}
    (new,) = mapping.pipelines_to_create(pipelines, stages, existing, overrides)
    assert new.name == "Продажи" and new.sort == 2
    # pipelines by order_nr (2 first), stages by order_nr; "Lead in" once
    assert [s["name"] for s in new.statuses] == ["lead IN", "Demo", "Won over"]
    assert [s["sort"] for s in new.statuses] == [10, 20, 30]


def test_an_override_naming_an_unknown_pipeline_is_an_error() -> None:
    with pytest.raises(MappingError, match="pipeline_overrides names pipelines"):
        mapping.pipeline_targets([SourcePipeline(1, "Sales", 1)], {"sails": "Воронка"})


def test_missing_statuses_are_appended_in_stage_order() -> None:
    stages = [
        SourceStage(3, 1, "Closing", 3),
        SourceStage(1, 1, "lead in", 1),
        SourceStage(2, 1, "Demo", 2),
    ]
    existing = [pipeline(100, "Воронка", (101, "Lead In", 20), (102, "Other", 40))]
    todo = mapping.statuses_to_create(stages, {1: 100}, existing)
    assert todo == {100: [{"name": "Demo", "sort": 50}, {"name": "Closing", "sort": 60}]}


def test_status_rows_add_won_and_lost_per_pipeline() -> None:
    stages = [SourceStage(1, 1, "Lead in", 1)]
    existing = [pipeline(100, "Воронка", (101, "lead in", 20))]
    rows = mapping.status_rows(
        [{"pipedrive_pipeline_id": 1, "amo_pipeline_id": 100, "created": False}],
        stages,
        existing,
        frozenset(),
    )
    assert [(r["pipedrive_stage_id"], r["outcome"], r["amo_status_id"]) for r in rows] == [
        (1, "open", 101),
        (None, "won", 142),
        (None, "lost", 143),
    ]


# -- custom fields ------------------------------------------------------------------------------


def source(key: str, name: str, type_: str, *labels: str, entity: str = "leads") -> SourceField:
    options = tuple((str(n), label) for n, label in enumerate(labels, start=1))
    return SourceField(entity, key, name, type_, options)


@pytest.mark.parametrize(
    ("pipedrive_type", "labels", "amo_type"),
    [
        ("varchar", (), "text"),
        ("varchar_auto", (), "text"),
        ("phone", (), "text"),
        ("text", (), "textarea"),
        ("double", (), "numeric"),
        ("monetary", (), "numeric"),
        ("enum", ("a",), "select"),
        ("set", ("a",), "multiselect"),
        ("date", (), "date"),
        ("user", (), "text"),
        ("org", (), "text"),
        ("people", (), "text"),
        ("time", (), "text"),
        ("timerange", (), "text"),
        ("daterange", (), "text"),
        ("address", (), "text"),
        ("enum", (), "text"),  # no options: amoCRM refuses a select without enums
        ("something_new", (), "text"),
    ],
)
def test_type_table(pipedrive_type: str, labels: tuple[str, ...], amo_type: str) -> None:
    (want,) = [
        w
        for w in mapping.wanted_fields([source("k", "F", pipedrive_type, *labels)])
        if w.purpose == "custom"
    ]
    assert want.amo_type == amo_type


def test_migration_fields_on_every_entity() -> None:
    wanted = {(w.entity, w.purpose, w.name, w.amo_type) for w in mapping.wanted_fields([])}
    assert wanted == {
        ("leads", "pipedrive_id", "Pipedrive ID", "text"),
        ("leads", "original_amount", "Original amount", "numeric"),
        ("leads", "original_currency", "Original currency", "text"),
        ("leads", "exchange_rate", "Exchange rate", "text"),
        ("leads", "rate_date", "Rate date", "date"),
        ("contacts", "pipedrive_id", "Pipedrive ID", "text"),
        ("contacts", "merged_ids", "Pipedrive merged IDs", "text"),
        ("companies", "pipedrive_id", "Pipedrive ID", "text"),
        ("companies", "merged_ids", "Pipedrive merged IDs", "text"),
    }


def test_same_named_pipedrive_fields_keep_apart() -> None:
    wanted = mapping.wanted_fields(
        [source("bbbbbbbbbb", "Source", "varchar"), source("aaaaaaaaaa", "source ", "varchar")]
    )
    assert [w.name for w in wanted if w.purpose == "custom"] == ["source", "Source (bbbbbbbb)"]


def custom(*fields: SourceField) -> list[WantedField]:
    return [w for w in mapping.wanted_fields(list(fields)) if w.purpose == "custom"]


def test_fields_match_by_name_and_compatible_type() -> None:
    (text, enum) = custom(
        source("k1", "Source", "varchar"), source("k2", "Kind", "enum", "New", "Old")
    )
    existing = [
        field(1, "source", "textarea"),
        field(2, "KIND", "radiobutton", ("old", "new", "other")),
    ]
    assert mapping.resolve_field(text, existing).id == 1
    assert mapping.resolve_field(enum, existing).id == 2
    assert mapping.enum_map(enum, existing[1]) == {"1": 201, "2": 200}
    assert mapping.fields_to_create([text, enum], {"leads": existing}) == {}


def test_an_incompatible_same_named_field_gets_a_pipedrive_twin() -> None:
    (text, enum) = custom(
        source("k1", "Source", "varchar"), source("k2", "Kind", "enum", "New", "Old")
    )
    existing = [field(1, "Source", "numeric"), field(2, "Kind", "select", ("New",))]  # no "Old"
    todo = mapping.fields_to_create([text, enum], {"leads": existing})
    assert todo["leads"] == [
        {"type": "text", "name": "Source (Pipedrive)"},
        {
            "type": "select",
            "name": "Kind (Pipedrive)",
            "enums": [{"value": "New", "sort": 10}, {"value": "Old", "sort": 20}],
        },
    ]
    # the next run finds the twins by name
    twins = [
        *existing,
        field(3, "Source (Pipedrive)", "text"),
        field(4, "kind (pipedrive)", "select", ("New", "Old")),
    ]
    assert mapping.fields_to_create([text, enum], {"leads": twins}) == {}
    rows = mapping.field_rows([text, enum], {"leads": twins}, frozenset())
    assert [(r["amo_field_id"], r["enum_map"]) for r in rows] == [
        (3, None),
        (4, '{"1": 400, "2": 401}'),
    ]


def test_migration_fields_need_their_exact_type() -> None:
    (pipedrive_id,) = [
        w
        for w in mapping.wanted_fields([])
        if w.entity == "contacts" and w.purpose == "pipedrive_id"
    ]
    assert mapping.resolve_field(pipedrive_id, [field(1, "Pipedrive ID", "textarea")]) is None


def test_both_names_taken_by_misfits_is_an_error() -> None:
    (text,) = custom(source("k1", "Source", "varchar"))
    existing = [field(1, "Source", "numeric"), field(2, "Source (Pipedrive)", "date")]
    with pytest.raises(MappingError, match="custom fields in the way") as error:
        mapping.fields_to_create([text], {"leads": existing})
    assert "'Source' and 'Source (Pipedrive)' exist" in error.value.items[0]


# -- task types ---------------------------------------------------------------------------------


def test_task_types_by_name_else_meeting_or_follow_up() -> None:
    types = [
        SourceActivityType("call", "Звонок"),
        SourceActivityType("meeting", "Meeting"),
        SourceActivityType("lunch", "Обед"),
        SourceActivityType("demo", "Демо"),
        SourceActivityType("email", "Email"),
    ]
    amo = [
        {"id": 1, "name": "Связаться", "code": "FOLLOW_UP"},
        {"id": 2, "name": "Встреча", "code": "MEETING"},
        {"id": 7, "name": "звонок"},
        {"id": 8, "name": "DEMO"},
    ]
    rows = {
        r["pipedrive_type"]: (r["amo_task_type_id"], r["matched_by"])
        for r in mapping.task_type_rows(types, amo)
    }
    assert rows == {
        "call": (7, "name"),
        "demo": (8, "name"),
        "email": (1, "default"),
        "lunch": (2, "default"),
        "meeting": (2, "default"),
    }
