"""The amoCRM client, first against ``httpx.MockTransport`` handlers that script the real API
(paging, ``request_id`` mapping, 429 and ban pages, validation errors, lost answers), then
against the sandbox's fake amoCRM in-process. Time is a fake clock whose ``sleep`` only
records and advances, so nothing waits."""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from migration_pipeline import limiter as limiter_module
from migration_pipeline import sandbox
from migration_pipeline.clients.amocrm import (
    AmoCrmClient,
    ComplexCreated,
    Created,
    InvalidItems,
    ItemError,
    make_http_client,
)
from migration_pipeline.clients.errors import (
    AccessDenied,
    ApiError,
    BadResponse,
    InDoubt,
    RateLimited,
    Rejected,
    Unavailable,
)
from migration_pipeline.limiter import account_limiter
from migration_pipeline.resources import AmoCrmResource
from migration_pipeline.sandbox.dataset import write_entity
from migration_pipeline_tests.clients.fake_clock import FakeClock

TOKEN = "amo-SECRET-token-7d41c2"
BASE_URL = "https://acme.amocrm.example"
Handler = Callable[[httpx.Request], httpx.Response]


class CountingLimiter:
    """A :class:`RequestLimiter` that admits everything and counts."""

    def __init__(self) -> None:
        self.acquired = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self.acquired += 1


class Recorder:
    """Wraps a handler; keeps every request it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self.handler(request)

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


def make_client(
    handler: Handler, **options: Any
) -> tuple[AmoCrmClient, Recorder, FakeClock, CountingLimiter]:
    clock, limiter, recorder = FakeClock(), CountingLimiter(), Recorder(handler)
    http = make_http_client(BASE_URL, TOKEN, transport=httpx.MockTransport(recorder))
    client = AmoCrmClient(http, limiter=limiter, sleep=clock.sleep, clock=clock, **options)
    return client, recorder, clock, limiter


def hal(payload: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(payload), headers={"content-type": "application/hal+json"}
    )


def problem(status: int, detail: str, **extra: Any) -> httpx.Response:
    body = {**extra, "title": "Bad Request", "type": "x", "status": status, "detail": detail}
    return httpx.Response(
        status, content=json.dumps(body), headers={"content-type": "application/problem+json"}
    )


def nginx(status: int) -> httpx.Response:
    page = f"<html><head><title>{status}</title></head><body><center>nginx</center></body></html>"
    return httpx.Response(status, content=page, headers={"content-type": "text/html"})


def page(key: str, records: list[dict], *, page_number: int, more: bool) -> httpx.Response:
    links: dict[str, Any] = {"self": {"href": f"{BASE_URL}/api/v4/{key}?page={page_number}"}}
    if more:
        links["next"] = {"href": f"{BASE_URL}/api/v4/{key}?page={page_number + 1}"}
    return hal({"_page": page_number, "_links": links, "_embedded": {key: records}})


def created(key: str, ids_by_request_id: dict[str, int]) -> httpx.Response:
    results = [{"id": ident, "request_id": rid} for rid, ident in ids_by_request_id.items()]
    return hal({"_embedded": {key: results}})


def echo_created(key: str, first_id: int = 100, *, reverse: bool = False) -> Handler:
    """A write endpoint creating every item, answering ``id = first_id + request_id``."""

    def handle(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)
        order = reversed(items) if reverse else items
        return created(key, {i["request_id"]: first_id + int(i["request_id"]) for i in order})

    return handle


def script(*responses: httpx.Response | Exception) -> Handler:
    """Answers in order; an exception is raised (as a transport would), the last one repeats."""
    remaining = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        outcome = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if isinstance(outcome, Exception):
            raise type(outcome)(str(outcome), request=request)
        return outcome

    return handle


OK_LEADS = page("leads", [{"id": 1}], page_number=1, more=False)


# -- paging -----------------------------------------------------------------------------------


def test_list_pages_until_no_next_link() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page"])
        return page("leads", [{"id": number * 10}], page_number=number, more=number < 3)

    client, recorder, _, limiter = make_client(handler)
    pages = list(client.list("leads", {"filter[id][]": [10, 20, 30], "with": "contacts"}))
    assert pages == [[{"id": 10}], [{"id": 20}], [{"id": 30}]]
    assert [r.url.params["page"] for r in recorder.requests] == ["1", "2", "3"]
    assert {r.url.params["limit"] for r in recorder.requests} == {"250"}
    assert recorder.requests[0].url.params.get_list("filter[id][]") == ["10", "20", "30"]
    assert recorder.requests[0].url.path == "/api/v4/leads"
    assert limiter.acquired == client.stats.requests == 3


def test_list_stops_on_204() -> None:
    client, recorder, _, _ = make_client(
        script(page("contacts", [{"id": 1}], page_number=1, more=True), httpx.Response(204))
    )
    assert list(client.list("contacts")) == [[{"id": 1}]]
    assert len(recorder.requests) == 2


def test_empty_listing_and_missing_entity_are_204() -> None:
    client, _, _, _ = make_client(script(httpx.Response(204)))
    assert list(client.list("leads/notes", {"filter[entity_id][]": [1]})) == []
    assert client.get("leads", 42) is None


def test_get_returns_the_entity() -> None:
    client, recorder, _, _ = make_client(script(hal({"id": 42, "name": "Deal"})))
    assert client.get("leads", 42, {"with": "contacts"}) == {"id": 42, "name": "Deal"}
    assert recorder.requests[0].url.path == "/api/v4/leads/42"


def test_notes_tasks_and_links_filter_by_entity_ids_in_chunks() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = request.url.params.get_list("filter[entity_id][]")
        key = request.url.path.rsplit("/", 1)[-1]
        if key == "links":
            records = [
                {
                    "entity_id": int(i),
                    "entity_type": "leads",
                    "to_entity_id": 7,
                    "to_entity_type": "contacts",
                    "metadata": {"main_contact": True},
                }
                for i in ids
            ]
        else:
            records = [{"id": int(i) + 1000, "entity_id": int(i)} for i in ids]
        return page(key, records, page_number=1, more=False)

    client, recorder, _, _ = make_client(handler)
    ids = list(range(1, 151))
    assert len(client.notes("leads", ids)) == 150
    assert len(client.tasks("leads", ids)) == 150
    links = client.links("leads", ids)
    assert len(links) == 150 and links[0].is_main and links[0].to_entity_type == "contacts"
    assert [len(r.url.params.get_list("filter[entity_id][]")) for r in recorder.requests] == [
        100,
        50,
    ] * 3
    assert recorder.requests[2].url.params["filter[entity_type]"] == "leads"
    assert recorder.requests[2].url.path == "/api/v4/tasks"


# -- writes and request_id --------------------------------------------------------------------


def test_create_maps_results_by_request_id_not_by_order() -> None:
    client, recorder, _, _ = make_client(echo_created("leads", reverse=True))
    items = [{"name": "a"}, {"name": "b", "request_id": "theirs"}, {"name": "c"}]
    assert client.create("leads", items) == (Created(0, 100), Created(1, 101), Created(2, 102))
    sent = recorder.bodies()[0]
    assert [item["request_id"] for item in sent] == ["0", "1", "2"]
    assert [item["name"] for item in sent] == ["a", "b", "c"]
    assert items[1]["request_id"] == "theirs", "the caller's items are not modified"


def test_create_of_nothing_sends_nothing() -> None:
    client, recorder, _, _ = make_client(script(httpx.Response(500)))
    assert client.create("leads", []) == ()
    assert client.link("leads", []) == ()
    assert recorder.requests == []


def test_batches_over_the_documented_maxima_are_refused_before_sending() -> None:
    client, recorder, _, _ = make_client(echo_created("leads"))
    with pytest.raises(ValueError, match="at most 250"):
        client.create("leads", [{}] * 251)
    with pytest.raises(ValueError, match="at most 50"):
        client.create_complex([{}] * 51)
    with pytest.raises(ValueError, match="at most 250"):
        client.link("leads", [{}] * 251)
    assert recorder.requests == []
    assert len(client.create("leads", [{}] * 250)) == 250


@pytest.mark.parametrize(
    "answer",
    [
        {"0": 100},  # one item unaccounted for
        {"0": 100, "1": 101, "7": 107},  # a request_id we never sent
        {"0": 100, "x": 101},
        {"0": 100, "1": None},  # no id: created, but as what?
    ],
)
def test_a_write_answer_that_does_not_account_for_every_item_is_in_doubt(answer: dict) -> None:
    client, _, _, _ = make_client(script(created("leads", answer)))
    with pytest.raises(InDoubt, match="Pipedrive id"):
        client.create("leads", [{"name": "a"}, {"name": "b"}])
    assert client.stats.in_doubt == 1


def test_update_maps_by_request_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)
        results = [
            {"id": item["id"], "updated_at": 1700, "request_id": item["request_id"]}
            for item in reversed(items)
        ]
        return hal({"_embedded": {"leads": results}})

    client, recorder, _, _ = make_client(handler)
    updated = client.update("leads", [{"id": 5, "price": 1}, {"id": 6, "price": 2}])
    assert [(u.index, u.id, u.updated_at) for u in updated] == [(0, 5, 1700), (1, 6, 1700)]
    assert recorder.requests[0].method == "PATCH"
    with pytest.raises(ValueError, match="id"):
        client.update("leads", [{"price": 3}])


def test_create_complex_maps_request_id_lists_including_merged_leads() -> None:
    answer = [
        {"id": 9, "contact_id": 19, "company_id": None, "request_id": ["2"], "merged": False},
        {"id": 7, "contact_id": 17, "company_id": 27, "request_id": ["0", "1"], "merged": True},
    ]
    client, recorder, _, _ = make_client(script(hal(answer)))
    leads = [{"name": "a"}, {"name": "a again"}, {"name": "b"}]
    assert client.create_complex(leads) == (
        ComplexCreated(0, 7, 17, 27, True),
        ComplexCreated(1, 7, 17, 27, True),
        ComplexCreated(2, 9, 19, None, False),
    )
    assert recorder.requests[0].url.path == "/api/v4/leads/complex"


def test_notes_and_tasks_are_created_where_the_api_expects_them() -> None:
    client, recorder, _, _ = make_client(
        lambda request: echo_created(request.url.path.rsplit("/", 1)[-1])(request)
    )
    assert client.create_notes("contacts", [{"entity_id": 1, "note_type": "common"}]) == (
        Created(0, 100),
    )
    assert client.create_tasks([{"text": "call", "complete_till": 1}]) == (Created(0, 100),)
    assert [r.url.path for r in recorder.requests] == ["/api/v4/contacts/notes", "/api/v4/tasks"]


# -- rate limits and bans ---------------------------------------------------------------------


def test_429_html_is_retried_after_a_pause_and_counted() -> None:
    client, recorder, clock, limiter = make_client(script(nginx(429), nginx(429), OK_LEADS))
    assert list(client.list("leads")) == [[{"id": 1}]]
    assert client.stats.rate_limited == 2
    assert client.stats.retries == 2
    assert len(recorder.requests) == limiter.acquired == 3, "every attempt passes the limiter"
    assert all(wait >= 1.0 for wait in clock.sleeps), "429 waits at least a second"


def test_429_on_a_write_is_retried_because_nothing_was_processed() -> None:
    client, recorder, _, _ = make_client(script(nginx(429), created("leads", {"0": 5})))
    assert client.create("leads", [{"name": "a"}]) == (Created(0, 5),)
    assert len(recorder.requests) == 2
    assert client.stats.rate_limited == 1 and client.stats.in_doubt == 0


def test_429_that_never_ends_raises_rate_limited() -> None:
    client, recorder, _, _ = make_client(script(nginx(429)), max_retries=3)
    with pytest.raises(RateLimited, match="gave up after 4 attempts"):
        client.account()
    assert len(recorder.requests) == 4


def test_a_429_holds_back_the_other_threads_too() -> None:
    first_429_sent = threading.Event()
    arrivals: dict[str, float] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        who = request.url.path.rsplit("/", 1)[-1]
        if who == "leads" and not first_429_sent.is_set():
            arrivals["429"] = time.monotonic()
            first_429_sent.set()
            return nginx(429)
        arrivals.setdefault(who, time.monotonic())
        return page(who, [{"id": 1}], page_number=1, more=False)

    http = make_http_client(BASE_URL, TOKEN, transport=httpx.MockTransport(handler))
    client = AmoCrmClient(http, limiter=CountingLimiter(), backoff=0.1)  # pause: 0.2 s

    def other_thread() -> None:
        first_429_sent.wait(5)
        list(client.list("contacts"))

    thread = threading.Thread(target=other_thread)
    thread.start()
    list(client.list("leads"))
    thread.join()
    assert arrivals["contacts"] - arrivals["429"] >= 0.15


def test_403_html_means_the_account_is_blocked_and_stops_at_once() -> None:
    client, recorder, _, _ = make_client(script(nginx(403), OK_LEADS))
    with pytest.raises(AccessDenied) as raised:
        list(client.list("leads"))
    assert len(recorder.requests) == 1
    message = str(raised.value)
    assert "blocked the account for too many requests" in message
    assert "contact amoCRM support" in message
    assert client.stats.retries == 0


def test_403_json_is_missing_rights() -> None:
    client, _, _, _ = make_client(script(problem(403, "Не хватает прав для вызова метода")))
    with pytest.raises(AccessDenied, match="rights"):
        client.users()


def test_401_names_the_variable_never_the_token() -> None:
    client, recorder, _, _ = make_client(script(problem(401, "Неверный логин или пароль")))
    with pytest.raises(AccessDenied) as raised:
        client.account()
    assert "AMOCRM_ACCESS_TOKEN" in str(raised.value)
    assert TOKEN not in str(raised.value) and TOKEN not in repr(raised.value)
    assert len(recorder.requests) == 1


# -- rejected batches -------------------------------------------------------------------------


VALIDATION_BODY = {
    "validation-errors": [
        {
            "request_id": "2",
            "errors": [
                {
                    "code": "NotSupportedChoice",
                    "path": "custom_fields_values.0.field_id",
                    "detail": "The value you selected is not a valid choice.",
                },
                {"code": "InvalidType", "path": "price", "detail": "This value should be int."},
            ],
        },
        {
            "request_id": "0",
            "errors": [{"code": "NotBlank", "path": "text", "detail": "Must not be blank."}],
        },
    ]
}


def test_400_validation_errors_name_the_offending_items() -> None:
    client, recorder, _, _ = make_client(
        script(problem(400, "Request validation failed", **VALIDATION_BODY))
    )
    with pytest.raises(InvalidItems) as raised:
        client.create("leads", [{"name": "a"}, {"name": "b"}, {"name": "c"}])
    error = raised.value
    assert isinstance(error, Rejected) and error.status == 400
    assert error.indexes == {0, 2}
    assert error.errors[0] == ItemError(
        request_id="2",
        index=2,
        code="NotSupportedChoice",
        path="custom_fields_values.0.field_id",
        detail="The value you selected is not a valid choice.",
    )
    assert len(error.errors) == 3
    assert "2 item(s)" in str(error) and "batch rejected" in str(error)
    assert len(recorder.requests) == 1
    assert client.stats.rejected == 1 and client.stats.in_doubt == 0
    copy = pickle.loads(pickle.dumps(error))  # Dagster ships errors between processes
    assert copy.errors == error.errors and copy.indexes == {0, 2}


def test_400_too_many_entities_is_rejected_with_a_hint() -> None:
    client, _, _, _ = make_client(
        script(problem(400, "Too many entities in one request: 251 (at most 250)"))
    )
    with pytest.raises(Rejected) as raised:
        client.create("leads", [{"name": "a"}])
    assert not isinstance(raised.value, InvalidItems)
    assert "lower the batch size" in str(raised.value)


# -- the retry-or-reconcile line --------------------------------------------------------------


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("disconnected")]
)
def test_write_with_a_lost_answer_is_in_doubt_and_not_retried(failure: Exception) -> None:
    client, recorder, _, _ = make_client(script(failure, created("leads", {"0": 1})))
    with pytest.raises(InDoubt) as raised:
        client.create("leads", [{"name": "a"}])
    assert len(recorder.requests) == 1
    assert client.stats.in_doubt == 1 and client.stats.retries == 0
    assert "Pipedrive id" in str(raised.value)
    assert isinstance(raised.value.__cause__, type(failure))


@pytest.mark.parametrize("response", [problem(500, "error"), nginx(502), nginx(503), nginx(504)])
def test_write_answered_5xx_is_in_doubt_and_not_retried(response: httpx.Response) -> None:
    client, recorder, _, _ = make_client(script(response, created("leads", {"0": 1})))
    with pytest.raises(InDoubt) as raised:
        client.create("leads", [{"name": "a"}])
    assert len(recorder.requests) == 1
    assert raised.value.status == response.status_code
    if response.status_code == 504:
        assert "shrink" in str(raised.value)


def test_write_accepted_with_a_garbled_body_is_in_doubt() -> None:
    client, recorder, _, _ = make_client(script(nginx(200), created("leads", {"0": 1})))
    with pytest.raises(InDoubt):
        client.create("leads", [{"name": "a"}])
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("")]
)
def test_write_never_sent_is_retried(failure: Exception) -> None:
    client, recorder, _, limiter = make_client(script(failure, created("leads", {"0": 1})))
    assert client.create("leads", [{"name": "a"}]) == (Created(0, 1),)
    assert len(recorder.requests) == limiter.acquired == 2
    assert client.stats.retries == 1 and client.stats.in_doubt == 0


@pytest.mark.parametrize(
    "failure",
    [nginx(502), problem(500, "error"), nginx(504), httpx.ReadTimeout("t"), nginx(200)],
)
def test_read_failures_are_retried(failure: httpx.Response | Exception) -> None:
    client, recorder, _, _ = make_client(script(failure, OK_LEADS))
    assert list(client.list("leads")) == [[{"id": 1}]]
    assert len(recorder.requests) == 2
    assert client.stats.retries == 1


def test_read_failing_for_good_raises_unavailable() -> None:
    client, recorder, clock, _ = make_client(script(nginx(503)), max_retries=2)
    with pytest.raises(Unavailable, match="gave up after 3 attempts"):
        client.pipelines()
    assert len(recorder.requests) == 3
    assert len(clock.sleeps) == 2


def test_records_of_the_wrong_shape_are_bad_responses_not_key_errors() -> None:
    client, _, _, _ = make_client(
        script(page("users", [{"name": "no id"}], page_number=1, more=False))
    )
    with pytest.raises(BadResponse, match="unexpected shape"):
        client.users()
    client, _, _, _ = make_client(
        script(hal({"_embedded": {"statuses": [{"id": 1, "request_id": "0"}]}}))
    )
    with pytest.raises(InDoubt, match="unexpected shape"):
        client.create_statuses(5, [{"name": "New", "sort": 10}])


def test_redirects_are_not_followed() -> None:
    moved = httpx.Response(301, headers={"location": "https://www.amocrm.ru/"})
    client, recorder, _, _ = make_client(script(moved))
    with pytest.raises(BadResponse, match="AMOCRM_BASE_URL"):
        client.account()
    assert len(recorder.requests) == 1


# -- lookups by custom field ------------------------------------------------------------------


PD_FIELD = 555


def lead(lead_id: int, pipedrive_id: str | int | None) -> dict[str, Any]:
    values = [] if pipedrive_id is None else [{"value": pipedrive_id}]
    return {"id": lead_id, "custom_fields_values": [{"field_id": PD_FIELD, "values": values}]}


STORED = [lead(1, "12"), lead(2, "120"), lead(3, 7), lead(4, "12"), lead(5, None)]


def search_handler(*, filter_support: str) -> Handler:
    """``filter_support``: ``"works"``, ``"400"`` or ``"ignored"`` (returns everything)."""

    def handle(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        wanted = params.get_list(f"filter[custom_fields_values][{PD_FIELD}][]")
        if wanted and filter_support == "400":
            return problem(400, "filter is not supported")
        if wanted and filter_support == "works":
            found = [r for r in STORED if str(_value(r)) in wanted]
        elif "query" in params:
            found = [r for r in STORED if params["query"] in str(_value(r))]
        else:
            found = STORED
        if not found:
            return httpx.Response(204)
        return page("leads", found, page_number=1, more=False)

    return handle


def _value(record: dict[str, Any]) -> Any:
    values = record["custom_fields_values"][0]["values"]
    return values[0]["value"] if values else None


@pytest.mark.parametrize("filter_support", ["works", "400", "ignored"])
def test_find_by_field_matches_exactly_whatever_the_account_supports(filter_support: str) -> None:
    client, recorder, _, _ = make_client(search_handler(filter_support=filter_support))
    found = client.find_by_field("leads", PD_FIELD, ["12", 7, "99"])
    assert {value: [r["id"] for r in records] for value, records in found.items()} == {
        "12": [1, 4],
        7: [3],
        "99": [],
    }
    queries = [r.url.params.get("query") for r in recorder.requests if "query" in r.url.params]
    if filter_support == "works":
        assert len(recorder.requests) == 1 and not queries
    else:
        assert sorted(queries) == ["12", "7", "99"]
        client.find_by_field("leads", PD_FIELD, ["120"])  # remembered: straight to query=
        assert recorder.requests[-1].url.params["query"] == "120"


# -- secrets ----------------------------------------------------------------------------------


def test_token_travels_only_in_the_authorization_header(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = script(
        nginx(429),
        httpx.ConnectError("refused"),
        OK_LEADS,
        problem(400, "Request validation failed", **VALIDATION_BODY),
        problem(401, "Неверный логин или пароль"),
        nginx(403),
        nginx(502),
        httpx.ReadTimeout("timed out"),
    )
    client, recorder, _, _ = make_client(answers)
    errors: list[ApiError] = []
    list(client.list("leads", {"query": "x"}))
    for call in (
        lambda: client.create("leads", [{"name": "a"}] * 3),
        client.account,
        client.users,
        lambda: client.create("leads", [{"name": "a"}]),
        lambda: client.create("leads", [{"name": "a"}]),
    ):
        with pytest.raises(ApiError) as raised:
            call()
        errors.append(raised.value)
    assert [type(e) for e in errors] == [InvalidItems, AccessDenied, AccessDenied, InDoubt, InDoubt]
    for error in errors:
        assert TOKEN not in str(error) and TOKEN not in repr(error)
        assert TOKEN not in str(pickle.loads(pickle.dumps(error)).__dict__)
    assert TOKEN not in caplog.text  # ours and httpx's own records alike
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.endswith("clients.amocrm"))
    assert "GET /api/v4/leads" in ours and "query=" not in ours, "paths only, no query"
    for request in recorder.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in str(request.url)


def test_make_http_client_refuses_bad_configuration_without_echoing_the_token() -> None:
    with pytest.raises(ValueError, match="AMOCRM_ACCESS_TOKEN"):
        make_http_client(BASE_URL, "")
    with pytest.raises(ValueError) as raised:
        make_http_client(BASE_URL, "tok\nen-SECRET")
    assert "SECRET" not in str(raised.value)
    for url in (f"{BASE_URL}/api/v4", f"{BASE_URL}?token=x"):
        with pytest.raises(ValueError, match="account host"):
            make_http_client(url, TOKEN)


# -- threads ----------------------------------------------------------------------------------


def test_one_client_serves_many_threads() -> None:
    client, recorder, _, limiter = make_client(echo_created("leads"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: client.create("leads", [{"n": n}] * 3), range(40)))
    assert all(len(result) == 3 for result in results)
    assert client.stats.requests == len(recorder.requests) == limiter.acquired == 40


# -- against the sandbox's fake amoCRM --------------------------------------------------------

SANDBOX_TOKEN = "sandbox-token-for-client-tests-93ab"
PIPEDRIVE_USERS = [
    {"id": uid, "name": f"User {uid}", "email": f"user{uid}@acme.example", "active_flag": True}
    for uid in range(1, 6)
]


def make_world(tmp_path: Path, **overrides: Any) -> sandbox.SandboxSettings:
    dataset = tmp_path / "dataset"
    if not dataset.exists():
        write_entity(dataset, "users", PIPEDRIVE_USERS)
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "from_dir": dataset,
        "amocrm_rps": 1000,
        "ban_after": 0,
        "amocrm_token": SANDBOX_TOKEN,
    }
    return sandbox.SandboxSettings(**(values | overrides))


def sandbox_client(
    world: sandbox.SandboxSettings, *, limiter: Any = None, token: str = SANDBOX_TOKEN, **options
) -> AmoCrmClient:
    http = make_http_client(sandbox.AMOCRM_URL, token, transport=sandbox.amocrm_transport(world))
    if limiter is None:
        limiter = account_limiter(sandbox.AMOCRM_URL, world.amocrm_rps, data_dir=world.data_dir)
    return AmoCrmClient(http, limiter=limiter, **options)


@pytest.fixture
def world(tmp_path: Path) -> sandbox.SandboxSettings:
    return make_world(tmp_path)


@pytest.fixture(autouse=True)
def _close_limiters(tmp_path: Path) -> Iterator[None]:
    """Close the per-process limiters a test opened under its ``tmp_path`` (their trimming
    threads would otherwise outlive it)."""
    yield
    for key in [key for key in limiter_module._limiters if key[1].is_relative_to(tmp_path)]:
        limiter_module._limiters.pop(key).close()


def test_sandbox_setup_reads(world: sandbox.SandboxSettings) -> None:
    client = sandbox_client(world)
    account = client.account(with_=("task_types",))
    assert account.currency == "RUB" and account.subdomain == "sandbox"
    assert [t["code"] for t in account.raw["_embedded"]["task_types"]] == ["FOLLOW_UP", "MEETING"]
    users = client.users()
    assert "user1@acme.example" in {user.email for user in users}
    assert any(user.is_admin for user in users)
    (pipeline,) = client.pipelines()
    assert pipeline.is_main and {142, 143} <= {status.id for status in pipeline.statuses}
    phone = next(f for f in client.custom_fields("contacts") if f.code == "PHONE")
    assert phone.type == "multitext" and "MOB" in {e.code for e in phone.enums}
    assert {reason.name for reason in client.loss_reasons()} >= {"Дорого"}


def test_sandbox_write_read_back_and_reconcile(world: sandbox.SandboxSettings) -> None:
    client = sandbox_client(world)
    (field,) = client.create_custom_fields("leads", [{"name": "Pipedrive ID", "type": "text"}])
    (contact_field,) = client.create_custom_fields(
        "contacts", [{"name": "Pipedrive ID", "type": "text"}]
    )
    leads = [
        {"name": f"Deal {n}", "custom_fields_values": [pd_value(field.id, f"deal-{n}")]}
        for n in range(300)
    ]
    created_leads = client.create("leads", leads[:250]) + client.create("leads", leads[250:])
    assert len({c.id for c in created_leads}) == 300

    pages = list(client.list("leads"))
    assert [len(p) for p in pages] == [250, 50]

    found = client.find_by_field("leads", field.id, ["deal-7", "deal-299", "deal-1000"])
    assert [r["id"] for r in found["deal-7"]] == [created_leads[7].id]
    assert [r["id"] for r in found["deal-299"]] == [created_leads[299].id]
    assert found["deal-1000"] == []
    assert client.get("leads", created_leads[0].id)["name"] == "Deal 0"
    assert client.get("leads", 1) is None

    (complex_lead,) = client.create_complex(
        [
            {
                "name": "Complex",
                "_embedded": {
                    "contacts": [
                        {"name": "Ann", "custom_fields_values": [pd_value(contact_field.id, "p-1")]}
                    ],
                    "companies": [{"name": "Acme"}],
                },
            }
        ]
    )
    links = client.links("leads", [complex_lead.lead_id])
    assert {(link.to_entity_type, link.to_entity_id) for link in links} == {
        ("contacts", complex_lead.contact_id),
        ("companies", complex_lead.company_id),
    }
    client.link(
        "leads",
        [{"entity_id": created_leads[0].id, "to_entity_id": complex_lead.contact_id,
          "to_entity_type": "contacts"}],
    )  # fmt: skip
    client.create_notes(
        "leads",
        [{"entity_id": complex_lead.lead_id, "note_type": "common", "params": {"text": "hi"}}],
    )
    client.create_tasks(
        [{"text": "call", "complete_till": 2_000_000_000, "entity_type": "leads",
          "entity_id": complex_lead.lead_id}]
    )  # fmt: skip
    assert [n["params"]["text"] for n in client.notes("leads", [complex_lead.lead_id])] == ["hi"]
    assert [t["text"] for t in client.tasks("leads", [complex_lead.lead_id])] == ["call"]
    assert client.update("leads", [{"id": created_leads[1].id, "price": 10}])[0].id == (
        created_leads[1].id
    )


def pd_value(field_id: int, value: str) -> dict[str, Any]:
    return {"field_id": field_id, "values": [{"value": value}]}


def test_sandbox_validation_error_quarantines_one_item_and_the_rest_goes_through(
    world: sandbox.SandboxSettings,
) -> None:
    client = sandbox_client(world)
    items = [{"name": "ok 0"}, {"name": "bad", "status_id": 999_999}, {"name": "ok 2"}]
    with pytest.raises(InvalidItems) as raised:
        client.create("leads", items)
    assert raised.value.indexes == {1}
    assert raised.value.errors[0].path == "status_id"
    assert sandbox.amocrm_fake(world).entity_counts()["leads"] == 0, "nothing was created"
    rest = [item for n, item in enumerate(items) if n not in raised.value.indexes]
    assert len(client.create("leads", rest)) == 2


def test_sandbox_lost_answer_is_in_doubt_and_reconciled_by_lookup(
    world: sandbox.SandboxSettings,
) -> None:
    client = sandbox_client(world)
    (field,) = client.create_custom_fields("contacts", [{"name": "Pipedrive ID", "type": "text"}])
    lossy = sandbox_client(world.with_faults("amocrm.lost=1"))
    with pytest.raises(InDoubt):
        lossy.create(
            "contacts", [{"name": "Ann", "custom_fields_values": [pd_value(field.id, "41")]}]
        )
    assert lossy.stats.in_doubt == 1 and lossy.stats.requests == 1
    found = client.find_by_field("contacts", field.id, [41])
    assert [record["name"] for record in found[41]] == ["Ann"], "it landed: do not resend"


def test_sandbox_pipelines_statuses_and_loss_reasons(world: sandbox.SandboxSettings) -> None:
    client = sandbox_client(world)
    pipeline = client.create_pipeline(
        "Pipedrive: Sales", sort=20, statuses=[{"name": "Qualified", "sort": 10}]
    )
    assert [s.name for s in pipeline.statuses][0] == "Qualified"
    assert {142, 143} <= {s.id for s in pipeline.statuses}
    (status,) = client.create_statuses(pipeline.id, [{"name": "Proposal", "sort": 20}])
    assert status.pipeline_id == pipeline.id
    (reason,) = client.create_loss_reasons([{"name": "No budget", "sort": 5}])
    assert reason.name in {r.name for r in client.loss_reasons()}
    assert len(client.pipelines()) == 2


def test_sandbox_wrong_token_is_access_denied(world: sandbox.SandboxSettings) -> None:
    client = sandbox_client(world, token="not-the-token-1234")
    with pytest.raises(AccessDenied, match="AMOCRM_ACCESS_TOKEN"):
        client.account()


def test_sandbox_limiter_keeps_the_fake_from_ever_answering_429(tmp_path: Path) -> None:
    world = make_world(tmp_path, amocrm_rps=20)
    clients = [sandbox_client(world) for _ in range(2)]  # two clients, one account limit
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda n: clients[n % 2].account(), range(45)))
    assert sum(client.stats.rate_limited for client in clients) == 0
    assert sandbox.amocrm_fake(world).max_requests_per_second() <= 20


def test_sandbox_429s_are_retried_and_a_ban_stops_the_run(tmp_path: Path) -> None:
    world = make_world(tmp_path, amocrm_rps=2, ban_after=3, ban_seconds=60)
    client = sandbox_client(world, limiter=CountingLimiter(), backoff=0.001, max_retries=10)
    with pytest.raises(AccessDenied, match="blocked the account"):
        for _ in range(10):
            client.account()
    assert client.stats.rate_limited >= 3 and client.stats.retries >= 3


def test_resource_gives_a_sandbox_client_with_the_sandbox_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = tmp_path / "dataset"
    write_entity(dataset, "users", PIPEDRIVE_USERS)
    for name in ("AMOCRM_BASE_URL", "AMOCRM_ACCESS_TOKEN", "MIGRATION_SANDBOX_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIGRATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MIGRATION_SANDBOX_FROM_DIR", str(dataset))
    monkeypatch.setenv("MIGRATION_SANDBOX_AMOCRM_RPS", "500")
    with AmoCrmResource().client() as client:
        assert client.account().subdomain == "sandbox"
        assert client._limiter is account_limiter(sandbox.AMOCRM_URL, 500)
    with AmoCrmResource(requests_per_second=50).client() as client:
        assert client._limiter is account_limiter(sandbox.AMOCRM_URL, 50)
    with AmoCrmResource(access_token="wrong-token-0000").client() as client:
        with pytest.raises(AccessDenied):
            client.account()
    assert list((tmp_path / "data" / "limits").glob("amocrm-*.sqlite3"))


def test_resource_for_a_real_account_needs_a_token() -> None:
    import dagster as dg

    with pytest.raises(dg.Failure, match="AMOCRM_ACCESS_TOKEN"):
        with AmoCrmResource(base_url=BASE_URL).client():
            pass
    with pytest.raises(ValueError):
        AmoCrmResource(batch_size=251)
    with pytest.raises(ValueError):
        AmoCrmResource(complex_batch_size=51)
