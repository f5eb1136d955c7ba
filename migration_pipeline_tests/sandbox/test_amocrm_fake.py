"""Contract tests of the fake amoCRM: what a client of the real API v4 sees (reference §10).

Every response of every test passes through :func:`_assert_no_token`, so none may echo the token.
"""

from __future__ import annotations

import math
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from migration_pipeline.sandbox import AMOCRM_URL, SandboxSettings
from migration_pipeline.sandbox.amocrm import AmoCrmFake
from migration_pipeline.sandbox.asgi import asgi_app
from migration_pipeline.sandbox.dataset import write_entity
from migration_pipeline.sandbox.transport import SandboxTransport

TOKEN = "test-amocrm-token-5f1c9e27"
# Active users sorted by id: 1 2 3 4 5 7 8 9; the 4th (id 4) and 8th (id 9) get no amoCRM user.
PIPEDRIVE_USERS = [
    {"id": uid, "name": f"User {uid}", "email": f"user{uid}@acme.example", "active_flag": uid != 6}
    for uid in (5, 1, 9, 3, 2, 6, 4, 8, 7)
]
EXPECTED_EMAILS = {"admin@sandbox.example"} | {
    f"user{uid}@acme.example" for uid in (1, 2, 3, 5, 7, 8)
}
PROBLEM_JSON = "application/problem+json"
HAL_JSON = "application/hal+json"


def make_settings(tmp_path: Path, **overrides: Any) -> SandboxSettings:
    dataset = tmp_path / "dataset"
    if not dataset.exists():
        write_entity(dataset, "users", PIPEDRIVE_USERS)
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "from_dir": dataset,
        "amocrm_rps": 10_000,
        "ban_after": 0,
        "amocrm_token": TOKEN,
    }
    return SandboxSettings(**(values | overrides))


def _assert_no_token(response: httpx.Response) -> None:
    response.read()
    assert TOKEN not in response.text
    assert all(TOKEN not in value for value in response.headers.values())


def client(fake: AmoCrmFake, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        transport=SandboxTransport(fake.handle),
        base_url=AMOCRM_URL,
        headers=headers,
        event_hooks={"response": [_assert_no_token]},
    )


@pytest.fixture
def settings(tmp_path: Path) -> SandboxSettings:
    return make_settings(tmp_path)


@pytest.fixture
def fake(settings: SandboxSettings) -> AmoCrmFake:
    return AmoCrmFake(settings)


@pytest.fixture
def api(fake: AmoCrmFake) -> Iterator[httpx.Client]:
    with client(fake) as http:
        yield http


def created(response: httpx.Response, kind: str) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["_embedded"][kind]]


def create_one(api: httpx.Client, kind: str, item: dict[str, Any]) -> int:
    (entity_id,) = created(api.post(f"/api/v4/{kind}", json=[item]), kind)
    return entity_id


def walk(api: httpx.Client, path: str, kind: str, **params: Any) -> list[int]:
    """Every id of a list, following ``_links.next`` as a client does."""
    response = api.get(path, params=params)
    ids: list[int] = []
    while response.status_code == 200:
        body = response.json()
        ids += [item["id"] for item in body["_embedded"][kind]]
        if "next" not in body["_links"]:
            break
        response = api.get(body["_links"]["next"]["href"])
    assert response.status_code == 200 or not ids, "a next link led to an empty page"
    return ids


def validation_errors(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert {k: body[k] for k in ("title", "type", "status", "detail")} == {
        "title": "Bad Request",
        "type": "https://httpstatus.es/400",
        "status": 400,
        "detail": "Request validation failed",
    }
    return body["validation-errors"]


def custom_field(api: httpx.Client, kind: str, code: str) -> dict[str, Any]:
    fields = api.get(f"/api/v4/{kind}/custom_fields").json()["_embedded"]["custom_fields"]
    return next(field for field in fields if field["code"] == code)


# ------------------------------------------------------------------------------------ the seed


def test_a_new_account_has_users_one_pipeline_phone_email_and_the_currency(tmp_path: Path) -> None:
    fake = AmoCrmFake(make_settings(tmp_path, currency="EUR"))
    with client(fake) as api:
        account = api.get("/api/v4/account", params={"with": "task_types,users_groups"}).json()
        users = api.get("/api/v4/users").json()["_embedded"]["users"]
        pipelines = api.get("/api/v4/leads/pipelines").json()["_embedded"]["pipelines"]
        phone = custom_field(api, "contacts", "PHONE")
        email = custom_field(api, "companies", "EMAIL")
        lead_fields = api.get("/api/v4/leads/custom_fields")
        reasons = api.get("/api/v4/leads/loss_reasons").json()["_embedded"]["loss_reasons"]

    assert (account["currency"], account["currency_symbol"]) == ("EUR", "€")
    task_types = {t["id"]: t["code"] for t in account["_embedded"]["task_types"]}
    assert task_types == {1: "FOLLOW_UP", 2: "MEETING"}
    assert account["_embedded"]["users_groups"]
    assert {user["email"] for user in users} == EXPECTED_EMAILS
    admin = next(user for user in users if user["name"] == "Admin")
    assert account["current_user_id"] == admin["id"] and admin["rights"]["is_admin"]

    (pipeline,) = pipelines
    assert (pipeline["name"], pipeline["is_main"]) == ("Воронка", True)
    statuses = {s["id"]: s for s in pipeline["_embedded"]["statuses"]}
    assert statuses[142]["name"] == "Успешно реализовано"
    assert statuses[143]["name"] == "Закрыто и не реализовано"
    assert [s["name"] for s in statuses.values() if s["type"] == 1] == ["Неразобранное"]
    assert {"Первичный контакт", "Переговоры", "Принимают решение"} <= {
        s["name"] for s in statuses.values()
    }
    assert [e["value"] for e in phone["enums"]] == ["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"]
    assert [e["value"] for e in email["enums"]] == ["WORK", "PRIV", "OTHER"]
    assert phone["type"] == email["type"] == "multitext"
    assert lead_fields.status_code == 204
    assert len(reasons) >= 2
    assert fake.entity_counts() == dict.fromkeys(
        ("leads", "contacts", "companies", "tasks", "notes"), 0
    )


def test_users_page_with_totals_and_next_links(api: httpx.Client) -> None:
    first = api.get("/api/v4/users", params={"limit": 3}).json()
    assert (first["_total_items"], first["_page_count"]) == (7, 3)
    assert len(walk(api, "/api/v4/users", "users", limit=3)) == 7


# --------------------------------------------------------------------------- create/get/list


@pytest.mark.parametrize("limit", [1, 7, 50, 250])
def test_pages_never_repeat_or_skip(api: httpx.Client, limit: int) -> None:
    ids = created(
        api.post("/api/v4/contacts", json=[{"name": f"c{n}"} for n in range(120)]), "contacts"
    )

    assert walk(api, "/api/v4/contacts", "contacts", limit=limit) == sorted(ids)
    assert walk(
        api, "/api/v4/contacts", "contacts", limit=limit, **{"order[id]": "desc"}
    ) == sorted(ids, reverse=True)
    last_page = -(-len(ids) // limit)
    beyond = api.get("/api/v4/contacts", params={"limit": limit, "page": last_page + 1})
    assert beyond.status_code == 204


def test_created_entity_reads_back_with_links_and_request_ids(api: httpx.Client) -> None:
    response = api.post("/api/v4/leads", json=[{"name": "A", "request_id": "pd-7"}, {"name": "B"}])
    body = response.json()
    assert [item["request_id"] for item in body["_embedded"]["leads"]] == ["pd-7", "1"]
    lead_id = body["_embedded"]["leads"][0]["id"]
    assert body["_embedded"]["leads"][0]["_links"]["self"]["href"].endswith(
        f"/api/v4/leads/{lead_id}"
    )
    lead = api.get(f"/api/v4/leads/{lead_id}").json()
    assert (lead["name"], lead["price"], lead["custom_fields_values"]) == ("A", 0, None)
    pipeline = api.get("/api/v4/leads/pipelines").json()["_embedded"]["pipelines"][0]
    assert (lead["pipeline_id"], lead["status_id"]) == (pipeline["id"], _first_working(pipeline))
    assert isinstance(lead["created_at"], int) and lead["closed_at"] is None
    assert lead["_embedded"] == {"tags": [], "companies": []}


def _first_working(pipeline: dict[str, Any]) -> int:
    statuses = [
        s for s in pipeline["_embedded"]["statuses"] if s["type"] == 0 and s["id"] not in (142, 143)
    ]
    return min(statuses, key=lambda s: s["sort"])["id"]


def test_nothing_found_answers_204_with_an_empty_body(api: httpx.Client) -> None:
    for path in ("/api/v4/leads", "/api/v4/leads/123456", "/api/v4/tasks", "/api/v4/leads/notes"):
        response = api.get(path)
        assert (response.status_code, response.content) == (204, b""), path
    create_one(api, "leads", {"name": "x"})
    assert api.get("/api/v4/leads", params={"filter[id][]": 1}).status_code == 204


def test_batches_over_250_or_50_complex_are_refused_whole(
    api: httpx.Client, fake: AmoCrmFake
) -> None:
    too_many = api.post("/api/v4/contacts", json=[{"name": str(n)} for n in range(251)])
    too_complex = api.post("/api/v4/leads/complex", json=[{"name": str(n)} for n in range(51)])

    for response, maximum in ((too_many, 250), (too_complex, 50)):
        assert response.status_code == 400
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert f"at most {maximum}" in response.json()["detail"]
    assert fake.entity_counts()["contacts"] == fake.entity_counts()["leads"] == 0

    full = api.post("/api/v4/contacts", json=[{"name": str(n)} for n in range(250)]).json()
    assert [item["request_id"] for item in full["_embedded"]["contacts"]] == [
        str(n) for n in range(250)
    ]
    assert len(api.post("/api/v4/leads/complex", json=[{"name": "x"}] * 50).json()) == 50


VALID = {
    "leads": {"name": "ok", "_embedded": {"tags": [{"name": "fresh"}]}},
    "contacts": {"name": "ok", "_embedded": {"tags": [{"name": "fresh"}]}},
    "tasks": {"text": "ok", "complete_till": 1_700_000_000},
}


@pytest.mark.parametrize(
    ("kind", "bad", "code", "path"),
    [
        ("leads", {"custom_fields_values": [{"field_id": 1, "values": [{"value": "x"}]}]},
         "NotSupportedChoice", "custom_fields_values.0.field_id"),
        ("contacts", {"custom_fields_values": [{"field_code": "SKYPE", "values": [{"value": "x"}]}]},
         "NotSupportedChoice", "custom_fields_values.0.field_code"),
        ("contacts", {"custom_fields_values": [
            {"field_code": "PHONE", "values": [{"value": "+7912", "enum_id": 1}]}]},
         "NotSupportedChoice", "custom_fields_values.0.values.0.enum_id"),
        ("contacts", {"custom_fields_values": [
            {"field_code": "EMAIL", "values": [{"value": "a@b.c", "enum_code": "CELL"}]}]},
         "NotSupportedChoice", "custom_fields_values.0.values.0.enum_code"),
        ("leads", {"status_id": 999}, "NotSupportedChoice", "status_id"),
        ("leads", {"pipeline_id": 999}, "NotSupportedChoice", "pipeline_id"),
        ("leads", {"responsible_user_id": 999}, "NotSupportedChoice", "responsible_user_id"),
        ("leads", {"status_id": 143, "loss_reason_id": 999}, "NotSupportedChoice", "loss_reason_id"),
        ("leads", {"price": 10.5}, "InvalidType", "price"),
        ("leads", {"price": "100"}, "InvalidType", "price"),
        ("leads", {"name": "x" * 256}, "TooLong", "name"),
        ("leads", {"name": 42}, "InvalidType", "name"),
        ("leads", {"created_at": "2020-01-01"}, "InvalidType", "created_at"),
        ("leads", {"_embedded": {"contacts": [{"id": 999}]}}, "NotSupportedChoice",
         "_embedded.contacts.0.id"),
        ("leads", {"_embedded": {"tags": [{"id": 999}]}}, "NotSupportedChoice", "_embedded.tags.0.id"),
        ("contacts", {"created_by": 999}, "NotSupportedChoice", "created_by"),
        ("tasks", {"text": None}, "NotBlank", "text"),
        ("tasks", {"complete_till": None}, "NotBlank", "complete_till"),
        ("tasks", {"text": "x", "complete_till": 1, "entity_type": "leads", "entity_id": 999},
         "NotSupportedChoice", "entity_id"),
        ("tasks", {"text": "x", "complete_till": 1, "task_type_id": 7}, "NotSupportedChoice",
         "task_type_id"),
    ],
)  # fmt: skip
def test_one_invalid_item_rejects_the_whole_batch(
    api: httpx.Client, fake: AmoCrmFake, kind: str, bad: dict[str, Any], code: str, path: str
) -> None:
    response = api.post(f"/api/v4/{kind}", json=[VALID[kind], {**VALID[kind], **bad}])

    (problem,) = validation_errors(response)
    assert problem["request_id"] == "1"
    assert {"code": code, "path": path} in [
        {"code": e["code"], "path": e["path"]} for e in problem["errors"]
    ]
    assert all(set(error) == {"code", "path", "detail"} for error in problem["errors"])
    assert fake.entity_counts()[kind] == 0
    if kind != "tasks":
        assert api.get(f"/api/v4/{kind}/tags").status_code == 204  # "fresh" was rolled back


def test_backdated_and_closed_leads_keep_their_dates(api: httpx.Client) -> None:
    pipeline = api.get("/api/v4/leads/pipelines").json()["_embedded"]["pipelines"][0]
    reason = api.get("/api/v4/leads/loss_reasons").json()["_embedded"]["loss_reasons"][0]
    lead_id = create_one(
        api,
        "leads",
        {
            "name": "old",
            "price": 1500,
            "pipeline_id": pipeline["id"],
            "status_id": 143,
            "loss_reason_id": reason["id"],
            "created_at": 1_420_070_400,
            "updated_at": 1_430_000_000,
            "closed_at": 1_450_000_000,
        },
    )
    lead = api.get(f"/api/v4/leads/{lead_id}").json()
    assert (lead["created_at"], lead["updated_at"], lead["closed_at"]) == (
        1_420_070_400,
        1_430_000_000,
        1_450_000_000,
    )
    assert (lead["status_id"], lead["loss_reason_id"], lead["price"]) == (143, reason["id"], 1500)


def test_patch_updates_given_fields_only(api: httpx.Client) -> None:
    phone = {"field_code": "PHONE", "values": [{"value": "+79001112233"}]}
    contact_id = create_one(api, "contacts", {"name": "Old", "custom_fields_values": [phone]})

    batch = api.patch("/api/v4/contacts", json=[{"id": contact_id, "name": "New"}])
    single = api.patch(f"/api/v4/contacts/{contact_id}", json={"first_name": "Ann"})
    unknown = api.patch("/api/v4/contacts", json=[{"id": 1, "name": "x"}])

    assert batch.json()["_embedded"]["contacts"][0]["name"] == "New"
    assert single.json()["id"] == contact_id
    assert validation_errors(unknown)[0]["errors"][0]["path"] == "id"
    contact = api.get(f"/api/v4/contacts/{contact_id}").json()
    assert (contact["name"], contact["first_name"]) == ("New", "Ann")
    (value,) = contact["custom_fields_values"][0]["values"]
    assert (value["value"], value["enum_code"], value["enum"]) == ("+79001112233", "WORK", "WORK")


# ------------------------------------------------------------------------------ custom fields


def test_custom_fields_created_then_used_and_found_by_value(
    api: httpx.Client, fake: AmoCrmFake
) -> None:
    response = api.post(
        "/api/v4/leads/custom_fields",
        json=[
            {"name": "Pipedrive ID", "type": "numeric"},
            {"name": "Source", "type": "select", "enums": [{"value": "Web", "sort": 1},
                                                           {"value": "Phone", "sort": 2}]},
            {"name": "Note", "type": "text", "code": "PD_NOTE"},
        ],
    )  # fmt: skip
    assert response.status_code == 201
    pipedrive_id, source, note = response.json()["_embedded"]["custom_fields"]
    assert [e["value"] for e in source["enums"]] == ["Web", "Phone"]
    assert all(isinstance(e["id"], int) for e in source["enums"])

    def lead(number: int, source_value: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": f"deal {number}",
            "custom_fields_values": [
                {"field_id": pipedrive_id["id"], "values": [{"value": number}]},
                {"field_id": source["id"], "values": [source_value]},
                {"field_code": "PD_NOTE", "values": [{"value": "n" * 256}]},
            ],
        }

    enum_id = source["enums"][1]["id"]
    ids = created(
        api.post(
            "/api/v4/leads", json=[lead(101, {"enum_id": enum_id}), lead(102, {"value": "Web"})]
        ),
        "leads",
    )
    too_long = api.post(
        "/api/v4/leads",
        json=[
            {"custom_fields_values": [{"field_id": note["id"], "values": [{"value": "n" * 257}]}]}
        ],
    )
    not_a_choice = api.post("/api/v4/leads", json=[lead(103, {"value": "Fax"})])
    found = api.get(
        "/api/v4/leads", params={f"filter[custom_fields_values][{pipedrive_id['id']}][]": "102"}
    )

    assert validation_errors(too_long)[0]["errors"][0] | {"detail": ""} == {
        "code": "TooLong",
        "path": "custom_fields_values.0.values.0.value",
        "detail": "",
    }
    assert validation_errors(not_a_choice)[0]["errors"][0]["path"] == (
        "custom_fields_values.1.values.0.value"
    )
    assert [item["id"] for item in found.json()["_embedded"]["leads"]] == [ids[1]]
    first = api.get(f"/api/v4/leads/{ids[0]}").json()
    values = {v["field_name"]: v for v in first["custom_fields_values"]}
    assert values["Source"]["values"] == [{"value": "Phone", "enum_id": enum_id, "enum_code": None}]
    assert values["Pipedrive ID"] | {"values": None} == {
        "field_id": pipedrive_id["id"],
        "field_name": "Pipedrive ID",
        "field_code": None,
        "field_type": "numeric",
        "values": None,
    }
    assert fake.creations_per_pipedrive_id("leads") == {"101": 1, "102": 1}


def test_pipedrive_id_counts_match_the_field_by_name_in_any_case_and_type(
    api: httpx.Client, fake: AmoCrmFake
) -> None:
    response = api.post(
        "/api/v4/contacts/custom_fields", json=[{"name": "pipedrive id", "type": "text"}]
    )
    field_id = response.json()["_embedded"]["custom_fields"][0]["id"]
    marked = [{"custom_fields_values": [{"field_id": field_id, "values": [{"value": v}]}]}
              for v in ("7", "8", "7")]  # fmt: skip
    created(api.post("/api/v4/contacts", json=marked), "contacts")

    assert fake.creations_per_pipedrive_id("contacts") == {"7": 2, "8": 1}
    assert fake.creations_per_pipedrive_id("companies") == {}


def test_custom_field_lists_hold_at_most_50_per_page(api: httpx.Client) -> None:
    fields = [{"name": f"f{n}", "type": "text"} for n in range(60)]
    assert api.post("/api/v4/companies/custom_fields", json=fields).status_code == 201

    first = api.get("/api/v4/companies/custom_fields", params={"limit": 250}).json()
    assert len(first["_embedded"]["custom_fields"]) == 50 and "next" in first["_links"]
    assert len(walk(api, "/api/v4/companies/custom_fields", "custom_fields", limit=250)) == 62


def test_query_searches_names_and_field_values(api: httpx.Client) -> None:
    phone = {"field_code": "PHONE", "values": [{"value": "+7 916 123-45-67", "enum_code": "MOB"}]}
    ivan = create_one(api, "contacts", {"name": "Иван Петров", "custom_fields_values": [phone]})
    create_one(api, "contacts", {"name": "Мария"})

    for text in ("123-45", "петров"):
        assert walk(api, "/api/v4/contacts", "contacts", query=text) == [ivan], text
    assert api.get("/api/v4/contacts", params={"query": "nobody"}).status_code == 204


# ----------------------------------------------------------------------- complex, links, tags


def test_complex_answers_a_bare_array_and_links_everything(
    api: httpx.Client, fake: AmoCrmFake
) -> None:
    body = [
        {
            "name": "Deal",
            "price": 500,
            "request_id": "d1",
            "_embedded": {
                "contacts": [{"first_name": "Ann", "last_name": "Lee"}],
                "companies": [{"name": "Acme"}],
            },
        },
        {"name": "Bare"},
    ]
    response = api.post("/api/v4/leads/complex", json=body)
    two_contacts = api.post(
        "/api/v4/leads/complex",
        json=[{"name": "x", "_embedded": {"contacts": [{"name": "a"}, {"name": "b"}]}}],
    )

    assert response.status_code == 200
    full, bare = response.json()
    assert set(full) == {"id", "contact_id", "company_id", "request_id", "merged"}
    assert (full["request_id"], full["merged"], bare["request_id"]) == (["d1"], False, ["1"])
    assert bare["contact_id"] is None and bare["company_id"] is None
    assert validation_errors(two_contacts)[0]["errors"][0]["path"] == "_embedded.contacts"
    lead = api.get(f"/api/v4/leads/{full['id']}", params={"with": "contacts"}).json()
    assert [(c["id"], c["is_main"]) for c in lead["_embedded"]["contacts"]] == [
        (full["contact_id"], True)
    ]
    assert [c["id"] for c in lead["_embedded"]["companies"]] == [full["company_id"]]
    contact = api.get(f"/api/v4/contacts/{full['contact_id']}").json()
    assert contact["name"] == "Ann Lee"
    assert [c["id"] for c in contact["_embedded"]["companies"]] == [full["company_id"]]
    assert fake.entity_counts() | {"tasks": 0, "notes": 0} == {
        "leads": 2, "contacts": 1, "companies": 1, "tasks": 0, "notes": 0}  # fmt: skip


def test_links_single_mass_read_and_unlink(api: httpx.Client) -> None:
    lead = create_one(api, "leads", {"name": "L"})
    first, second = created(
        api.post("/api/v4/contacts", json=[{"name": "1"}, {"name": "2"}]), "contacts"
    )
    company = create_one(api, "companies", {"name": "Co"})

    linked = api.post(
        f"/api/v4/leads/{lead}/link",
        json=[
            {"to_entity_id": second, "to_entity_type": "contacts"},
            {"to_entity_id": first, "to_entity_type": "contacts", "metadata": {"is_main": True}},
            {"to_entity_id": company, "to_entity_type": "companies"},
        ],
    ).json()
    mass = api.post("/api/v4/companies/link",
                    json=[{"entity_id": company, "to_entity_id": first, "to_entity_type": "contacts"}])  # fmt: skip
    bad = api.post(
        f"/api/v4/leads/{lead}/link",
        json=[{"to_entity_id": second, "to_entity_type": "contacts"},
              {"to_entity_id": 999, "to_entity_type": "companies"},
              {"to_entity_id": second, "to_entity_type": "tasks"}],
    )  # fmt: skip

    assert linked["_total_items"] == 3
    assert linked["_embedded"]["links"][1] == {
        "entity_id": lead,
        "entity_type": "leads",
        "to_entity_id": first,
        "to_entity_type": "contacts",
        "metadata": {"main_contact": True},
    }
    assert mass.status_code == 200
    assert [(e["request_id"], e["errors"][0]["path"]) for e in validation_errors(bad)] == [
        ("1", "to_entity_id"),
        ("2", "to_entity_type"),
    ]
    read = api.get(f"/api/v4/leads/{lead}", params={"with": "contacts"}).json()["_embedded"]
    assert {c["id"]: c["is_main"] for c in read["contacts"]} == {first: True, second: False}
    links = api.get(f"/api/v4/leads/{lead}/links").json()["_embedded"]["links"]
    assert {(link["to_entity_type"], link["to_entity_id"]) for link in links} == {
        ("contacts", first), ("contacts", second), ("companies", company)}  # fmt: skip

    unlinked = api.post(f"/api/v4/leads/{lead}/unlink",
                        json=[{"to_entity_id": second, "to_entity_type": "contacts"}])  # fmt: skip
    assert (unlinked.status_code, unlinked.content) == (204, b"")
    remaining = api.get("/api/v4/leads/links", params={"filter[entity_id][]": lead}).json()
    assert remaining["_total_items"] == 2
    company_view = api.get(f"/api/v4/companies/{company}", params={"with": "contacts,leads"}).json()
    assert [c["id"] for c in company_view["_embedded"]["contacts"]] == [first]
    assert [c["id"] for c in company_view["_embedded"]["leads"]] == [lead]


def test_tags_by_name_are_created_once_and_reused(api: httpx.Client) -> None:
    first = create_one(api, "leads", {"name": "a", "_embedded": {"tags": [{"name": "VIP"}]}})
    second = create_one(api, "leads", {"name": "b", "_embedded": {"tags": [{"name": "vip"}]}})

    tags = api.get("/api/v4/leads/tags").json()["_embedded"]["tags"]
    assert [tag["name"] for tag in tags] == ["VIP"]
    for lead_id in (first, second):
        lead = api.get(f"/api/v4/leads/{lead_id}").json()
        assert [tag["id"] for tag in lead["_embedded"]["tags"]] == [tags[0]["id"]]
    assert (
        validation_errors(api.post("/api/v4/leads/tags", json=[{"name": "VIP"}]))[0]["errors"][0][
            "code"
        ]
        == "AlreadyExists"
    )
    assert api.post("/api/v4/leads/tags", json=[{"name": "Partner"}]).status_code == 200
    assert api.get("/api/v4/contacts/tags").status_code == 204


def test_pipelines_and_statuses_can_be_added(api: httpx.Client) -> None:
    response = api.post(
        "/api/v4/leads/pipelines",
        json=[{"name": "Sales 2", "sort": 20, "is_main": False, "is_unsorted_on": False,
               "_embedded": {"statuses": [{"name": "New", "sort": 10}, {"name": "Won!", "id": 142}]}}],
    )  # fmt: skip
    pipeline = response.json()["_embedded"]["pipelines"][0]
    statuses = {s["name"]: s["id"] for s in pipeline["_embedded"]["statuses"]}
    added = api.post(f"/api/v4/leads/pipelines/{pipeline['id']}/statuses",
                     json=[{"name": "Later", "sort": 20}])  # fmt: skip
    lands = create_one(api, "leads", {"pipeline_id": pipeline["id"]})
    won = create_one(api, "leads", {"pipeline_id": pipeline["id"], "status_id": 142})
    main = api.get("/api/v4/leads/pipelines").json()["_embedded"]["pipelines"][0]
    foreign = api.post("/api/v4/leads", json=[{"pipeline_id": pipeline["id"],
                                               "status_id": _first_working(main)}])  # fmt: skip

    assert statuses == {"New": statuses["New"], "Won!": 142, "Закрыто и не реализовано": 143}
    assert added.json()["_embedded"]["statuses"][0]["name"] == "Later"
    assert api.get(f"/api/v4/leads/pipelines/{pipeline['id']}/statuses").json()["_total_items"] == 4
    assert api.get(f"/api/v4/leads/{lands}").json()["status_id"] == statuses["New"]
    won_lead = api.get(f"/api/v4/leads/{won}").json()
    assert (won_lead["pipeline_id"], won_lead["status_id"]) == (pipeline["id"], 142)
    assert won_lead["closed_at"] is not None
    assert validation_errors(foreign)[0]["errors"][0]["path"] == "status_id"


# ------------------------------------------------------------------------------ tasks, notes


def test_tasks_need_text_and_complete_till_and_filter(api: httpx.Client) -> None:
    lead = create_one(api, "leads", {"name": "L"})
    missing = api.post("/api/v4/tasks", json=[{"entity_type": "leads", "entity_id": lead}])
    target = {"entity_type": "leads", "entity_id": lead, "complete_till": 1_700_000_000}
    open_task, done_task = created(
        api.post("/api/v4/tasks", json=[{**target, "text": "call"},
                                        {**target, "text": "meet", "task_type_id": 2,
                                         "is_completed": True}]),
        "tasks",
    )  # fmt: skip
    completed = api.patch("/api/v4/tasks", json=[{"id": open_task, "is_completed": True,
                                                  "result": {"text": "talked"}}])  # fmt: skip

    assert {(e["code"], e["path"]) for e in validation_errors(missing)[0]["errors"]} == {
        ("NotBlank", "text"),
        ("NotBlank", "complete_till"),
    }
    assert completed.status_code == 200
    task = api.get(f"/api/v4/tasks/{open_task}").json()
    assert (task["is_completed"], task["result"], task["task_type_id"]) == (
        True,
        {"text": "talked"},
        1,
    )
    params = {"filter[entity_type]": "leads", "filter[entity_id][]": lead}
    assert walk(api, "/api/v4/tasks", "tasks", **params) == [open_task, done_task]
    assert walk(api, "/api/v4/tasks", "tasks", **params, **{"filter[task_type]": 2}) == [done_task]
    api.patch(f"/api/v4/tasks/{open_task}", json={"is_completed": False})
    assert walk(api, "/api/v4/tasks", "tasks", **params, **{"filter[is_completed]": 0}) == [
        open_task
    ]


def test_notes_belong_to_an_existing_entity(api: httpx.Client) -> None:
    lead = create_one(api, "leads", {"name": "L"})
    common = {"note_type": "common", "params": {"text": "hello"}}

    first = api.post("/api/v4/leads/notes", json=[{"entity_id": lead, **common}]).json()
    second = api.post(f"/api/v4/leads/{lead}/notes", json=[{**common, "created_at": 1_500_000_000}])
    too_long = api.post("/api/v4/leads/notes",
                        json=[{"entity_id": lead, "note_type": "common", "params": {"text": "x" * 65_536}}])  # fmt: skip
    orphan = api.post("/api/v4/leads/notes", json=[{"entity_id": 999, **common}])
    unknown_type = api.post("/api/v4/leads/notes", json=[{"entity_id": lead, "note_type": "email"}])

    assert set(first["_embedded"]["notes"][0]) == {"id", "entity_id", "request_id", "_links"}
    assert first["_embedded"]["notes"][0]["entity_id"] == lead
    assert second.status_code == 200
    assert validation_errors(too_long)[0]["errors"][0]["path"] == "params.text"
    assert validation_errors(orphan)[0]["errors"][0]["path"] == "entity_id"
    assert {e["path"] for e in validation_errors(unknown_type)[0]["errors"]} == {
        "note_type",
        "params",
    }
    notes = api.get("/api/v4/leads/notes", params={"filter[entity_id][]": lead}).json()
    assert [n["params"]["text"] for n in notes["_embedded"]["notes"]] == ["hello", "hello"]
    assert notes["_embedded"]["notes"][1]["created_at"] == 1_500_000_000
    assert len(walk(api, f"/api/v4/leads/{lead}/notes", "notes")) == 2
    assert api.get("/api/v4/contacts/notes").status_code == 204


# ------------------------------------------------------------------------------- auth, headers


def test_bad_or_missing_token_is_401_problem_json(fake: AmoCrmFake) -> None:
    for token in (None, "wrong", TOKEN + "x"):
        with client(fake, token) as api:
            response = api.get("/api/v4/account")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert response.headers["x-request-id"]
        assert response.json() == {
            "title": "Unauthorized",
            "type": "https://httpstatus.es/401",
            "status": 401,
            "detail": "Неверный логин или пароль",
        }


def test_content_types_and_request_ids(api: httpx.Client) -> None:
    responses = {
        "ok": api.get("/api/v4/account"),
        "invalid": api.post("/api/v4/leads", json=[{"price": 1.5}]),
        "not json": api.post("/api/v4/leads", content=b"{nope"),
        "not found": api.get("/api/v4/nothing"),
        "wrong method": api.delete("/api/v4/leads"),
    }
    assert responses["ok"].headers["content-type"].startswith(HAL_JSON)
    for name in ("invalid", "not json", "not found", "wrong method"):
        assert responses[name].headers["content-type"].startswith(PROBLEM_JSON), name
    assert [r.status_code for r in responses.values()] == [200, 400, 400, 404, 405]
    request_ids = [r.headers["x-request-id"] for r in responses.values()]
    assert len(set(request_ids)) == len(request_ids)


# -------------------------------------------------------------------- rate limit, ban, faults


HAMMER_SECONDS = 2.5


def _hammer(settings: SandboxSettings, barrier: Any, results: Any) -> None:
    """Another OS process: its own fake on the same state, hammering once everyone is ready."""
    with client(AmoCrmFake(settings)) as api:
        barrier.wait(timeout=60)
        results.put(_hammer_with(api, time.time() + HAMMER_SECONDS))


def _hammer_with(api: httpx.Client, until: float) -> dict[str, Any]:
    start, statuses = time.time(), []
    throttled_pages_are_html = True
    while time.time() < until:
        response = api.get("/api/v4/account")
        statuses.append(response.status_code)
        if response.status_code == 429:
            throttled_pages_are_html &= (
                response.headers["content-type"].startswith("text/html")
                and response.text.startswith("<html>")
                and "retry-after" not in response.headers
            )
    return {
        "start": start,
        "end": time.time(),
        "ok": statuses.count(200),
        "throttled": statuses.count(429),
        "other": len(statuses) - statuses.count(200) - statuses.count(429),
        "html": throttled_pages_are_html,
    }


@contextmanager
def served_over_http(fake: AmoCrmFake) -> Iterator[str]:
    """The fake behind a real socket (uvicorn in a thread); yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(asgi_app(fake.handle), lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def test_the_rate_limit_holds_account_wide_across_processes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, amocrm_rps=7)
    fake = AmoCrmFake(settings)
    fake.entity_counts()  # the account exists before the others start, as after any earlier run
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_hammer, args=(settings, barrier, results)) for _ in range(2)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        served_over_http(fake) as base_url,
        httpx.Client(base_url=base_url, headers=headers) as http,
    ):
        for worker in workers:
            worker.start()
        barrier.wait(timeout=60)
        outcomes = [_hammer_with(http, time.time() + HAMMER_SECONDS)]
    outcomes += [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)

    assert fake.max_requests_per_second() <= 7
    for outcome in outcomes:  # this process over HTTP, two others in-process
        assert outcome["throttled"] > 0 and outcome["other"] == 0, outcome
        assert outcome["html"], "429 must be an HTML page without Retry-After"
    # Three clients together get 7/s, not 7/s each: at most 7 per started second of the span.
    span = max(o["end"] for o in outcomes) - min(o["start"] for o in outcomes)
    accepted = sum(outcome["ok"] for outcome in outcomes)
    assert 7 * (HAMMER_SECONDS - 1) <= accepted <= 7 * math.ceil(span)


def test_repeated_429s_ban_the_account_with_an_nginx_403(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, amocrm_rps=1, ban_after=2, ban_seconds=1.0)
    fake = AmoCrmFake(settings)
    with client(fake) as api:
        statuses = [api.get("/api/v4/account").status_code for _ in range(6)]
        banned = api.get("/api/v4/account")
    with client(AmoCrmFake(settings), token="wrong") as other_process:
        also_banned = other_process.get("/api/v4/users")

    assert statuses == [200, 429, 429, 429, 403, 403]
    for response in (banned, also_banned):
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "403 Forbidden" in response.text and "nginx" in response.text
    time.sleep(settings.ban_seconds)
    with client(fake) as api:
        assert api.get("/api/v4/account").status_code == 200


def test_a_lost_response_still_commits_the_write(tmp_path: Path) -> None:
    fake = AmoCrmFake(make_settings(tmp_path, faults="amocrm.lost=1.0"))
    with client(fake) as api:
        with pytest.raises(httpx.RemoteProtocolError):
            api.post("/api/v4/contacts", json=[{"name": "landed"}])
        listed = api.get("/api/v4/contacts")  # reads are never lost

    assert [c["name"] for c in listed.json()["_embedded"]["contacts"]] == ["landed"]
    assert fake.entity_counts()["contacts"] == 1
    assert fake.faults_injected() == {"lost": 1}


def test_a_timeout_commits_nothing(tmp_path: Path) -> None:
    fake = AmoCrmFake(make_settings(tmp_path, faults="timeout=1.0"))
    with client(fake) as api:
        with pytest.raises(httpx.ReadTimeout):
            api.post("/api/v4/contacts", json=[{"name": "never"}])

    assert fake.entity_counts()["contacts"] == 0
    assert fake.faults_injected() == {"timeout": 1}


def _fault_trace(tmp_path: Path, spec: str) -> list[str]:
    fake = AmoCrmFake(make_settings(tmp_path, faults=spec))
    trace = []
    with client(fake) as api:
        for n in range(40):
            try:
                response = api.post("/api/v4/contacts", json=[{"name": str(n)}])
            except httpx.TransportError as error:
                trace.append(type(error).__name__)
                continue
            kind = response.headers["content-type"].split(";")[0]
            trace.append(f"{response.status_code} {kind}")
    return trace


def test_faults_are_deterministic_by_seed(tmp_path: Path) -> None:
    spec = "429=0.15,5xx=0.2,timeout=0.1,lost=0.1,seed=11"
    first = _fault_trace(tmp_path / "a", spec)
    again = _fault_trace(tmp_path / "b", spec)
    other_seed = _fault_trace(tmp_path / "c", spec.replace("seed=11", "seed=12"))

    assert first == again
    assert first != other_seed
    assert {
        "429 text/html",
        "ReadTimeout",
        "RemoteProtocolError",
        "200 application/hal+json",
    } <= set(first)
    server_errors = {entry for entry in first if entry[:2] == "50"}
    assert server_errors <= {"500 application/problem+json", "502 text/html", "503 text/html",
                             "504 text/html"}  # fmt: skip
    assert len(server_errors) >= 2


def test_state_survives_a_restart_and_is_shared(
    settings: SandboxSettings, fake: AmoCrmFake
) -> None:
    with client(fake) as api:
        first = create_one(api, "companies", {"name": "Acme"})
    with client(AmoCrmFake(settings)) as restarted:
        assert restarted.get(f"/api/v4/companies/{first}").json()["name"] == "Acme"
        assert create_one(restarted, "companies", {"name": "Beta"}) > first
    assert fake.entity_counts()["companies"] == 2


def test_reset_gives_a_new_customers_account(api: httpx.Client, fake: AmoCrmFake) -> None:
    api.post("/api/v4/leads/custom_fields", json=[{"name": "Pipedrive ID", "type": "numeric"}])
    create_one(api, "leads", {"name": "x", "_embedded": {"tags": [{"name": "t"}]}})

    fake.reset()

    assert fake.entity_counts() == dict.fromkeys(
        ("leads", "contacts", "companies", "tasks", "notes"), 0
    )
    for path in ("/api/v4/leads", "/api/v4/leads/custom_fields", "/api/v4/leads/tags"):
        assert api.get(path).status_code == 204, path
    assert api.get("/api/v4/users").json()["_total_items"] == 7
    assert custom_field(api, "contacts", "PHONE")["enums"]


def test_the_token_is_never_echoed(tmp_path: Path) -> None:
    """Every response above already went through the check; here every kind of answer does."""
    fake = AmoCrmFake(make_settings(tmp_path, amocrm_rps=2, ban_after=1, faults="5xx=0.5,seed=3"))
    seen = []
    for token in (TOKEN, f"{TOKEN}-forged", TOKEN, None, TOKEN):  # ok, 401, 429, 429 + ban, 403
        with client(fake, token) as api:
            seen.append(api.post("/api/v4/leads", json=[{"price": 0.5}]))
    assert {response.status_code for response in seen} >= {401, 403, 429}
    for response in seen:
        assert TOKEN not in response.text and TOKEN not in str(response.headers)


def test_concurrent_batches_get_distinct_ids(api: httpx.Client, fake: AmoCrmFake) -> None:
    def post_batches(results: list[int]) -> None:
        for _ in range(3):
            batch = [{"name": "t"} for _ in range(20)]
            results += created(api.post("/api/v4/contacts", json=batch), "contacts")

    fake.entity_counts()  # the account exists before the threads start
    per_thread: list[list[int]] = [[] for _ in range(6)]
    threads = [threading.Thread(target=post_batches, args=(ids,)) for ids in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = [entity_id for ids in per_thread for entity_id in ids]
    assert len(ids) == len(set(ids)) == 360 == fake.entity_counts()["contacts"]
