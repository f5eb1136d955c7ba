"""The Pipedrive client against ``httpx.MockTransport`` handlers that script the real API:
paging in both generations, rate-limit headers and 429s, 5xx, lost answers, bans, garbled
bodies. Time is a fake clock whose ``sleep`` only records and advances, so nothing waits."""

from __future__ import annotations

import base64
import json
import logging
import math
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from migration_pipeline.clients.errors import (
    AccessDenied,
    ApiError,
    BadResponse,
    RateLimited,
    Rejected,
    Unavailable,
    may_have_landed,
)
from migration_pipeline.clients.pipedrive import (
    Page,
    PipedriveClient,
    make_http_client,
    token_cost,
)
from migration_pipeline_tests.clients.fake_clock import FakeClock

TOKEN = "tok-SECRET-123"
BASE_URL = "https://acme.pipedrive.example"
Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, **options: Any) -> tuple[PipedriveClient, FakeClock]:
    clock = FakeClock()
    http = make_http_client(BASE_URL, TOKEN, transport=httpx.MockTransport(handler))
    return PipedriveClient(http, sleep=clock.sleep, clock=clock, **options), clock


def envelope(
    data: Any, additional_data: Any = None, *, status: int = 200, headers: dict | None = None
) -> httpx.Response:
    body = {"success": True, "data": data, "additional_data": additional_data}
    return httpx.Response(status, json=body, headers=headers)


def error(status: int, message: str, headers: dict | None = None, **extra: Any) -> httpx.Response:
    body = {
        "success": False,
        "error": message,
        "error_info": "Please check developers.pipedrive.com",
        "data": None,
        "additional_data": None,
        **extra,
    }
    return httpx.Response(status, json=body, headers=headers)


CLOUDFLARE_HTML = (
    "<!DOCTYPE html><html><head><title>Access denied | api.pipedrive.com used Cloudflare"
    "</title></head><body>This error is produced by Cloudflare</body></html>"
)


def html(status: int) -> httpx.Response:
    return httpx.Response(status, text=CLOUDFLARE_HTML, headers={"content-type": "text/html"})


class Scripted:
    """Answers the n-th request with the n-th step; the last step repeats forever. A step is a
    response factory, or an httpx exception class to raise as the network would."""

    def __init__(self, *steps: Callable[[], httpx.Response] | type[httpx.TransportError]):
        self.steps = steps
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, type):
            raise step("scripted failure", request=request)
        return step()


def ok_users() -> httpx.Response:
    return envelope([{"id": 1, "name": "Ann"}])


def v2_server(records: list[dict], seen: list[httpx.Request] | None = None) -> Handler:
    """A v2 cursor listing over ``records``: the cursor is the offset, base64url-encoded."""

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        limit = int(request.url.params["limit"])
        cursor = request.url.params.get("cursor")
        offset = json.loads(base64.urlsafe_b64decode(cursor))["offset"] if cursor else 0
        end = offset + limit
        next_cursor = (
            base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode()
            if end < len(records)
            else None
        )
        return envelope(records[offset:end], {"next_cursor": next_cursor})

    return handle


def v1_server(records: list[dict], shape: str) -> Handler:
    """A v1 offset listing; ``shape`` is ``nested`` (``additional_data.pagination``, notes)
    or ``flat`` (``additional_data`` itself, as the spec types leads and *Fields)."""

    def handle(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["start"])
        limit = int(request.url.params["limit"])
        more = start + limit < len(records)
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        additional = {"pagination": pagination} if shape == "nested" else pagination
        return envelope(records[start : start + limit], additional)

    return handle


def ids(pages: list[Page]) -> list[int]:
    return [record["id"] for page in pages for record in page.records]


# -- paging ------------------------------------------------------------------------------------


def test_v2_follows_the_cursor_until_it_is_null_and_passes_params() -> None:
    requests: list[httpx.Request] = []
    records = [{"id": n} for n in range(1, 8)]
    client, _ = make_client(v2_server(records, requests), page_size=3)

    pages = list(client.iter_v2("deals", {"sort_by": "id", "owner_id": None}))

    assert [len(page.records) for page in pages] == [3, 3, 1]
    assert ids(pages) == list(range(1, 8))
    assert pages[-1].next_cursor is None and pages[0].next_cursor is not None
    assert {page.endpoint for page in pages} == {"/api/v2/deals"}
    assert [r.url.path for r in requests] == ["/api/v2/deals"] * 3
    assert all(r.url.params["limit"] == "3" and r.url.params["sort_by"] == "id" for r in requests)
    assert "owner_id" not in requests[0].url.params  # None means "not sent"
    assert "cursor" not in requests[0].url.params
    assert client.stats.requests == 3
    assert client.stats.tokens_spent == 30  # v2 list: 10 tokens a request


def test_v2_resumes_from_a_saved_cursor() -> None:
    records = [{"id": n} for n in range(1, 8)]
    client, _ = make_client(v2_server(records), page_size=3)
    first = next(client.iter_v2("/api/v2/persons"))

    resumed = list(client.iter_v2("persons", start_cursor=first.next_cursor))

    assert ids(resumed) == [4, 5, 6, 7]


@pytest.mark.parametrize("shape", ["nested", "flat"])
def test_v1_follows_next_start_in_both_pagination_shapes(shape: str) -> None:
    records = [{"id": n} for n in range(1, 11)]
    client, _ = make_client(v1_server(records, shape), page_size=4)

    pages = list(client.iter_v1("notes"))

    assert ids(pages) == list(range(1, 11))
    assert [page.next_start for page in pages] == [4, 8, None]
    assert client.stats.tokens_spent == 60  # v1 list: 20 tokens a request


def test_v1_resumes_from_a_saved_offset() -> None:
    records = [{"id": n} for n in range(1, 11)]
    client, _ = make_client(v1_server(records, "nested"), page_size=4)

    assert ids(list(client.iter_v1("leads", start=8))) == [9, 10]


@pytest.mark.parametrize(
    "body",
    [
        {"success": True, "data": [{"id": 1}, {"id": 2}]},
        {"success": True, "data": [{"id": 1}, {"id": 2}], "additional_data": None},
        {"success": True, "data": [{"id": 1}, {"id": 2}], "additional_data": {"pagination": None}},
        {"success": True, "data": None, "additional_data": None},
    ],
    ids=["no additional_data", "null additional_data", "null pagination", "null data"],
)
def test_v1_without_pagination_is_one_page(body: dict) -> None:
    server = Scripted(lambda: httpx.Response(200, json=body))
    client, _ = make_client(server)

    pages = list(client.iter_v1("deals/7/mailMessages"))

    assert len(pages) == 1 and pages[0].next_start is None
    assert len(server.requests) == 1
    assert pages[0].records == (body["data"] or [])


def test_get_v1_and_get_v2_return_data_of_single_objects_and_plain_lists() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return {
            "/api/v1/users": lambda: envelope([{"id": 1}, {"id": 2}]),
            "/api/v1/users/me": lambda: envelope({"id": 1, "company_domain": "acme"}),
            "/api/v2/deals/42": lambda: envelope({"id": 42, "title": "Big"}),
            "/api/v1/mailbox/mailMessages/7": lambda: httpx.Response(
                200,
                json={"success": True, "status_code": 200, "service": "x", "data": {"id": 7}},
            ),
        }[request.url.path]()

    client, _ = make_client(handle)

    assert client.get_v1("users") == [{"id": 1}, {"id": 2}]
    assert client.get_v1("/api/v1/users/me")["company_domain"] == "acme"
    assert client.get_v2("deals/42")["title"] == "Big"
    assert client.get_v1("mailbox/mailMessages/7", {"include_body": 1}) == {"id": 7}
    assert client.stats.tokens_spent == 20 + 2 + 1 + 2


@pytest.mark.parametrize(
    ("path", "cost"),
    [
        ("/api/v2/deals", 10),
        ("/api/v2/deals/42", 1),
        ("/api/v2/pipelines", 5),
        ("/api/v2/stages", 5),
        ("/api/v2/deals/archived", 20),
        ("/api/v2/deals/42/followers", 10),
        ("/api/v2/dealFields", 10),
        ("/api/v1/dealFields", 20),
        ("/api/v1/notes", 20),
        ("/api/v1/leads", 20),
        ("/api/v1/leads/archived", 40),
        ("/api/v1/users", 20),
        ("/api/v1/users/me", 2),
        ("/api/v1/currencies", 20),
        ("/api/v1/activityTypes", 20),
        ("/api/v1/deals/42/participants", 20),
        ("/api/v1/mailbox/mailMessages/7", 2),
    ],
)
def test_token_cost_follows_the_reference_table(path: str, cost: int) -> None:
    assert token_cost(path) == cost


def test_a_repeating_cursor_raises_instead_of_looping() -> None:
    # A → B → A: the server sends us back to a page we already read.
    server = Scripted(
        lambda: envelope([{"id": 1}], {"next_cursor": "A"}),
        lambda: envelope([{"id": 2}], {"next_cursor": "B"}),
        lambda: envelope([{"id": 3}], {"next_cursor": "A"}),
    )
    client, _ = make_client(server)
    pages: list[Page] = []

    with pytest.raises(BadResponse, match="GET /api/v2/deals.*cursor already seen") as caught:
        pages.extend(client.iter_v2("deals"))

    assert ids(pages) == [1, 2]  # the page that points back is not handed out
    assert len(server.requests) == 3
    assert caught.value.endpoint == "GET /api/v2/deals"


def test_an_offset_that_does_not_advance_raises() -> None:
    pagination = {"start": 0, "limit": 2, "more_items_in_collection": True, "next_start": 0}
    server = Scripted(lambda: envelope([{"id": 1}], {"pagination": pagination}))
    client, _ = make_client(server)

    with pytest.raises(BadResponse, match="does not advance"):
        list(client.iter_v1("notes"))
    assert len(server.requests) == 1


def test_the_page_cap_stops_a_listing_that_never_ends() -> None:
    counter = iter(range(10**6))
    client, _ = make_client(
        lambda r: envelope([], {"next_cursor": f"c{next(counter)}"}), max_pages=5
    )

    with pytest.raises(BadResponse, match="more than 5 pages"):
        list(client.iter_v2("activities"))
    assert client.stats.requests == 5


def test_a_record_repeated_across_pages_is_skipped_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Offset paging while records are inserted shifts a record onto the next page too.
    server = Scripted(
        lambda: envelope([{"id": 1}, {"id": 2}], {"next_cursor": "A"}),
        lambda: envelope([{"id": 2}, {"id": 3}], {"next_cursor": None}),
    )
    client, _ = make_client(server)

    with caplog.at_level(logging.WARNING, logger="migration_pipeline.clients.pipedrive"):
        pages = list(client.iter_v2("persons"))

    assert ids(pages) == [1, 2, 3]
    assert client.stats.duplicates_skipped == 1
    [warning] = [r for r in caplog.records if "already yielded" in r.getMessage()]
    assert "/api/v2/persons" in warning.getMessage() and "2" in warning.getMessage()


def test_a_repeated_id_with_other_content_is_passed_on_for_the_caller_to_resolve() -> None:
    # Not a record shifted by paging but a second record under one id: skipping it here would
    # lose it without a trace; extraction quarantines it with its reason instead.
    server = Scripted(
        lambda: envelope([{"id": 1, "name": "Anna"}, {"id": 2}], {"next_cursor": "A"}),
        lambda: envelope([{"id": 1, "name": "Other"}, {"id": 2}], {"next_cursor": None}),
    )
    client, _ = make_client(server)

    pages = list(client.iter_v2("persons"))

    assert [r for page in pages for r in page.records] == [
        {"id": 1, "name": "Anna"},
        {"id": 2},
        {"id": 1, "name": "Other"},
    ]
    assert client.stats.duplicates_skipped == 1  # the exact copy of {"id": 2}


def test_records_without_an_id_are_never_taken_for_repeats() -> None:
    followers = [{"user_id": 5, "add_time": "2024-01-01T00:00:00Z"}] * 2
    client, _ = make_client(Scripted(lambda: envelope(followers, {"next_cursor": None})))

    [page] = client.iter_v2("deals/9/followers")

    assert page.records == followers and client.stats.duplicates_skipped == 0


# -- rate limits -------------------------------------------------------------------------------


def burst_429(reset: str = "2", **headers: str) -> Callable[[], httpx.Response]:
    limits = {"x-ratelimit-limit": "40", "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
    return lambda: error(429, "Rate limit has been exceeded", {**limits, **headers})


def test_a_burst_429_waits_for_the_reset_and_retries() -> None:
    server = Scripted(burst_429(reset="2"), ok_users)
    client, clock = make_client(server)

    assert client.get_v1("users") == [{"id": 1, "name": "Ann"}]
    assert clock.sleeps == [2.0]
    assert client.stats.rate_limited == 1
    assert client.stats.retries == 1
    assert client.stats.requests == 2
    assert client.stats.tokens_spent == 20  # the 429 is not charged


def test_a_burst_429_prefers_retry_after_when_sent() -> None:
    client, clock = make_client(Scripted(burst_429(reset="2", **{"retry-after": "3"}), ok_users))

    client.get_v1("users")

    assert clock.sleeps == [3.0]


class WindowedServer:
    """The real burst limit: at most ``limit`` requests per fixed window, else 429, with the
    headers on every answer and ``x-ratelimit-reset`` in whole seconds like Pipedrive's.
    Every path lists the same 100 records by cursor."""

    def __init__(self, clock: FakeClock, limit: int, window: float = 2.0) -> None:
        self.clock, self.limit, self.window = clock, limit, window
        self.hits: dict[int, int] = {}
        self.requests = 0
        self.listing = v2_server([{"id": n} for n in range(1, 101)])
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests += 1
            self.clock.now += 0.01  # each request takes a little time
            slot = math.floor(self.clock.now / self.window)
            self.hits[slot] = self.hits.get(slot, 0) + 1
            used = self.hits[slot]
            reset = math.ceil((slot + 1) * self.window - self.clock.now)
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(self.limit - used, 0)),
            "x-ratelimit-reset": str(reset),
        }
        if used > self.limit:
            return error(429, "Rate limit has been exceeded", headers)
        return httpx.Response(200, content=self.listing(request).content, headers=headers)


def test_the_client_slows_down_before_the_window_is_used_up_and_never_gets_a_429() -> None:
    clock = FakeClock()
    server = WindowedServer(clock, limit=5)
    http = make_http_client(BASE_URL, TOKEN, transport=httpx.MockTransport(server))
    client = PipedriveClient(http, page_size=4, sleep=clock.sleep, clock=clock)

    pages = list(client.iter_v2("deals"))

    assert ids(pages) == list(range(1, 101))
    assert client.stats.rate_limited == 0
    assert client.stats.retries == 0
    assert client.stats.slowdowns >= 5
    assert all(0 < seconds <= 2 for seconds in clock.sleeps)


def test_one_client_shared_by_threads_gets_everything_and_counts_exactly() -> None:
    clock = FakeClock()
    server = WindowedServer(clock, limit=8)
    http = make_http_client(BASE_URL, TOKEN, transport=httpx.MockTransport(server))
    client = PipedriveClient(http, page_size=20, sleep=clock.sleep, clock=clock)

    def followers(deal: int) -> list[int]:
        return ids(list(client.iter_v2(f"deals/{deal}/followers")))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(followers, range(12)))

    assert results == [list(range(1, 101))] * 12
    assert client.stats.requests == server.requests
    assert client.stats.requests == 12 * 5 + client.stats.rate_limited
    assert client.stats.tokens_spent == 12 * 5 * 10
    assert client.stats.slowdowns > 0


def test_a_spent_daily_budget_raises_at_once_with_when_it_resets() -> None:
    headers = {
        "x-ratelimit-limit": "40",
        "x-ratelimit-remaining": "39",
        "x-ratelimit-reset": "2",
        "x-daily-ratelimit-token-limit": "30000",
        "x-daily-ratelimit-token-remaining": "0",
        "retry-after": "11520",
    }
    server = Scripted(lambda: error(429, "Rate limit exceeded", headers))
    client, clock = make_client(server)

    with pytest.raises(RateLimited, match="daily API token budget is spent") as caught:
        client.get_v1("users")

    assert len(server.requests) == 1 and clock.sleeps == []
    assert "midnight" in str(caught.value) and "3 h 12 min" in str(caught.value)
    assert caught.value.retry_after == 11520
    assert client.stats.rate_limited == 1
    assert client.stats.daily_tokens_remaining == 0


def test_the_daily_budget_header_is_recorded() -> None:
    server = Scripted(lambda: envelope([], headers={"x-daily-ratelimit-token-remaining": "4321"}))
    client, _ = make_client(server)

    client.get_v1("currencies")

    assert client.stats.daily_tokens_remaining == 4321


def test_429s_that_never_stop_raise_rate_limited_after_the_retries() -> None:
    server = Scripted(burst_429())
    client, clock = make_client(server, max_retries=3)

    with pytest.raises(RateLimited, match="gave up after 4 attempts"):
        client.get_v1("users")

    assert len(server.requests) == 4 and clock.sleeps == [2.0, 2.0, 2.0]
    assert client.stats.rate_limited == 4


def test_a_429_asking_for_a_long_wait_raises_instead_of_sleeping() -> None:
    server = Scripted(lambda: error(429, "slow down", {"retry-after": "3600"}))
    client, clock = make_client(server)

    with pytest.raises(RateLimited, match="wait 3600 s"):
        client.get_v1("users")
    assert clock.sleeps == []


# -- server and network failures ----------------------------------------------------------------


def test_a_5xx_is_retried_with_backoff_then_succeeds() -> None:
    server = Scripted(lambda: error(503, "maintenance"), lambda: error(502, "bad gw"), ok_users)
    client, clock = make_client(server, backoff=0.5)

    assert client.get_v1("users")[0]["name"] == "Ann"
    assert client.stats.retries == 2
    assert 0.25 <= clock.sleeps[0] <= 0.5 and 0.5 <= clock.sleeps[1] <= 1.0


def test_5xx_forever_raises_unavailable_after_max_retries() -> None:
    server = Scripted(lambda: error(500, "Internal error"))
    client, clock = make_client(server, max_retries=6, backoff=0.5)

    with pytest.raises(Unavailable, match=r"GET /api/v2/deals \[HTTP 500\].*7 attempts"):
        list(client.iter_v2("deals"))

    assert len(server.requests) == 7
    assert client.stats.retries == 6
    for attempt, seconds in enumerate(clock.sleeps):  # bounded exponential, jittered
        ceiling = min(0.5 * 2**attempt, 30.0)
        assert ceiling / 2 <= seconds <= ceiling


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError],
)
def test_a_get_is_retried_after_a_lost_answer(failure: type[httpx.TransportError]) -> None:
    server = Scripted(failure, ok_users)
    client, _ = make_client(server)

    assert client.get_v1("users") == [{"id": 1, "name": "Ann"}]
    assert client.stats.retries == 1 and len(server.requests) == 2


def test_timeouts_forever_raise_unavailable_without_a_status() -> None:
    client, _ = make_client(Scripted(httpx.ReadTimeout), max_retries=2)

    with pytest.raises(Unavailable, match=r"\[no response\]: ReadTimeout") as caught:
        client.get_v1("users")
    assert caught.value.status is None


# -- access and validation -------------------------------------------------------------------


def test_401_raises_access_denied_at_once_naming_the_variable_not_the_token() -> None:
    server = Scripted(
        lambda: httpx.Response(
            401,
            json={"success": False, "error": "unauthorized access", "errorCode": 401},
            headers={"x-401-by-gw": "true"},
        )
    )
    client, clock = make_client(server)

    with pytest.raises(AccessDenied, match="PIPEDRIVE_API_TOKEN") as caught:
        client.get_v1("users/me")

    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert len(server.requests) == 1 and clock.sleeps == []


def test_a_cloudflare_403_page_raises_access_denied_as_a_ban() -> None:
    server = Scripted(lambda: html(403))
    client, _ = make_client(server)

    with pytest.raises(AccessDenied, match="blocked after too many requests.*Cloudflare"):
        list(client.iter_v2("deals"))
    assert len(server.requests) == 1


def test_a_json_403_raises_access_denied_with_the_api_error() -> None:
    server = Scripted(lambda: error(403, "You do not have permission", code="forbidden"))
    client, _ = make_client(server)

    with pytest.raises(AccessDenied, match="forbidden: You do not have permission"):
        client.get_v1("deals/1/participants")


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_validation_errors_raise_rejected_with_parsed_details(status: int) -> None:
    server = Scripted(lambda: error(status, "Deal not found"))
    client, _ = make_client(server)

    with pytest.raises(Rejected, match="Deal not found") as caught:
        client.get_v2("deals/999")

    assert caught.value.status == status
    assert caught.value.details["error"] == "Deal not found"
    assert len(server.requests) == 1


# -- garbled answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("garbled", "said"),
    [
        (lambda: html(200), "HTML page"),
        (lambda: httpx.Response(200, content=b'{"success": true, "data": [{"id": 1}, {"i'), "JSON"),
        (lambda: httpx.Response(200, content=b""), "JSON"),
        (lambda: httpx.Response(200, content=b"null"), "null body"),
    ],
    ids=["html", "truncated", "empty", "null"],
)
def test_a_garbled_200_is_retried_then_raises_bad_response_naming_the_endpoint(
    garbled: Callable[[], httpx.Response], said: str
) -> None:
    server = Scripted(garbled)
    client, _ = make_client(server, max_retries=2)

    with pytest.raises(BadResponse, match=f"GET /api/v1/notes .*{said}"):
        list(client.iter_v1("notes"))
    assert len(server.requests) == 3


def test_a_garbled_200_then_a_good_one_succeeds() -> None:
    client, _ = make_client(Scripted(lambda: html(200), ok_users))

    assert client.get_v1("users") == [{"id": 1, "name": "Ann"}]
    assert client.stats.retries == 1
    assert client.stats.tokens_spent == 20  # the garbled page is not charged


def test_a_success_false_envelope_raises_bad_response_without_retrying() -> None:
    server = Scripted(lambda: error(200, "Something went wrong"))
    client, _ = make_client(server)

    with pytest.raises(BadResponse, match="success: false: Something went wrong"):
        client.get_v1("currencies")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body",
    [[1, 2], {"success": True}, {"success": True, "data": {"id": 1}}],
    ids=["array", "no data", "object where a list belongs"],
)
def test_an_unexpected_shape_raises_bad_response(body: Any) -> None:
    client, _ = make_client(Scripted(lambda: httpx.Response(200, json=body)))

    with pytest.raises(BadResponse, match="GET /api/v2/deals"):
        list(client.iter_v2("deals"))


def test_a_redirect_is_not_followed() -> None:
    location = {"location": "https://elsewhere.example/api/v2/deals"}
    server = Scripted(lambda: httpx.Response(301, headers=location))
    client, _ = make_client(server)

    with pytest.raises(BadResponse, match="PIPEDRIVE_BASE_URL"):
        list(client.iter_v2("deals"))
    assert len(server.requests) == 1


# -- the token ---------------------------------------------------------------------------------


def test_the_token_travels_only_in_the_x_api_token_header() -> None:
    requests: list[httpx.Request] = []
    client, _ = make_client(v2_server([{"id": n} for n in range(5)], requests), page_size=2)

    list(client.iter_v2("deals", {"status": "open"}))

    for request in requests:
        assert request.headers["x-api-token"] == TOKEN
        assert "api_token" not in request.url.params
        assert TOKEN not in str(request.url)
        assert "authorization" not in request.headers


def test_the_token_never_appears_in_exceptions_or_log_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scenarios: list[tuple[Handler, str]] = [
        (Scripted(lambda: error(401, "unauthorized access")), "users/me"),
        (Scripted(lambda: html(403)), "users"),
        (Scripted(burst_429()), "users"),
        (Scripted(lambda: error(500, "oops")), "users"),
        (Scripted(httpx.ReadTimeout), "users"),
        (Scripted(lambda: html(200)), "users"),
        (Scripted(lambda: error(404, "Deal not found")), "deals/1"),
        (Scripted(lambda: envelope([{"id": 1}], {"next_cursor": "A"})), "deals"),
    ]
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for handler, path in scenarios:
            client, _ = make_client(handler, max_retries=2)
            with pytest.raises(ApiError) as caught:
                list(client.iter_v2(path)) if path == "deals" else client.get_v1(path)
            texts += [str(caught.value), repr(caught.value), str(caught.value.__cause__)]

    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records  # the scenarios did log (retries, the cursor loop, httpx's own)
    assert not [text for text in texts if TOKEN in text]


def test_the_token_may_not_be_smuggled_into_params() -> None:
    client, _ = make_client(Scripted(ok_users))

    with pytest.raises(ValueError, match="x-api-token header") as caught:
        client.get_v1("users", {"api_token": TOKEN})
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("base_url", "token"),
    [(BASE_URL, ""), (f"{BASE_URL}?api_token={TOKEN}", TOKEN)],
    ids=["empty token", "query in base URL"],
)
def test_make_http_client_refuses_what_would_leak_or_fail(base_url: str, token: str) -> None:
    with pytest.raises(ValueError) as caught:
        make_http_client(base_url, token)
    assert TOKEN not in str(caught.value)


# -- the error tree ----------------------------------------------------------------------------


def test_api_error_text_drops_query_strings_and_survives_pickling() -> None:
    error_ = Rejected("Pipedrive", "GET /api/v1/deals?api_token=abc", 404, "gone", details={"a": 1})

    assert str(error_) == "Pipedrive GET /api/v1/deals [HTTP 404]: gone"
    copy = pickle.loads(pickle.dumps(error_))
    assert (copy.endpoint, copy.status, copy.details) == ("GET /api/v1/deals", 404, {"a": 1})


@pytest.mark.parametrize(
    ("method", "failure", "in_doubt"),
    [
        ("POST", httpx.ReadTimeout, True),
        ("PATCH", httpx.RemoteProtocolError, True),
        ("POST", httpx.WriteError, True),
        ("POST", httpx.ConnectError, False),
        ("POST", httpx.ConnectTimeout, False),
        ("POST", httpx.PoolTimeout, False),
        ("GET", httpx.ReadTimeout, False),
        ("PUT", httpx.ReadError, False),
    ],
)
def test_may_have_landed_follows_httpx_line(
    method: str, failure: type[httpx.TransportError], in_doubt: bool
) -> None:
    assert may_have_landed(method, failure("x")) is in_doubt
