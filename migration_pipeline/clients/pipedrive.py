"""Read-only Pipedrive REST client: paged reads of ``/api/v1`` and ``/api/v2``, polite to the
rate limits, loud about anything unexpected.

* **Token.** :func:`make_http_client` puts the token in the ``x-api-token`` header, the only
  place it ever travels: never in a URL, a log record or an exception. Redirects are not
  followed (httpx would forward ``x-api-token`` to whatever host a redirect names).
* **Pages.** :meth:`PipedriveClient.iter_v2` (cursor) and :meth:`PipedriveClient.iter_v1`
  (offset) are generators of :class:`Page`; a caller writes page by page and resumes from the
  last page's ``next_cursor`` / ``next_start``. A cursor seen twice or an offset that does not
  advance raises :class:`BadResponse` instead of looping; an exact copy of a record already
  yielded in one listing is skipped and counted (a repeated id with other content is kept:
  two records sharing an id are data for the caller to resolve, not a paging artefact).
* **Rate limits** (reference §4). Every response's ``x-ratelimit-*`` headers are read; when the
  2-second burst window is nearly used up, the next request waits for its reset, so a 429 is
  the exception rather than the signal. A 429 with the burst window at 0 waits and retries; a
  429 with the daily token budget spent raises :class:`RateLimited` at once (retrying cannot
  help before midnight, and hammering earns a Cloudflare ban).
* **Failures.** 5xx, timeouts, connection errors and garbled 200 bodies (HTML, truncated JSON)
  are retried with bounded exponential backoff, then raise :class:`Unavailable` or
  :class:`BadResponse`. 401/402/403 raise :class:`AccessDenied` at once, 4xx
  :class:`Rejected`. Every request here is a GET, so every transport error may be retried
  (see :mod:`.errors` for the line writes must respect).

One client may serve several threads (httpx.Client is thread-safe): the stats and the rate
window sit behind a lock, a pause holds every thread, and requests still in flight count
against the window's remainder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import (
    MAYBE_APPLIED,
    NEVER_SENT,
    AccessDenied,
    ApiError,
    BadResponse,
    RateLimited,
    Rejected,
    Unavailable,
)
from .responses import NOT_JSON, backoff_delay, json_body, looks_html

logger = logging.getLogger(__name__)

SERVICE = "Pipedrive"
MAX_PAGE_SIZE = 500  # v1 and v2 both cap ``limit`` at 500; cost is per request, so use it all
MAX_PAGES = 1_000_000  # last resort against a listing that never ends
BURST_WINDOW_SECONDS = 2.0  # Pipedrive's rolling burst window
MAX_SERVER_WAIT = 60.0  # a longer wait asked by the server is not a burst: raise, do not sleep
LOW_WATER_SHARE = 0.05  # pause when this share of the burst window (or 1 request) is left

_RETRYABLE_TRANSPORT = NEVER_SENT + MAYBE_APPLIED  # GETs only: safe on both sides of the line

# Estimated daily-budget cost of one GET (reference §4, ``x-token-cost``; flat per request,
# whatever ``limit`` is). Special paths first; otherwise a single object or a list.
_SPECIAL_COSTS: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    (re.compile(pattern), cost)
    for pattern, cost in (
        (r"/api/v2/deals/archived", 20),
        (r"/api/v2/(pipelines|stages)", 5),
        (r"/api/v2/(\w+/)?search|/api/v2/itemSearch", 20),
        (r"/api/v1/users/me", 2),
        (r"/api/v1/leads/archived", 40),
        (r"/api/v1/deals/\d+/flow", 40),
        (r"/api/v1/mailbox/mailMessages/\d+", 2),
    )
)
# An id as the last path segment means a single object: integer ids, lead UUIDs, field hashes.
_ID_SEGMENT = re.compile(r"\d+|[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{40}")
_V2_COSTS = {"single": 1, "list": 10}
_V1_COSTS = {"single": 2, "list": 20}


def token_cost(path: str) -> int:
    """Estimated daily-budget tokens one GET of ``path`` (``/api/v…/…``, no query) costs."""
    for pattern, cost in _SPECIAL_COSTS:
        if pattern.fullmatch(path):
            return cost
    kind = "single" if _ID_SEGMENT.fullmatch(path.rstrip("/").rsplit("/", 1)[-1]) else "list"
    return (_V2_COSTS if path.startswith("/api/v2/") else _V1_COSTS)[kind]


def make_http_client(
    base_url: str,
    token: str,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 30.0,
) -> httpx.Client:
    """An ``httpx.Client`` for ``base_url`` (``https://<company>.pipedrive.com``) that sends
    ``token`` in the ``x-api-token`` header and nowhere else. The caller closes it."""
    if not token:
        raise ValueError("no Pipedrive API token: set PIPEDRIVE_API_TOKEN")
    url = httpx.URL(base_url)
    if url.query:
        raise ValueError("the Pipedrive base URL must not carry a query string")
    return httpx.Client(
        base_url=url,
        headers={"x-api-token": token, "accept": "application/json"},
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
    )


@dataclass(frozen=True)
class Page:
    """One page of a listing. ``endpoint`` is the path (``/api/v2/deals``); resume after this
    page from ``next_cursor`` (v2) or ``next_start`` (v1); both None on the last page."""

    endpoint: str
    records: list[dict[str, Any]]
    next_cursor: str | None = None
    next_start: int | None = None


@dataclass
class ClientStats:
    """What the client did, for the run log. ``tokens_spent`` is an estimate from the cost
    table; ``daily_tokens_remaining`` is the server's figure when it sends one."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    slowdowns: int = 0
    duplicates_skipped: int = 0
    tokens_spent: int = 0
    daily_tokens_remaining: int | None = None


def record_id(record: Mapping[str, Any]) -> Hashable | None:
    """The default key to spot a record repeated across pages: its ``id`` (int or str).

    Records without one (followers, mail wrappers) are never treated as repeats. For
    ``/recents`` over several item types pass ``key=lambda r: (r["item"], r["id"])``.
    """
    ident = record.get("id")
    return ident if isinstance(ident, int | str) else None


@dataclass(frozen=True)
class _Retry:
    """A failed attempt worth repeating; ``error`` is raised when no attempt is left."""

    error: type[ApiError]
    status: int | None
    reason: str
    wait: float | None = None  # what the server asked for; None means exponential backoff

    def give_up(self, endpoint: str, attempts: int) -> ApiError:
        detail = f"{self.reason}; gave up after {attempts} attempts"
        return self.error(SERVICE, endpoint, self.status, detail)


class PipedriveClient:
    """Reads a Pipedrive company account through ``http`` (see :func:`make_http_client`).

    ``sleep`` and ``clock`` are injectable so tests neither wait nor depend on real time.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        page_size: int = MAX_PAGE_SIZE,
        max_retries: int = 6,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_pages: int = MAX_PAGES,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self._http = http
        self._page_size = page_size
        self._max_retries = max_retries
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._max_pages = max_pages
        self._lock = threading.Lock()
        self._pause_until = -math.inf  # no request starts before this clock() reading
        self._in_flight = 0
        self.stats = ClientStats()

    # -- public API -------------------------------------------------------------------------

    def iter_v2(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        start_cursor: str | None = None,
        key: Callable[[Mapping[str, Any]], Hashable | None] = record_id,
    ) -> Iterator[Page]:
        """Pages of the ``/api/v2`` cursor listing ``path`` (``"deals"`` or
        ``"/api/v2/deals"``), from ``start_cursor`` until ``next_cursor`` is null."""
        endpoint = _api_path("v2", path)
        seen_cursors = {start_cursor} if start_cursor else set()
        seen: set[tuple[Hashable, bytes]] = set()
        cursor = start_cursor
        for _ in range(self._max_pages):
            query = {**_query(params), "limit": self._page_size}
            if cursor:
                query["cursor"] = cursor
            body = self._get(endpoint, query)
            next_cursor = _next_cursor(body, endpoint)
            if next_cursor in seen_cursors:
                raise BadResponse(
                    SERVICE,
                    f"GET {endpoint}",
                    200,
                    "next_cursor repeats a cursor already seen; stopping instead of looping",
                )
            yield Page(endpoint, self._unique(body, seen, key, endpoint), next_cursor=next_cursor)
            if next_cursor is None:
                return
            seen_cursors.add(next_cursor)
            cursor = next_cursor
        raise self._endless(endpoint)

    def iter_v1(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        start: int = 0,
        key: Callable[[Mapping[str, Any]], Hashable | None] = record_id,
    ) -> Iterator[Page]:
        """Pages of the ``/api/v1`` offset listing ``path`` (``"notes"`` or
        ``"/api/v1/notes"``), from ``start`` while ``more_items_in_collection``.

        Accepts ``additional_data.pagination.{…}`` and the flat ``additional_data.{…}`` that
        leads, ``*Fields``, participants and mail use; no pagination at all is one page.
        """
        endpoint = _api_path("v1", path)
        seen: set[tuple[Hashable, bytes]] = set()
        offset = start
        for _ in range(self._max_pages):
            query = {**_query(params), "start": offset, "limit": self._page_size}
            body = self._get(endpoint, query)
            next_start = _next_start(body, endpoint)
            if next_start is not None and next_start <= offset:
                raise BadResponse(
                    SERVICE,
                    f"GET {endpoint}",
                    200,
                    f"next_start {next_start} does not advance past start {offset}; "
                    "stopping instead of looping",
                )
            records = self._unique(body, seen, key, endpoint)
            yield Page(endpoint, records, next_start=next_start)
            if next_start is None:
                return
            offset = next_start
        raise self._endless(endpoint)

    def get_v1(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """``data`` of a single ``/api/v1`` object or unpaginated list (``"users"``,
        ``"users/me"``, ``"currencies"``, ``"activityTypes"``, ``"mailbox/mailMessages/7"``)."""
        return self._get(_api_path("v1", path), _query(params))["data"]

    def get_v2(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """``data`` of a single ``/api/v2`` object (``"deals/42"``)."""
        return self._get(_api_path("v2", path), _query(params))["data"]

    # -- one GET, with retries ----------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """GET ``path``; the JSON envelope, or the error once retrying cannot help.

        A small loop rather than tenacity: each failure brings its own wait (the burst reset,
        Retry-After or backoff) and its own final error, and each attempt feeds the rate
        window and the stats; as tenacity callbacks that reads worse than these lines.
        """
        endpoint = f"GET {path}"
        attempt = 0
        while True:
            self._wait_for_window(endpoint)
            outcome = self._attempt(path, params, endpoint)
            if not isinstance(outcome, _Retry):
                return outcome
            if attempt >= self._max_retries:
                raise outcome.give_up(endpoint, attempt + 1)
            delay = (
                outcome.wait if outcome.wait is not None else backoff_delay(self._backoff, attempt)
            )
            attempt += 1
            with self._lock:
                self.stats.retries += 1
            logger.warning(
                "%s %s: %s; retry %d/%d in %.1f s",
                SERVICE,
                endpoint,
                outcome.reason,
                attempt,
                self._max_retries,
                delay,
            )
            self._sleep(delay)

    def _attempt(
        self, path: str, params: Mapping[str, Any], endpoint: str
    ) -> dict[str, Any] | _Retry:
        with self._lock:
            self.stats.requests += 1
            self._in_flight += 1
        try:
            response = self._http.get(path, params=params)
        except _RETRYABLE_TRANSPORT as exc:
            return _Retry(Unavailable, None, type(exc).__name__)
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}; check PIPEDRIVE_BASE_URL"
            raise Unavailable(SERVICE, endpoint, None, detail) from exc
        finally:
            with self._lock:
                self._in_flight -= 1
        logger.debug("%s %s -> %d", SERVICE, endpoint, response.status_code)
        return self._read(response, path, endpoint)

    def _read(self, response: httpx.Response, path: str, endpoint: str) -> dict[str, Any] | _Retry:
        status = response.status_code
        self._note_daily_budget(response)
        if status == 429:
            return self._on_rate_limited(response, endpoint)
        self._note_burst_window(response)
        if status >= 500:
            wait = _header_number(response, "retry-after")
            body = json_body(response)
            said = f": {_error_text(body)}" if isinstance(body, dict) else ""
            return _Retry(
                Unavailable,
                status,
                f"server error {status}{said}",
                wait=None if wait is None else min(wait, MAX_SERVER_WAIT),
            )
        if 200 <= status < 300:
            outcome = _envelope(response, endpoint)
            if not isinstance(outcome, _Retry):  # a garbled page never reached the API
                self._charge(path)
            return outcome
        if 400 <= status < 500:
            self._charge(path)
            if status in (401, 402, 403):
                raise _access_denied(response, endpoint)
            raise _rejected(response, endpoint)
        raise BadResponse(
            SERVICE,
            endpoint,
            status,
            f"unexpected status {status} (redirects are not followed); check PIPEDRIVE_BASE_URL",
        )

    def _charge(self, path: str) -> None:
        with self._lock:
            self.stats.tokens_spent += token_cost(path)

    # -- rate limits ------------------------------------------------------------------------

    def _note_daily_budget(self, response: httpx.Response) -> None:
        remaining = _header_number(response, "x-daily-ratelimit-token-remaining")
        if remaining is not None:
            with self._lock:
                self.stats.daily_tokens_remaining = int(remaining)

    def _note_burst_window(self, response: httpx.Response) -> None:
        """Hold every request until the window resets when it is nearly used up. Requests of
        other threads still in flight will take their share of what is left."""
        remaining = _header_number(response, "x-ratelimit-remaining")
        if remaining is None:
            return
        limit = _header_number(response, "x-ratelimit-limit") or 0.0
        with self._lock:
            if remaining > max(1.0, limit * LOW_WATER_SHARE) + self._in_flight:
                return
        reset = _header_number(response, "x-ratelimit-reset")
        self._pause_all(reset if reset is not None and reset > 0 else BURST_WINDOW_SECONDS)

    def _pause_all(self, seconds: float) -> None:
        with self._lock:
            until = self._clock() + min(seconds, MAX_SERVER_WAIT)
            self._pause_until = max(self._pause_until, until)

    def _wait_for_window(self, endpoint: str) -> None:
        with self._lock:
            wait = self._pause_until - self._clock()
            if wait > 0:
                self.stats.slowdowns += 1
        if wait > 0:
            logger.info(
                "%s %s: burst window nearly used up; pausing %.1f s", SERVICE, endpoint, wait
            )
            self._sleep(wait)

    def _on_rate_limited(self, response: httpx.Response, endpoint: str) -> _Retry:
        with self._lock:
            self.stats.rate_limited += 1
        retry_after = _header_number(response, "retry-after")
        if _is_spent(_header_number(response, "x-daily-ratelimit-token-remaining")):
            raise RateLimited(
                SERVICE, endpoint, 429, _daily_budget_spent(retry_after), retry_after=retry_after
            )
        if _is_spent(_header_number(response, "x-ratelimit-remaining")):
            wait = (
                retry_after
                if retry_after is not None
                else _header_number(response, "x-ratelimit-reset")
            )
            if wait is None or wait <= 0:
                wait = BURST_WINDOW_SECONDS
            reason = "burst window used up (429)"
            self._pause_all(wait)  # the other threads hold off too; this one sleeps below
        else:
            wait = retry_after
            reason = (
                "429 with the burst window not used up; if it persists the daily token budget "
                "may be spent (Company settings > API usage)"
            )
        if wait is not None and wait > MAX_SERVER_WAIT:
            detail = f"server asks to wait {wait:.0f} s; not waiting that long, resume later"
            raise RateLimited(SERVICE, endpoint, 429, detail, retry_after=wait)
        return _Retry(RateLimited, 429, reason, wait=wait)

    # -- paging helpers ---------------------------------------------------------------------

    def _unique(
        self,
        body: Mapping[str, Any],
        seen: set[tuple[Hashable, bytes]],
        key: Callable[[Mapping[str, Any]], Hashable | None],
        endpoint: str,
    ) -> list[dict[str, Any]]:
        """The page's records minus exact copies of records already yielded in this listing
        (counted, logged): offset paging shifts a record onto the next page when records are
        added meanwhile. A repeated id with other content is not such a copy but a second
        record under one id: it is kept, so the caller can resolve it with a reason (extraction
        quarantines it) instead of it vanishing here. ``seen`` holds (id, content digest)."""
        kept = []
        for record in _list_data(body, endpoint):
            ident = key(record)
            if ident is not None:
                content = json.dumps(record, sort_keys=True, default=str).encode()
                copy = (ident, hashlib.blake2b(content, digest_size=16).digest())
                if copy in seen:
                    with self._lock:
                        self.stats.duplicates_skipped += 1
                    logger.warning(
                        "%s GET %s: record id %r already yielded in this listing; skipped",
                        SERVICE,
                        endpoint,
                        ident,
                    )
                    continue
                seen.add(copy)
            kept.append(record)
        return kept

    def _endless(self, endpoint: str) -> BadResponse:
        detail = f"more than {self._max_pages} pages; stopping instead of looping"
        return BadResponse(SERVICE, f"GET {endpoint}", 200, detail)


# -- reading responses (module functions: they need no client state) ---------------------------


def _error_text(body: Mapping[str, Any]) -> str:
    text = str(body.get("error") or body.get("error_info") or "no error message")
    return " ".join(text.split())[:200]


def _envelope(response: httpx.Response, endpoint: str) -> dict[str, Any] | _Retry:
    """The ``{success, data, additional_data}`` envelope of a 2xx answer. A garbled body is
    worth another GET (proxies and Cloudflare serve such pages now and then); a well-formed
    answer of the wrong shape is not."""
    status = response.status_code
    body = json_body(response)
    if body is NOT_JSON:
        what = "an HTML page" if looks_html(response) else "invalid or truncated JSON"
        return _Retry(BadResponse, status, f"got {what} instead of a JSON envelope")
    if body is None:
        return _Retry(BadResponse, status, "got a null body")
    if not isinstance(body, dict) or "data" not in body:
        raise BadResponse(SERVICE, endpoint, status, "unexpected shape: no 'data' in the answer")
    if body.get("success") is False:
        raise BadResponse(SERVICE, endpoint, status, f"success: false: {_error_text(body)}")
    return body


def _access_denied(response: httpx.Response, endpoint: str) -> AccessDenied:
    status = response.status_code
    body = json_body(response)
    if status == 401:
        detail = "token rejected; check PIPEDRIVE_API_TOKEN (and that it is for PIPEDRIVE_BASE_URL)"
    elif status == 402:
        detail = "the company account is not open (trial expired or unpaid); check billing"
    elif not isinstance(body, dict):
        detail = (
            "blocked after too many requests (Cloudflare HTML page); stop, wait, "
            "and lower the request rate before trying again"
        )
    else:
        detail = f"forbidden: {_error_text(body)}; check the token user's permissions"
    return AccessDenied(SERVICE, endpoint, status, detail)


def _rejected(response: httpx.Response, endpoint: str) -> Rejected:
    body = json_body(response)
    details = body if isinstance(body, dict) else {}
    message = _error_text(details) if details else "no JSON error body"
    detail = f"{response.reason_phrase or 'rejected'}: {message}"
    return Rejected(SERVICE, endpoint, response.status_code, detail, details=details)


def _daily_budget_spent(retry_after: float | None) -> str:
    when = "it resets at midnight in Pipedrive's server timezone"
    if retry_after is not None:
        hours, minutes = divmod(int(retry_after) // 60, 60)
        when += f", in about {hours} h {minutes} min (Retry-After)"
    return (
        f"the company's daily API token budget is spent; {when}. Resume after the reset "
        "(usage: Company settings > API usage)"
    )


def _is_spent(remaining: float | None) -> bool:
    return remaining is not None and remaining <= 0


def _header_number(response: httpx.Response, name: str) -> float | None:
    """A numeric header, or None when absent or not a number (an HTTP-date Retry-After)."""
    try:
        return float(response.headers[name])
    except (KeyError, ValueError):
        return None


def _next_cursor(body: Mapping[str, Any], endpoint: str) -> str | None:
    additional = body.get("additional_data")
    cursor = additional.get("next_cursor") if isinstance(additional, dict) else None
    if cursor is None or cursor == "":
        return None
    if not isinstance(cursor, str):
        raise BadResponse(SERVICE, f"GET {endpoint}", 200, "next_cursor is not a string")
    return cursor


def _next_start(body: Mapping[str, Any], endpoint: str) -> int | None:
    """Where the next v1 page starts, or None on the last page. Takes the nested
    ``additional_data.pagination`` and the flat ``additional_data`` form alike."""
    additional = body.get("additional_data")
    if not isinstance(additional, dict):
        return None
    pagination = additional.get("pagination")
    if not isinstance(pagination, dict):
        pagination = additional
    if not pagination.get("more_items_in_collection"):
        return None
    next_start = pagination.get("next_start")
    if not isinstance(next_start, int) or isinstance(next_start, bool):
        raise BadResponse(
            SERVICE,
            f"GET {endpoint}",
            200,
            "more_items_in_collection without an integer next_start",
        )
    return next_start


def _list_data(body: Mapping[str, Any], endpoint: str) -> list[dict[str, Any]]:
    data = body["data"]
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(record, dict) for record in data):
        raise BadResponse(SERVICE, f"GET {endpoint}", 200, "expected a list of objects in 'data'")
    return data


def _api_path(version: str, path: str) -> str:
    """``"deals"`` or ``"/api/v2/deals"`` → ``"/api/v2/deals"``."""
    relative = path.strip("/")
    if "?" in relative or "#" in relative:
        raise ValueError("pass query parameters in params, not in the path")
    prefix = f"api/{version}/"
    if relative.startswith("api/") and not relative.startswith(prefix):
        raise ValueError(f"{path!r} is not under /{prefix}")
    return "/" + (relative if relative.startswith(prefix) else prefix + relative)


def _query(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Query parameters without None values; the token is never one of them."""
    query = {name: value for name, value in (params or {}).items() if value is not None}
    if "api_token" in query:
        raise ValueError("the Pipedrive token travels only in the x-api-token header")
    return query
