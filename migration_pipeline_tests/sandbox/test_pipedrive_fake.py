"""Contract tests of the fake Pipedrive: what ``reference/pipedrive_api.md`` §10 asks of it.

Each test serves the tiny account of :mod:`.pipedrive_fixtures` from ``tmp_path`` through an
in-process ``httpx.Client``; one test goes over real HTTP (uvicorn on a free port).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from migration_pipeline.sandbox import pipedrive_transport
from migration_pipeline.sandbox.asgi import asgi_app
from migration_pipeline.sandbox.dataset import DatasetError, write_entity
from migration_pipeline.sandbox.pipedrive import PipedriveFake

from .pipedrive_fixtures import (
    DEALS,
    LEADS,
    MONEY_KEY,
    NOTES,
    PERSON_ENUM_KEY,
    PERSON_MONEY_KEY,
    PERSON_SET_KEY,
    PERSONS,
    STAGE_KEY,
    TOKEN,
    FakeClock,
    client_for,
    make_fake,
    settings_for,
    write_dataset,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-daily-ratelimit-token-limit",
    "x-daily-ratelimit-token-remaining",
)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[PipedriveFake]:
    fake = make_fake(tmp_path)
    yield fake
    fake.close()


@pytest.fixture
def client(fake: PipedriveFake) -> Iterator[httpx.Client]:
    with client_for(fake) as client:
        yield client


def ids(response: httpx.Response) -> list[Any]:
    assert response.status_code == 200, response.text
    return [record["id"] for record in response.json()["data"]]


def walk_cursor(client: httpx.Client, path: str, params: dict[str, Any]) -> list[Any]:
    """Every id of a v2 list, page by page; checks each page but the last is full."""
    seen: list[Any] = []
    cursor = None
    for _ in range(100):
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        page = ids(response)
        cursor = response.json()["additional_data"]["next_cursor"]
        seen += page
        if cursor is None:
            return seen
        assert len(page) == params["limit"]
    raise AssertionError("pagination did not end")


def walk_offset(client: httpx.Client, path: str, limit: int, nested: bool) -> list[Any]:
    """Every id of a v1 list, page by page, following ``next_start``."""
    seen: list[Any] = []
    start = 0
    for _ in range(100):
        response = client.get(path, params={"start": start, "limit": limit})
        seen += ids(response)
        additional = response.json()["additional_data"]
        pagination = additional["pagination"] if nested else additional
        assert pagination["start"] == start and pagination["limit"] == limit
        if not pagination["more_items_in_collection"]:
            assert "next_start" not in pagination
            return seen
        start = pagination["next_start"]
    raise AssertionError("pagination did not end")


def oracle(records: list[dict[str, Any]], sort_by: str, direction: str) -> list[int]:
    def key(record: dict[str, Any]) -> tuple[Any, int]:
        value = record[sort_by]
        if sort_by != "id":
            value = datetime.fromisoformat(value).timestamp()
        return value, record["id"]

    return [r["id"] for r in sorted(records, key=key, reverse=direction == "desc")]


# --- v2 cursor pagination -------------------------------------------------------------------


@pytest.mark.parametrize("sort_by", ["id", "update_time", "add_time"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_v2_cursor_pages_never_repeat_or_skip_at_any_limit(
    client: httpx.Client, sort_by: str, direction: str
) -> None:
    not_archived = [d for d in DEALS if not d["is_archived"]]
    expected = oracle(not_archived, sort_by, direction)
    params = {"status": "open,won,lost,deleted", "sort_by": sort_by, "sort_direction": direction}
    for limit in range(1, len(expected) + 2):
        seen = walk_cursor(client, "/api/v2/deals", {**params, "limit": limit})
        assert seen == expected, f"limit={limit}"


def test_v2_cursor_pages_of_a_filtered_list_never_repeat_or_skip(client: httpx.Client) -> None:
    params = {"sort_by": "update_time", "updated_since": "2026-03-01T00:00:00Z"}
    expected = [1, 2, 4, 6]  # persons 1 and 2 tie on update_time: id breaks the tie
    for limit in range(1, len(expected) + 2):
        assert walk_cursor(client, "/api/v2/persons", {**params, "limit": limit}) == expected


def test_v2_next_cursor_is_base64url_then_null_at_the_end(client: httpx.Client) -> None:
    first = client.get("/api/v2/persons", params={"limit": 4}).json()
    cursor = first["additional_data"]["next_cursor"]
    base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    last = client.get("/api/v2/persons", params={"limit": 4, "cursor": cursor}).json()
    assert [p["id"] for p in last["data"]] == [5, 6]
    assert last["additional_data"] == {"next_cursor": None}


def test_v2_cursor_from_another_order_or_garbage_is_a_400(client: httpx.Client) -> None:
    cursor = client.get("/api/v2/deals", params={"limit": 2}).json()["additional_data"]
    other_order = client.get(
        "/api/v2/deals", params={"limit": 2, "sort_by": "add_time", "cursor": cursor["next_cursor"]}
    )
    garbage = client.get("/api/v2/deals", params={"cursor": "not-a-cursor!"})
    assert other_order.status_code == garbage.status_code == 400
    assert garbage.json()["success"] is False


def test_v2_limit_defaults_to_100_and_above_500_is_a_400(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "dataset")
    write_entity(dataset, "products", [{"id": i, "name": f"P{i}"} for i in range(1, 121)])
    fake = make_fake(tmp_path, from_dir=dataset)
    with client_for(fake) as client:
        assert len(ids(client.get("/api/v2/products"))) == 100
        assert len(ids(client.get("/api/v2/products", params={"limit": 500}))) == 120
        too_many = client.get("/api/v2/products", params={"limit": 501})
        zero = client.get("/api/v2/products", params={"limit": 0})
    assert too_many.status_code == zero.status_code == 400
    assert too_many.json()["error"] == "limit must not exceed 500"


# --- v1 offset pagination -------------------------------------------------------------------


def test_v1_offset_pages_never_repeat_or_skip_at_any_limit(client: httpx.Client) -> None:
    note_ids = [n["id"] for n in NOTES]
    lead_ids = [lead["id"] for lead in LEADS if not lead["is_archived"]]
    for limit in range(1, len(note_ids) + 2):
        assert walk_offset(client, "/api/v1/notes", limit, nested=True) == note_ids
    for limit in range(1, len(lead_ids) + 2):
        assert walk_offset(client, "/api/v1/leads", limit, nested=False) == lead_ids


def test_v1_notes_use_nested_pagination_with_next_start_only_when_more(
    client: httpx.Client,
) -> None:
    first = client.get("/api/v1/notes", params={"limit": 5}).json()["additional_data"]
    last = client.get("/api/v1/notes", params={"start": 5, "limit": 5}).json()["additional_data"]
    assert first == {
        "pagination": {"start": 0, "limit": 5, "more_items_in_collection": True, "next_start": 5}
    }
    assert last == {"pagination": {"start": 5, "limit": 5, "more_items_in_collection": False}}


def test_v1_limit_above_500_is_capped_and_echoed(client: httpx.Client) -> None:
    response = client.get("/api/v1/notes", params={"limit": 10_000})
    assert response.status_code == 200
    assert response.json()["additional_data"]["pagination"]["limit"] == 500


def test_v1_notes_filter_by_deal_person_and_updated_since(client: httpx.Client) -> None:
    assert ids(client.get("/api/v1/notes", params={"deal_id": 1})) == [1, 2, 3]
    assert ids(client.get("/api/v1/notes", params={"person_id": 1})) == [1, 4]
    since = {"updated_since": "2026-02-06T10:00:00Z"}
    assert ids(client.get("/api/v1/notes", params=since)) == [6, 7]


def test_v1_leads_exclude_archived_and_leads_archived_holds_them(client: httpx.Client) -> None:
    archived = client.get("/api/v1/leads/archived")
    assert ids(archived) == [LEADS[1]["id"]]
    assert LEADS[1]["id"] not in ids(client.get("/api/v1/leads"))
    assert archived.json()["additional_data"] == {
        "start": 0,
        "limit": 100,
        "more_items_in_collection": False,
    }


# --- deals ----------------------------------------------------------------------------------


def test_deals_default_to_open_won_lost_without_archived_or_deleted(client: httpx.Client) -> None:
    assert ids(client.get("/api/v2/deals")) == [1, 2, 3, 6, 8, 9, 11]


def test_deals_status_filter_returns_deleted_only_when_asked(client: httpx.Client) -> None:
    assert ids(client.get("/api/v2/deals", params={"status": "deleted"})) == [5]
    assert ids(client.get("/api/v2/deals", params={"status": "won,deleted"})) == [2, 5, 11]
    assert client.get("/api/v2/deals", params={"status": "closed"}).status_code == 400


def test_archived_deals_endpoint_lists_archived_not_deleted(client: httpx.Client) -> None:
    assert ids(client.get("/api/v2/deals/archived")) == [4, 7]
    assert ids(client.get("/api/v2/deals/archived", params={"status": "deleted"})) == [10]


def test_updated_since_is_inclusive_and_updated_until_exclusive(client: httpx.Client) -> None:
    window = {"updated_since": "2026-03-01T10:00:00Z", "updated_until": "2026-04-01T10:00:00Z"}
    assert ids(client.get("/api/v2/deals", params=window)) == [1, 8]
    persons = {"updated_since": "2026-02-28T23:59:59Z", "updated_until": "2026-03-01T00:00:01Z"}
    assert ids(client.get("/api/v2/persons", params=persons)) == [1, 2, 5]
    bad = client.get("/api/v2/deals", params={"updated_since": "yesterday"})
    assert bad.status_code == 400


def test_ids_filter_selects_and_is_capped_at_100(client: httpx.Client) -> None:
    assert ids(client.get("/api/v2/deals", params={"ids": "9,1,4"})) == [1, 9]
    too_many = ",".join(str(i) for i in range(101))
    assert client.get("/api/v2/deals", params={"ids": too_many}).status_code == 400


def test_include_fields_adds_counts_from_the_sub_resources(client: httpx.Client) -> None:
    include = ",".join(
        [
            "participants_count",
            "followers_count",
            "email_messages_count",
            "activities_count",
            "done_activities_count",
            "undone_activities_count",
            "notes_count",
        ]
    )
    deals = client.get("/api/v2/deals", params={"ids": "1,2", "include_fields": include}).json()
    first, second = deals["data"]
    assert {k: v for k, v in first.items() if k.endswith("_count")} == {
        "participants_count": 3,
        "followers_count": 3,
        "email_messages_count": 2,
        "activities_count": 2,
        "done_activities_count": 1,
        "undone_activities_count": 1,
        "notes_count": 2,
    }
    assert second["participants_count"] == second["followers_count"] == 1
    assert "participants_count" not in client.get("/api/v2/deals/1").json()["data"]


def test_unsupported_include_fields_is_a_400(client: httpx.Client) -> None:
    response = client.get("/api/v2/deals", params={"include_fields": "smart_bcc_email"})
    assert response.status_code == 400
    assert "smart_bcc_email" in response.json()["error"]


def test_records_are_served_exactly_as_in_the_files(client: httpx.Client) -> None:
    assert client.get("/api/v2/persons").json()["data"] == PERSONS
    assert client.get("/api/v2/deals/4").json()["data"] == DEALS[3]


def test_stages_filter_by_pipeline(client: httpx.Client) -> None:
    assert ids(client.get("/api/v2/stages", params={"pipeline_id": 2})) == [3, 4]
    assert ids(client.get("/api/v2/pipelines", params={"sort_by": "id"})) == [1, 2]


def test_missing_deal_is_a_404_envelope(client: httpx.Client) -> None:
    response = client.get("/api/v2/deals/999")
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": "Deal not found",
        "error_info": "Please check developers.pipedrive.com",
        "data": None,
        "additional_data": None,
    }


# --- per-deal sub-resources -----------------------------------------------------------------


def test_participants_have_v1_person_objects_and_related_objects(client: httpx.Client) -> None:
    body = client.get("/api/v1/deals/1/participants").json()
    anna, blank, orphan = body["data"]
    assert anna["id"] == 101 and "deal_id" not in anna
    assert anna["person_id"] == {
        "value": 1,
        "name": "Anna Smith",
        "email": [{"value": "anna@example.com", "primary": True, "label": "work"}],
        "phone": [{"value": "+44 20 7946 0000", "primary": True, "label": "work"}],
        "owner_id": 1,
        "active_flag": True,
    }
    assert blank["person_id"]["email"] == [{"value": "", "primary": True}]
    assert orphan["person_id"] == {"value": 99} and orphan["person"] is None
    assert set(body["related_objects"]["person"]) == {"1", "3"}
    assert body["related_objects"]["organization"]["1"]["name"] == "Org 1"
    assert set(body["related_objects"]["user"]) == {"1", "2"}
    assert body["additional_data"] == {"start": 0, "limit": 100, "more_items_in_collection": False}


def test_participant_person_is_a_v1_person_with_root_custom_fields(client: httpx.Client) -> None:
    person = client.get("/api/v1/deals/1/participants").json()["data"][0]["person"]
    assert person["add_time"] == "2025-12-01 09:00:00"
    assert person["visible_to"] == "3"
    assert person["org_name"] == "Org 1" and person["owner_name"] == "Owner One"
    assert person[PERSON_ENUM_KEY] == "7"
    assert person[PERSON_SET_KEY] == "7,8"
    assert person[PERSON_MONEY_KEY] == 5
    assert person[f"{PERSON_MONEY_KEY}_currency"] == "EUR"
    assert "custom_fields" not in person


def test_v2_followers_are_user_id_and_rfc3339_add_time(client: httpx.Client) -> None:
    first = client.get("/api/v2/deals/1/followers", params={"limit": 2}).json()
    assert first["data"] == [
        {"user_id": 1, "add_time": "2026-01-02T11:00:00Z"},
        {"user_id": 2, "add_time": "2026-01-03T11:00:00Z"},
    ]
    cursor = first["additional_data"]["next_cursor"]
    rest = client.get("/api/v2/deals/1/followers", params={"limit": 2, "cursor": cursor}).json()
    assert rest["data"] == [{"user_id": 3, "add_time": "2026-01-04T11:00:00Z"}]
    assert rest["additional_data"]["next_cursor"] is None


def test_v1_followers_keep_their_file_shape_with_flat_pagination(client: httpx.Client) -> None:
    body = client.get("/api/v1/deals/2/followers").json()
    assert body["data"] == [
        {"id": 204, "user_id": 3, "deal_id": 2, "add_time": "2026-01-05 11:00:00"}
    ]
    assert body["additional_data"]["more_items_in_collection"] is False


def test_deal_mail_messages_are_wrapped_and_carry_body_only_when_asked(
    client: httpx.Client,
) -> None:
    plain = client.get("/api/v1/deals/1/mailMessages").json()["data"]
    with_body = client.get("/api/v1/deals/1/mailMessages", params={"include_body": 1}).json()
    assert [m["object"] for m in plain] == ["mailMessage", "mailMessage"]
    assert plain[0]["timestamp"] == "2026-01-10 09:00:00"
    assert plain[0]["data"]["subject"] == "Subject 0"
    assert "body" not in plain[0]["data"] and "deal_id" not in plain[0]["data"]
    assert with_body["data"][0]["data"]["body"] == "<p>Body 0</p>"


def test_mailbox_message_has_its_own_envelope_and_body_on_request(client: httpx.Client) -> None:
    body = client.get("/api/v1/mailbox/mailMessages/303", params={"include_body": 1}).json()
    assert {k: body[k] for k in ("success", "status_code", "status_text")} == {
        "success": True,
        "status_code": 200,
        "status_text": "OK",
    }
    assert body["data"]["id"] == 303 and body["data"]["body"] == "<p>Body 2</p>"
    assert "body" not in client.get("/api/v1/mailbox/mailMessages/303").json()["data"]
    assert client.get("/api/v1/mailbox/mailMessages/999").status_code == 404


def test_sub_resources_of_a_missing_deal_are_404(client: httpx.Client) -> None:
    for path in ("participants", "followers", "mailMessages"):
        response = client.get(f"/api/v1/deals/999/{path}")
        assert (response.status_code, response.json()["error"]) == (404, "Deal not found")
    assert client.get("/api/v2/deals/999/followers").status_code == 404


# --- field definitions, users, lookups ------------------------------------------------------


def test_v2_fields_are_derived_from_the_v1_definitions(client: httpx.Client) -> None:
    fields = {f["field_code"]: f for f in client.get("/api/v2/dealFields").json()["data"]}
    assert list(fields) == ["title", "visible_to", MONEY_KEY, STAGE_KEY]
    assert fields["title"] == {
        "field_code": "title",
        "field_name": "Title",
        "field_type": "varchar",
        "options": None,
        "subfields": None,
        "is_custom_field": False,
    }
    assert fields["visible_to"]["options"] == [
        {"id": "1", "label": "Owner"},
        {"id": "3", "label": "Company"},
    ]
    assert fields[STAGE_KEY]["options"] == [{"id": 1, "label": "Hot"}, {"id": 2, "label": "Cold"}]
    assert fields[MONEY_KEY]["subfields"] == [
        {
            "field_code": f"{MONEY_KEY}_currency",
            "field_name": "Currency of Budget",
            "field_type": "varchar",
        }
    ]


def test_v1_fields_are_served_as_in_the_file_with_flat_pagination(client: httpx.Client) -> None:
    body = client.get("/api/v1/dealFields", params={"limit": 4}).json()
    assert [f["key"] for f in body["data"]] == [
        "title",
        "visible_to",
        MONEY_KEY,
        f"{MONEY_KEY}_currency",
    ]
    assert body["additional_data"] == {
        "start": 0,
        "limit": 4,
        "more_items_in_collection": True,
        "next_start": 4,
    }


def test_users_me_is_the_token_user_with_the_company(client: httpx.Client) -> None:
    me = client.get("/api/v1/users/me").json()["data"]
    assert me["id"] == 1 and me["is_you"] is True
    assert {"company_domain", "company_id", "company_name"} <= set(me)


def test_unpaginated_v1_lists_and_the_legacy_v1_alias(client: httpx.Client) -> None:
    assert ids(client.get("/api/v1/users")) == [1, 2, 3]
    assert ids(client.get("/v1/users")) == [1, 2, 3]
    assert client.get("/api/v1/users/2").json()["data"]["name"] == "User Two"
    assert ids(client.get("/api/v1/currencies", params={"term": "eur"})) == [2]
    assert ids(client.get("/api/v1/activityTypes")) == [1]
    assert client.get("/api/v1/users").json()["additional_data"] is None


# --- errors ---------------------------------------------------------------------------------


def test_missing_token_gets_the_gateway_401(fake: PipedriveFake) -> None:
    with client_for(fake, token=None) as anonymous:
        response = anonymous.get("/api/v2/deals")
    assert response.status_code == 401
    assert response.headers["x-401-by-gw"] == "true"
    assert response.json() == {
        "success": False,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": "Please check developers.pipedrive.com",
    }


def test_wrong_token_gets_401(fake: PipedriveFake) -> None:
    with client_for(fake, token="wrong") as client:
        assert client.get("/api/v2/deals").status_code == 401


def test_query_and_bearer_tokens_are_accepted(fake: PipedriveFake) -> None:
    with client_for(fake, token=None) as client:
        by_query = client.get("/api/v2/deals", params={"api_token": TOKEN})
        by_bearer = client.get("/api/v2/deals", headers={"authorization": f"Bearer {TOKEN}"})
    assert by_query.status_code == by_bearer.status_code == 200


def test_unknown_path_is_a_404_envelope_and_wrong_method_a_405(client: httpx.Client) -> None:
    for path in ("/api/v2/nothing", "/api/v3/deals", "/v2/deals"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["success"] is False
    assert client.post("/api/v2/deals", json={}).status_code == 405


@pytest.mark.parametrize(
    ("path", "replacement"),
    [
        ("/api/v1/deals", "/api/v2/deals"),
        ("/v1/persons/1", "/api/v2/persons"),
        ("/api/v1/organizations/1/deals", "/api/v2/organizations"),
        ("/api/v1/pipelines", "/api/v2/pipelines"),
    ],
)
def test_deprecated_v1_entity_endpoints_are_410_pointing_to_v2(
    client: httpx.Client, path: str, replacement: str
) -> None:
    response = client.get(path)
    assert response.status_code == 410
    assert replacement in response.json()["error"]


# --- rate limits ----------------------------------------------------------------------------


def test_rate_limit_headers_are_on_every_response(tmp_path: Path) -> None:
    clock = FakeClock()
    fake = make_fake(tmp_path, clock=clock, pipedrive_burst=3, ban_after=1, ban_seconds=5)
    responses = []
    with client_for(fake) as client, client_for(fake, token=None) as anonymous:
        for path in ("/api/v2/deals", "/api/v2/nothing", "/api/v1/deals", "/api/v2/deals"):
            responses.append(client.get(path))
        responses.append(client.get("/api/v2/deals"))  # the second 429 earns a ban
        responses.append(client.get("/api/v2/deals"))
        clock.advance(6)
        responses.append(anonymous.get("/api/v2/deals"))
        responses.append(client.get("/api/v2/deals", params={"limit": 501}))
        responses.append(client.post("/api/v2/deals"))
    assert [r.status_code for r in responses] == [200, 404, 410, 429, 429, 403, 401, 400, 405]
    for response in responses:
        assert all(name in response.headers for name in RATE_LIMIT_HEADERS), response.status_code


def test_burst_over_the_window_is_429_then_recovers_after_it(tmp_path: Path) -> None:
    clock = FakeClock()
    fake = make_fake(tmp_path, clock=clock, pipedrive_burst=3)
    with client_for(fake) as client:
        allowed = [client.get("/api/v2/pipelines") for _ in range(3)]
        refused = client.get("/api/v2/pipelines")
        clock.advance(2.01)
        recovered = client.get("/api/v2/pipelines")
    assert [r.headers["x-ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]
    assert allowed[0].headers["x-ratelimit-limit"] == "3"
    assert allowed[0].headers["x-ratelimit-reset"] == "2"
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) >= 1
    assert refused.json()["error"] == "Request over limit"
    assert recovered.status_code == 200


@pytest.mark.parametrize(
    ("path", "cost"),
    [
        ("/api/v2/deals", 10),
        ("/api/v2/deals/1", 1),
        ("/api/v2/deals/archived", 20),
        ("/api/v2/deals/1/followers", 10),
        ("/api/v2/pipelines", 5),
        ("/api/v2/stages", 5),
        ("/api/v2/dealFields", 10),
        ("/api/v1/dealFields", 20),
        ("/api/v1/notes", 20),
        ("/api/v1/leads/archived", 40),
        ("/api/v1/users/me", 2),
        ("/api/v1/mailbox/mailMessages/301", 2),
    ],
)
def test_each_endpoint_costs_its_daily_tokens(client: httpx.Client, path: str, cost: int) -> None:
    response = client.get(path)
    assert response.status_code == 200
    remaining = int(response.headers["x-daily-ratelimit-token-remaining"])
    assert int(response.headers["x-daily-ratelimit-token-limit"]) - remaining == cost


def test_daily_budget_refuses_with_429_once_spent_until_utc_midnight(tmp_path: Path) -> None:
    clock = FakeClock()  # 12:00 UTC
    fake = make_fake(tmp_path, clock=clock, pipedrive_daily_tokens=25)
    with client_for(fake) as client:
        served = [client.get("/api/v2/deals") for _ in range(3)]  # the third crosses 25
        refused = [client.get("/api/v2/deals"), client.get("/api/v2/deals/1")]
        clock.advance(12 * 3600)
        next_day = client.get("/api/v2/deals")
    assert [r.status_code for r in served] == [200, 200, 200]
    assert [r.headers["x-daily-ratelimit-token-remaining"] for r in served] == ["15", "5", "0"]
    for response in refused:
        assert response.status_code == 429
        assert response.json()["error"] == "Request over limit"
        assert response.headers["x-daily-ratelimit-token-remaining"] == "0"
        assert response.headers["x-ratelimit-remaining"] != "0"
        assert response.headers["retry-after"] == str(12 * 3600)
    assert next_day.status_code == 200
    assert next_day.headers["x-daily-ratelimit-token-remaining"] == "15"
    assert fake.tokens_spent() == 40


def test_repeated_429s_earn_a_cloudflare_ban_that_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    fake = make_fake(tmp_path, clock=clock, pipedrive_burst=1, ban_after=2, ban_seconds=30)
    with client_for(fake) as client:
        statuses = [client.get("/api/v2/pipelines").status_code for _ in range(4)]
        ban = client.get("/api/v2/pipelines")
        clock.advance(31)
        after = client.get("/api/v2/pipelines")
    assert statuses == [200, 429, 429, 429]
    assert ban.status_code == 403
    assert ban.headers["content-type"].startswith("text/html")
    assert "Cloudflare" in ban.text
    assert after.status_code == 200


def test_limits_and_logs_are_shared_by_fakes_on_one_state_file(tmp_path: Path) -> None:
    clock = FakeClock()
    first = make_fake(tmp_path, clock=clock, pipedrive_burst=4)
    second = make_fake(tmp_path, clock=clock, pipedrive_burst=4)
    with client_for(first) as one, client_for(second) as two:
        statuses = [c.get("/api/v2/pipelines").status_code for c in (one, two, one, two, one)]
    assert statuses == [200, 200, 200, 200, 429]
    assert first.requests_served() == second.requests_served() == 5
    assert second.tokens_spent() == 20


CHILD_PROCESS = """
import sys
from pathlib import Path
from migration_pipeline_tests.sandbox.pipedrive_fixtures import client_for, make_fake
state_dir, dataset, now = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
fake = make_fake(state_dir, clock=lambda: now, pipedrive_burst=5, from_dir=dataset)
with client_for(fake) as client:
    print(",".join(str(client.get("/api/v2/pipelines").status_code) for _ in range(3)))
"""


def test_limits_and_logs_are_shared_with_another_process(tmp_path: Path) -> None:
    clock = FakeClock()  # both processes stand still at one instant: one burst window
    fake = make_fake(tmp_path, clock=clock, pipedrive_burst=5)
    with client_for(fake) as client:
        mine = [client.get("/api/v2/pipelines").status_code for _ in range(3)]
        arguments = [str(tmp_path), str(tmp_path / "dataset"), str(clock.now)]
        child = subprocess.run(
            [sys.executable, "-c", CHILD_PROCESS, *arguments],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    assert mine == [200, 200, 200]
    assert child.stdout.strip() == "200,200,429"
    assert fake.requests_served() == 6
    assert fake.tokens_spent() == 25


def test_the_sandbox_factory_serves_a_from_dir_dataset(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, write_dataset(tmp_path / "dataset"))
    with httpx.Client(
        transport=pipedrive_transport(settings), base_url="http://pipedrive.test"
    ) as client:
        response = client.get("/api/v2/deals/1", headers={"x-api-token": TOKEN})
    assert response.json()["data"]["title"] == "Deal 1"


def test_concurrent_threads_never_exceed_the_burst(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, clock=FakeClock(), pipedrive_burst=10)
    with client_for(fake) as client, ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: client.get("/api/v2/deals").status_code, range(30)))
    assert sorted(statuses) == [200] * 10 + [429] * 20


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("429", 429, "application/json"),
        ("ban", 403, "text/html"),
        ("html", 200, "text/html"),
    ],
)
def test_answer_faults_have_their_status_and_body(
    tmp_path: Path, kind: str, status: int, content_type: str
) -> None:
    fake = make_fake(tmp_path, faults=f"pipedrive.{kind}=1")
    with client_for(fake) as client:
        response = client.get("/api/v2/deals")
    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    assert fake.faults_injected() == {kind: 1}


def test_injected_429_looks_like_a_burst_429(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, faults="429=1")
    with client_for(fake) as client:
        response = client.get("/api/v2/deals")
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.json()["error"] == "Request over limit"


def test_5xx_faults_alternate_500_json_502_and_503_html(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, faults="5xx=1")
    with client_for(fake) as client:
        responses = [client.get("/api/v2/deals") for _ in range(3)]
    assert [r.status_code for r in responses] == [500, 502, 503]
    assert responses[0].json()["success"] is False
    assert [r.headers["content-type"].split(";")[0] for r in responses[1:]] == ["text/html"] * 2


def test_truncate_fault_cuts_the_json_body_in_half(tmp_path: Path) -> None:
    whole = client_for(make_fake(tmp_path / "whole")).get("/api/v2/deals").content
    fake = make_fake(tmp_path / "cut", faults="truncate=1")
    with client_for(fake) as client:
        response = client.get("/api/v2/deals")
    assert response.status_code == 200
    assert response.content == whole[: len(whole) // 2]
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("kind", ["timeout", "lost"])
def test_timeout_and_lost_faults_leave_the_client_without_an_answer(
    tmp_path: Path, kind: str
) -> None:
    fake = make_fake(tmp_path, faults=f"{kind}=1")
    with client_for(fake) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/api/v2/deals")
    assert fake.faults_injected() == {kind: 1}
    assert fake.requests_served() == 1


def test_faults_are_deterministic_by_seed(tmp_path: Path) -> None:
    def statuses(name: str, seed: int) -> list[int]:
        spec = f"429=0.2,5xx=0.2,html=0.2,ban=0.1,seed={seed}"
        with client_for(make_fake(tmp_path / name, faults=spec)) as client:
            return [client.get("/api/v2/pipelines").status_code for _ in range(40)]

    assert statuses("a", seed=5) == statuses("b", seed=5)
    assert statuses("c", seed=5) != statuses("d", seed=6)


def test_faulted_requests_cost_no_daily_tokens(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, faults="5xx=1")
    with client_for(fake) as client:
        for _ in range(3):
            client.get("/api/v2/deals")
    assert fake.tokens_spent() == 0


def test_faults_hit_only_authenticated_requests(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, faults="html=1")
    with client_for(fake, token=None) as anonymous:
        assert anonymous.get("/api/v2/deals").status_code == 401
    assert fake.faults_injected() == {}


def test_latency_fault_delays_every_request(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, faults="latency=60ms")
    with client_for(fake) as client:
        started = time.perf_counter()
        client.get("/api/v2/pipelines")
        client.get("/api/v2/pipelines")
    assert time.perf_counter() - started >= 0.12


# --- the dataset ----------------------------------------------------------------------------


def broken_dataset(tmp_path: Path) -> Path:
    dataset = write_dataset(tmp_path / "dataset")
    lines = (dataset / "deals.jsonl").read_text().splitlines()
    lines[2] = '{"id": 3, "title": '
    (dataset / "deals.jsonl").write_text("\n".join(lines) + "\n")
    return dataset


def test_a_bad_jsonl_line_is_a_500_naming_the_file_and_line(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, from_dir=broken_dataset(tmp_path))
    with client_for(fake) as client:
        response = client.get("/api/v2/deals")
        persons = client.get("/api/v2/persons")
    assert response.status_code == 500
    assert response.json()["success"] is False
    assert "deals.jsonl:3" in response.json()["error"]
    assert persons.status_code == 200  # files load lazily: one bad file spoils only its entity


def test_validate_raises_naming_the_file_and_line(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, from_dir=broken_dataset(tmp_path))
    with pytest.raises(DatasetError, match=r"deals\.jsonl:3"):
        fake.validate()


# --- secrets --------------------------------------------------------------------------------


def test_the_token_never_appears_in_answers_or_state(fake: PipedriveFake) -> None:
    with client_for(fake, token=None) as client:
        responses = [
            client.get("/api/v2/deals", params={"api_token": TOKEN}),
            client.get("/api/v2/nothing", params={"api_token": TOKEN}),
            client.get("/api/v2/deals", params={"api_token": TOKEN, "limit": "x"}),
            client.get("/api/v2/deals", headers={"x-api-token": TOKEN + "-wrong"}),
            client.get("/api/v1/users/me", headers={"authorization": f"Bearer {TOKEN}"}),
        ]
    for response in responses:
        assert TOKEN not in response.text
        assert all(TOKEN not in value for value in response.headers.values())
    state_files = fake.settings.pipedrive_state.parent.glob("pipedrive.sqlite3*")
    assert all(TOKEN.encode() not in path.read_bytes() for path in state_files)


# --- over real HTTP -------------------------------------------------------------------------


@contextmanager
def served_over_http(fake: PipedriveFake) -> Iterator[str]:
    config = uvicorn.Config(
        asgi_app(fake.handle), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_fake_serves_over_real_http(fake: PipedriveFake) -> None:
    with (
        served_over_http(fake) as base_url,
        httpx.Client(base_url=base_url, headers={"x-api-token": TOKEN}) as client,
    ):
        pages = walk_cursor(client, "/api/v2/deals", {"limit": 3})
        unauthorized = client.get("/api/v2/deals", headers={"x-api-token": "wrong"})
    assert pages == [1, 2, 3, 6, 8, 9, 11]
    assert unauthorized.status_code == 401
    assert unauthorized.headers["x-401-by-gw"] == "true"
    assert all(name in unauthorized.headers for name in RATE_LIMIT_HEADERS)
