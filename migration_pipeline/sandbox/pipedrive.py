"""The fake Pipedrive: a company account served from JSON Lines files, read-only.

It answers the way ``reference/pipedrive_api.md`` describes the real host (§10 is the
checklist): ``/api/v2/…`` cursor lists, ``/api/v1/…`` offset lists (``/v1/…`` is an alias of
``/api/v1/…``), the envelopes, the 401 of the gateway, the burst window and the daily token
budget with their headers, and the faults of :mod:`.faults`. Entity files (:mod:`.dataset`) are
read lazily, on the first request that needs them, and kept in memory.

Request pipeline, in order: a banned caller gets the Cloudflare 403; every other request takes a
slot of its token's burst window (2 s rolling, keyed by a hash of whatever token was presented,
never the token itself), or gets 429; a missing or wrong token gets the gateway's 401; an
authenticated request may draw a fault (and then costs no daily tokens); otherwise it is charged
its endpoint's cost against the company's daily budget (UTC day), or gets 429, and is served.
Every answer carries ``x-ratelimit-limit/-remaining/-reset`` and
``x-daily-ratelimit-token-limit/-remaining``. The limiter, the budget, the bans and the logs
live in ``settings.pipedrive_state`` (SQLite), so every process of one sandbox shares them.

Choices where the reference is UNCONFIRMED or silent (clients must not rely on more):

* ``additional_data`` of v1 lists: ``/notes`` uses the documented nested form
  ``{"pagination": {start, limit, more_items_in_collection[, next_start]}}``; leads, ``*Fields``,
  participants, followers and mailMessages use the FLAT form the SPEC types
  (``{start, limit, more_items_in_collection[, next_start]}``). Clients must accept both, and a
  missing ``additional_data``.
* ``limit`` above 500: v2 answers 400 (v2 validates its parameters); v1 serves 500 and echoes
  ``limit: 500`` in its pagination (the legacy API caps silently). ``limit`` < 1 is 400 on both.
* v2 cursors are base64url JSON naming the list's order and the last record served, so pages
  never repeat or skip; a cursor from another order (``sort_by``/``sort_direction``) is 400.
  ``next_cursor`` is null exactly when nothing more matches.
* 429 body: ``{"success": false, "error": "Request over limit", …}`` for burst and budget
  alike (the docs give no way to tell them apart but the headers: a burst 429 has
  ``x-ratelimit-remaining: 0``, a budget 429 has ``x-daily-ratelimit-token-remaining: 0`` and
  ``retry-after`` = seconds to the next UTC midnight). An injected ``429`` fault looks like a
  burst 429. The budget is "exhausted" once spent: the request that crosses it is still served
  (the day's spend may overshoot by less than one request's cost), every later one gets 429.
* Bans: more than ``settings.ban_after`` limiter 429s (burst or budget, not injected ones)
  within 10 s ban the token bucket for ``settings.ban_seconds``; an injected ``ban`` fault is a
  one-off 403 page and bans nothing.
* Deprecated v1 entity endpoints (``/v1/deals``, ``/v1/persons/{id}``, ``/v1/pipelines``, …) are
  out of support since 2026-08-01 and "may be removed without notice": they answer 410 Gone with
  a pointer to v2, so a client that still uses them fails in the sandbox before it does in
  production.
* Deals: ``/api/v2/deals`` never returns archived deals; ``status`` (open, won, lost, deleted)
  defaults to the three not deleted; ``/api/v2/deals/archived`` is the same over archived deals.
  ``/api/v2/deals/{id}`` returns any deal. Persons, organizations, activities and products are
  served as the files hold them, deleted ones included (flagged ``is_deleted``).
* ``include_fields`` on deals supports the counts we can compute (see ``DEAL_COUNTS``);
  any other value is 400.
* Per-deal sub-resources: ``deal_id`` in participant and mail records is the file's grouping
  key and is not served; v1 followers keep it (it is part of their shape). In participants,
  ``person`` is a v1 person built from the v2 one (``email``/``phone``, ``active_flag``, v1
  timestamps, string ``visible_to``, custom fields at the root in v1 form, plain
  ``owner_id``/``org_id`` ids); ``related_objects`` holds person, organization and user summaries.
* v2 field definitions are derived from the v1 files: active, non-subfield rows; option ids are
  integers for custom fields and strings for built-in ones.
* Unknown paths cost nothing and answer 404, known paths with another method 405. Requests that
  get no answer (timeout and lost faults) are logged with status 0.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx

from . import SandboxSettings
from .dataset import ENTITY_FILES, DatasetError, read_entity
from .faults import FaultInjector, FaultSpec
from .http import Drop, Router, html_response, json_response
from .store import LIMITER_SCHEMA, SlidingWindow, log_fault, log_request, open_db, transaction

Predicate = Callable[[dict[str, Any]], bool]

SIDE = "pipedrive"
ERROR_INFO = "Please check developers.pipedrive.com"
BURST_WINDOW = 2.0
BAN_WINDOW = 10.0
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_IDS = 100
DEAL_STATUSES = ("open", "won", "lost", "deleted")
# include_fields on deals: the counts the sandbox computes, as (file, which records count).
DEAL_COUNTS: dict[str, tuple[str, Predicate]] = {
    "activities_count": ("activities", lambda a: not a.get("is_deleted")),
    "done_activities_count": (
        "activities",
        lambda a: not a.get("is_deleted") and bool(a.get("done")),
    ),
    "undone_activities_count": (
        "activities",
        lambda a: not a.get("is_deleted") and not a.get("done"),
    ),
    "email_messages_count": ("deal_mail_messages", lambda m: True),
    "followers_count": ("deal_followers", lambda f: True),
    "participants_count": ("deal_participants", lambda p: True),
    "notes_count": ("notes", lambda n: n.get("active_flag") is not False),
}
FIELD_ENTITIES = ("deal", "person", "organization", "product", "activity")
# Deprecated v1 paths (reference §1), all answered 410.
DEPRECATED_V1 = (
    *(
        f"/v1/{name}{tail}"
        for name in ("activities", "deals", "persons", "organizations", "products")
        for tail in ("", "/{item}")
    ),
    *(f"/v1/deals/{{id}}/{sub}" for sub in ("activities", "persons", "products")),
    *(f"/v1/persons/{{id}}/{sub}" for sub in ("deals", "activities")),
    *(f"/v1/organizations/{{id}}/{sub}" for sub in ("deals", "persons", "activities")),
    *(f"/v1/{name}{tail}" for name in ("pipelines", "stages") for tail in ("", "/{item}")),
    "/v1/pipelines/{id}/deals",
    "/v1/stages/{id}/deals",
    "/v1/itemSearch",
    "/v1/itemSearch/{item}",
)

CLOUDFLARE_BLOCK_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><title>Attention Required! | Cloudflare</title></head>
<body><div id="cf-wrapper"><h1>Sorry, you have been blocked</h1>
<h2>You are unable to access api.pipedrive.com</h2>
<p>This website is using a security service to protect itself from online attacks.</p>
<p>This error is produced by Cloudflare. Too many requests were sent after the rate limit
was exceeded.</p></div></body></html>
"""
BAD_GATEWAY_PAGE = """<html><head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>
"""
UNAVAILABLE_PAGE = """<html><head><title>503 Service Temporarily Unavailable</title></head>
<body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>
"""
MAINTENANCE_PAGE = """<!DOCTYPE html>
<html><head><title>Pipedrive</title></head>
<body><h1>We'll be back soon</h1><p>Pipedrive is undergoing scheduled maintenance.</p>
</body></html>
"""


class ApiError(Exception):
    """An error answer in Pipedrive's envelope, raised by endpoints."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- envelopes ------------------------------------------------------------------------------


def ok(data: Any, additional_data: Any = None, **extra: Any) -> httpx.Response:
    return json_response(
        200, {"success": True, "data": data, "additional_data": additional_data, **extra}
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    payload = {
        "success": False,
        "error": message,
        "error_info": ERROR_INFO,
        "data": None,
        "additional_data": None,
    }
    return json_response(status, payload, headers=headers)


def unauthorized() -> httpx.Response:
    """The API gateway's 401 (reference §8, observed live)."""
    payload = {
        "success": False,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": ERROR_INFO,
    }
    return json_response(401, payload, headers={"x-401-by-gw": "true"})


def over_limit(headers: dict[str, str] | None = None) -> httpx.Response:
    return error(429, "Request over limit", headers)


def banned() -> httpx.Response:
    return html_response(403, CLOUDFLARE_BLOCK_PAGE, headers={"server": "cloudflare"})


# --- time -----------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 18)  # bounded: query parameters pass through it too
def parse_time(value: str) -> datetime:
    """RFC 3339 or v1 ``YYYY-MM-DD HH:MM:SS`` (UTC when no zone); raises ``ValueError``."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def instant(value: Any) -> float | None:
    """A record's timestamp as epoch seconds; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value).timestamp()
    except ValueError:
        return None


def v1_time(value: Any) -> Any:
    """A timestamp in v1 form, ``YYYY-MM-DD HH:MM:SS`` UTC (unreadable values unchanged)."""
    seconds = instant(value)
    if seconds is None:
        return value
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def rfc3339(value: Any) -> Any:
    """A timestamp in v2 form, ``YYYY-MM-DDTHH:MM:SSZ`` (unreadable values unchanged)."""
    seconds = instant(value)
    if seconds is None:
        return value
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def seconds_to_midnight(now: float) -> int:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, math.ceil((midnight - moment).total_seconds()))


# --- query parameters -----------------------------------------------------------------------


class Query:
    """A request's query parameters, parsed and validated (errors are 400 envelopes)."""

    def __init__(self, request: httpx.Request) -> None:
        self.params = request.url.params

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else None

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.optional_integer(name)
        if value is None:
            return default
        if value < minimum:
            raise ApiError(400, f"{name} must be at least {minimum}")
        return value

    def optional_integer(self, name: str) -> int | None:
        raw = self.get(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, f"{name} must be an integer") from None

    def limit(self, *, cap: bool) -> int:
        """``limit`` (default 100): above 500 is capped (v1) or a 400 (v2)."""
        value = self.integer("limit", DEFAULT_LIMIT, minimum=1)
        if value > MAX_LIMIT and not cap:
            raise ApiError(400, f"limit must not exceed {MAX_LIMIT}")
        return min(value, MAX_LIMIT)

    def choice(self, name: str, allowed: Iterable[str], default: str) -> str:
        value = self.get(name) or default
        if value not in allowed:
            raise ApiError(400, f"{name} must be one of {', '.join(allowed)}")
        return value

    def csv(self, name: str) -> list[str]:
        raw = self.get(name)
        return [part.strip() for part in raw.split(",") if part.strip()] if raw else []

    def ids(self) -> set[int] | None:
        parts = self.csv("ids")
        if not parts:
            return None
        if len(parts) > MAX_IDS:
            raise ApiError(400, f"ids accepts at most {MAX_IDS} ids")
        try:
            return {int(part) for part in parts}
        except ValueError:
            raise ApiError(400, "ids must be a comma-separated list of integers") from None

    def time(self, name: str) -> float | None:
        raw = self.get(name)
        if raw is None:
            return None
        try:
            return parse_time(raw).timestamp()
        except ValueError:
            raise ApiError(400, f"{name} must be an RFC 3339 date-time") from None

    def flag(self, name: str) -> bool | None:
        raw = self.get(name)
        if raw is None:
            return None
        if raw.lower() not in ("0", "1", "true", "false"):
            raise ApiError(400, f"{name} must be true or false")
        return raw.lower() in ("1", "true")


def updated_filters(query: Query, names: Iterable[str]) -> list[Predicate]:
    """``updated_since`` (>=) and ``updated_until`` (<) on ``update_time``."""
    predicates: list[Predicate] = []
    since = query.time("updated_since") if "updated_since" in names else None
    until = query.time("updated_until") if "updated_until" in names else None
    if since is not None:
        predicates.append(lambda r: (t := instant(r.get("update_time"))) is not None and t >= since)
    if until is not None:
        predicates.append(lambda r: (t := instant(r.get("update_time"))) is not None and t < until)
    return predicates


def equality_filters(query: Query, names: Iterable[str]) -> list[Predicate]:
    predicates: list[Predicate] = []
    for name in names:
        value = query.optional_integer(name)
        if value is not None:
            predicates.append(lambda r, name=name, value=value: r.get(name) == value)
    return predicates


def all_of(predicates: list[Predicate]) -> Predicate:
    return lambda record: all(predicate(record) for predicate in predicates)


# --- pagination -----------------------------------------------------------------------------


def encode_cursor(order: str, after: Any) -> str:
    raw = json.dumps({"order": order, "after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, order: str) -> Any:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise ApiError(400, "Invalid cursor") from None
    if not isinstance(payload, dict) or payload.get("order") != order:
        raise ApiError(400, "Invalid cursor (it belongs to another list or order)")
    return payload.get("after")


def record_id(record: dict[str, Any]) -> Any:
    return record.get("id")


class View:
    """Records in one fixed order, paged by a cursor naming the last record served."""

    def __init__(
        self,
        order: str,
        records: list[dict[str, Any]],
        identity: Callable[[dict[str, Any]], Any] = record_id,
    ) -> None:
        self.order = order
        self.records = records
        self.identity = identity
        self.position = {identity(record): index for index, record in enumerate(records)}

    def page(
        self, cursor: str | None, limit: int, keep: Predicate
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` kept records after the cursor, and the next cursor (None when no
        kept record follows)."""
        start = 0
        if cursor is not None:
            after = decode_cursor(cursor, self.order)
            if after not in self.position:
                raise ApiError(400, "Invalid cursor")
            start = self.position[after] + 1
        page: list[dict[str, Any]] = []
        for index in range(start, len(self.records)):
            record = self.records[index]
            if not keep(record):
                continue
            if len(page) == limit:
                return page, encode_cursor(self.order, self.identity(page[-1]))
            page.append(record)
        return page, None


def _comparable(value: Any) -> tuple[int, Any]:
    """A key that orders any JSON value: missing first, then numbers, then everything else as
    text. A ``--from-dir`` dataset may hold malformed records (an id ``"abc"``); the fake serves
    them as they are rather than failing the whole list."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value)
    return (2, str(value))


def sort_key(sort_by: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Total order for ``sort_by``: missing values first, ties broken by id."""
    timed = sort_by in ("update_time", "add_time")

    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        value = instant(record.get(sort_by)) if timed else record.get(sort_by)
        return (*_comparable(value), *_comparable(record.get("id")))

    return key


def offset_page(
    query: Query, records: list[dict[str, Any]], *, nested: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A v1 page and its ``additional_data`` (nested ``pagination`` or the flat form)."""
    start = query.integer("start", 0)
    limit = query.limit(cap=True)
    more = start + limit < len(records)
    pagination: dict[str, Any] = {"start": start, "limit": limit, "more_items_in_collection": more}
    if more:
        pagination["next_start"] = start + limit
    page = records[start : start + limit]
    return page, {"pagination": pagination} if nested else pagination


# --- record shapes --------------------------------------------------------------------------


def is_deleted(deal: dict[str, Any]) -> bool:
    return bool(deal.get("is_deleted")) or deal.get("status") == "deleted"


def v1_contacts(items: Any) -> list[dict[str, Any]]:
    """v1 ``email``/``phone``: empty lists appear as one blank primary entry."""
    return list(items) if items else [{"value": "", "primary": True}]


def v1_custom_fields(values: dict[str, Any], enum_keys: set[str]) -> dict[str, Any]:
    """v2 ``custom_fields`` as v1 root keys (reference §6): objects become ``<k>`` plus suffixed
    subfields, sets comma strings, enum ids strings."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat[key] = value.get("value")
            flat.update({f"{key}_{sub}": item for sub, item in value.items() if sub != "value"})
        elif isinstance(value, list):
            flat[key] = ",".join(str(item) for item in value)
        elif key in enum_keys and value is not None:
            flat[key] = str(value)
        else:
            flat[key] = value
    return flat


def v2_field(field: dict[str, Any], subfield_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A v2 field definition derived from a v1 one."""
    custom = bool(field.get("edit_flag"))
    options = field.get("options")
    subfields = field.get("subfields") or subfield_rows
    return {
        "field_code": field.get("key"),
        "field_name": field.get("name"),
        "field_type": field.get("field_type"),
        "options": [
            {"id": _option_id(option.get("id"), custom), "label": option.get("label")}
            for option in options
        ]
        if options
        else None,
        "subfields": [
            {
                "field_code": sub.get("key"),
                "field_name": sub.get("name"),
                "field_type": sub.get("field_type"),
            }
            for sub in subfields
        ]
        or None,
        "is_custom_field": custom,
    }


def _option_id(value: Any, custom: bool) -> Any:
    if not custom:
        return str(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def user_summary(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user.get("id"),
        "name": user.get("name"),
        "email": user.get("email"),
        "has_pic": bool(user.get("icon_url")),
        "active_flag": user.get("active_flag", True),
    }


def organization_summary(org: dict[str, Any]) -> dict[str, Any]:
    address = org.get("address")
    return {
        "id": org.get("id"),
        "name": org.get("name"),
        "owner_id": org.get("owner_id"),
        "address": address.get("value") if isinstance(address, dict) else address,
        "active_flag": not org.get("is_deleted", False),
    }


PERSON_REF_KEYS = ("name", "email", "phone", "owner_id", "active_flag")


def person_ref(person: dict[str, Any]) -> dict[str, Any]:
    """The summary of a v1 person that ``person_id`` objects and ``related_objects`` carry."""
    return {key: person[key] for key in PERSON_REF_KEYS}


def participant_item(participant: dict[str, Any], person: dict[str, Any] | None) -> dict[str, Any]:
    """A participant in v1 shape: ``person_id`` an object, ``person`` the v1 person."""
    item = {key: value for key, value in participant.items() if key != "deal_id"}
    reference = person_ref(person) if person is not None else {}
    item["person_id"] = {"value": participant.get("person_id"), **reference}
    item["person"] = person
    return item


def mail_data(message: dict[str, Any], include_body: bool) -> dict[str, Any]:
    """A mail message's ``data``: without the file's ``deal_id``; ``body`` only on request."""
    hidden = {"deal_id"} if include_body else {"deal_id", "body"}
    return {key: value for key, value in message.items() if key not in hidden}


# --- the dataset in memory ------------------------------------------------------------------


class Dataset:
    """Entity files loaded on first use, and indexes and orders built from them (thread-safe).
    A file that fails to load is not cached: the next request tries again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.RLock()

    def memo(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        if key in self._cache:
            return self._cache[key]
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def records(self, entity: str) -> list[dict[str, Any]]:
        return self.memo(("records", entity), lambda: read_entity(self.directory, entity))

    def by_id(self, entity: str) -> dict[Any, dict[str, Any]]:
        return self.memo(("by_id", entity), lambda: {r.get("id"): r for r in self.records(entity)})

    def grouped(self, entity: str, field: str) -> dict[Any, list[dict[str, Any]]]:
        def build() -> dict[Any, list[dict[str, Any]]]:
            groups: dict[Any, list[dict[str, Any]]] = {}
            for record in self.records(entity):
                groups.setdefault(record.get(field), []).append(record)
            return groups

        return self.memo(("grouped", entity, field), build)

    def view(self, entity: str, sort_by: str, direction: str) -> View:
        def build() -> View:
            ordered = sorted(
                self.records(entity), key=sort_key(sort_by), reverse=direction == "desc"
            )
            return View(f"{entity}:{sort_by}:{direction}", ordered)

        return self.memo(("view", entity, sort_by, direction), build)

    def enum_keys(self, entity: str) -> set[str]:
        """Keys of the enum fields of ``entity`` (``person`` …), for v1 value shapes."""
        return self.memo(
            ("enum_keys", entity),
            lambda: {
                f.get("key")
                for f in self.records(f"{entity}_fields")
                if f.get("field_type") == "enum"
            },
        )


# --- shared limiter state -------------------------------------------------------------------

STATE_SCHEMA = """
create table if not exists pipedrive_daily_tokens (day text primary key, spent integer not null);
create table if not exists pipedrive_refusals (bucket text not null, at real not null);
create index if not exists pipedrive_refusals_bucket_at on pipedrive_refusals(bucket, at);
create table if not exists pipedrive_bans (bucket text primary key, until real not null);
"""


class LimitState:
    """Burst windows, the daily budget, bans and the request/fault logs in SQLite.

    One connection per fake, used under a lock (a transaction must not interleave with another
    thread's); other processes share the file through SQLite's own locking."""

    def __init__(self, path: Path, settings: SandboxSettings) -> None:
        self.settings = settings
        self._con = open_db(path)
        self._con.executescript(LIMITER_SCHEMA + STATE_SCHEMA)
        self._window = SlidingWindow(self._con, limit=settings.pipedrive_burst, window=BURST_WINDOW)
        self._lock = threading.Lock()

    def ban_left(self, bucket: str, now: float) -> float:
        with self._lock:
            row = self._con.execute(
                "select until from pipedrive_bans where bucket = ?", (bucket,)
            ).fetchone()
        return max(row[0] - now, 0.0) if row else 0.0

    def hit(self, bucket: str, now: float) -> tuple[bool, int, float]:
        with self._lock:
            return self._window.hit(bucket, now)

    def refuse(self, bucket: str, now: float) -> None:
        """Record a limiter 429; past ``ban_after`` of them within 10 s the bucket is banned."""
        if self.settings.ban_after <= 0:
            return
        with self._lock, transaction(self._con) as con:
            con.execute(
                "delete from pipedrive_refusals where bucket = ? and at <= ?",
                (bucket, now - BAN_WINDOW),
            )
            con.execute("insert into pipedrive_refusals values (?, ?)", (bucket, now))
            (count,) = con.execute(
                "select count(*) from pipedrive_refusals where bucket = ?", (bucket,)
            ).fetchone()
            if count > self.settings.ban_after:
                con.execute(
                    "insert or replace into pipedrive_bans values (?, ?)",
                    (bucket, now + self.settings.ban_seconds),
                )
                con.execute("delete from pipedrive_refusals where bucket = ?", (bucket,))

    def charge(self, day: str, cost: int) -> bool:
        """Spend ``cost`` tokens of ``day``'s budget; False (nothing spent) once it is spent."""
        with self._lock, transaction(self._con) as con:
            row = con.execute(
                "select spent from pipedrive_daily_tokens where day = ?", (day,)
            ).fetchone()
            if row and row[0] >= self.settings.pipedrive_daily_tokens:
                return False
            con.execute(
                "insert into pipedrive_daily_tokens values (?, ?) "
                "on conflict(day) do update set spent = spent + excluded.spent",
                (day, cost),
            )
            return True

    def daily_remaining(self, day: str) -> int:
        with self._lock:
            row = self._con.execute(
                "select spent from pipedrive_daily_tokens where day = ?", (day,)
            ).fetchone()
        return max(self.settings.pipedrive_daily_tokens - (row[0] if row else 0), 0)

    def log_request(self, method: str, path: str, status: int) -> None:
        with self._lock:
            log_request(self._con, SIDE, method, path, status)

    def log_fault(self, kind: str, method: str, path: str) -> None:
        with self._lock:
            log_fault(self._con, SIDE, kind, method, path)

    def scalar(self, sql: str, *params: Any) -> int:
        with self._lock:
            (value,) = self._con.execute(sql, params).fetchone()
        return int(value or 0)

    def fault_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._con.execute(
                "select kind, count(*) from fault_log where side = ? group by kind", (SIDE,)
            ).fetchall()
        return {kind: count for kind, count in rows}

    def close(self) -> None:
        with self._lock:
            self._con.close()


# --- the fake -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A routed endpoint and its cost in daily tokens (reference §4)."""

    serve: Callable[..., httpx.Response]
    cost: int

    def __call__(self, request: httpx.Request, **params: Any) -> httpx.Response:
        return self.serve(request, **params)


@dataclass(frozen=True)
class Collection:
    """A v2 collection (its path is its file's name): list filters and costs."""

    entity: str
    noun: str
    list_cost: int = 10
    sorts: tuple[str, ...] = ("id", "update_time", "add_time")
    equals: tuple[str, ...] = ()
    updated: tuple[str, ...] = ("updated_since", "updated_until")
    flags: tuple[str, ...] = ()


DEALS = Collection(
    "deals", "Deal", equals=("owner_id", "person_id", "org_id", "pipeline_id", "stage_id")
)
COLLECTIONS = (
    Collection("persons", "Person", equals=("owner_id", "org_id")),
    Collection("organizations", "Organization", equals=("owner_id",)),
    Collection(
        "activities",
        "Activity",
        sorts=("id", "update_time", "add_time", "due_date"),
        equals=("owner_id", "deal_id", "person_id", "org_id"),
        flags=("done",),
    ),
    Collection(
        "products",
        "Product",
        sorts=("id", "update_time", "add_time", "name"),
        equals=("owner_id",),
        updated=("updated_since",),
    ),
    Collection("pipelines", "Pipeline", list_cost=5, updated=()),
    Collection(
        "stages",
        "Stage",
        list_cost=5,
        sorts=("id", "update_time", "add_time", "order_nr"),
        equals=("pipeline_id",),
        updated=(),
    ),
)


@dataclass(frozen=True)
class BurstState:
    limit: int
    remaining: int
    reset: int


def presented_token(request: httpx.Request) -> str:
    """The token a request presents: ``x-api-token``, ``Authorization: Bearer``, ``?api_token``."""
    header = request.headers.get("x-api-token")
    if header:
        return header
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.url.params.get("api_token") or ""


def token_bucket(token: str) -> str:
    """The limiter key of a token: a hash, so the token itself is never stored."""
    return "pipedrive:" + hashlib.sha256(token.encode()).hexdigest()[:24]


def internal_path(path: str) -> str | None:
    """``/api/v1/x`` and ``/v1/x`` → ``/v1/x``; ``/api/v2/x`` → ``/v2/x``; else None."""
    for prefix, version in (("/api/v1/", "/v1/"), ("/v1/", "/v1/"), ("/api/v2/", "/v2/")):
        if path.startswith(prefix):
            return version + path[len(prefix) :]
    return None


class PipedriveFake:
    """A Pipedrive company account served from ``dataset_dir`` (see the module docstring).

    ``handle`` is thread-safe and may run in several processes sharing ``settings``' state file.
    ``clock`` (epoch seconds) drives the limiter, bans and the budget's day; tests move it.
    """

    def __init__(
        self,
        dataset_dir: Path,
        settings: SandboxSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.data = Dataset(dataset_dir)
        self.faults = FaultInjector(FaultSpec.parse(settings.faults, SIDE))
        self.state = LimitState(settings.pipedrive_state, settings)
        self.clock = clock
        self.router = self._build_router()

    # inspection -------------------------------------------------------------------------

    def validate(self) -> None:
        """Load every entity file now; raises :class:`DatasetError` naming file and line."""
        for entity in ENTITY_FILES:
            self.data.records(entity)

    def requests_served(self) -> int:
        """Requests answered (or dropped) by every process sharing this sandbox's state."""
        return self.state.scalar("select count(*) from request_log where side = ?", SIDE)

    def tokens_spent(self) -> int:
        """Daily-budget tokens spent, summed over all days."""
        return self.state.scalar("select sum(spent) from pipedrive_daily_tokens")

    def faults_injected(self) -> dict[str, int]:
        """Injected faults by kind, across processes."""
        return self.state.fault_counts()

    def close(self) -> None:
        self.state.close()

    # request pipeline ---------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request (raises :class:`~.http.Drop` for timeout and lost faults)."""
        status = 0
        try:
            response = self._respond(request)
            status = response.status_code
            return response
        finally:
            self.state.log_request(request.method, request.url.path, status)

    def _respond(self, request: httpx.Request) -> httpx.Response:
        now = self.clock()
        day = utc_day(now)
        token = presented_token(request)
        bucket = token_bucket(token)
        burst_limit = self.settings.pipedrive_burst
        ban_left = self.state.ban_left(bucket, now)
        if ban_left > 0:
            return self._metered(banned(), BurstState(burst_limit, 0, math.ceil(ban_left)), day)
        accepted, remaining, reset = self.state.hit(bucket, now)
        burst = BurstState(burst_limit, remaining, max(1, math.ceil(reset)))
        if not accepted:
            self.state.refuse(bucket, now)
            return self._metered(over_limit(), burst, day)
        if not hmac.compare_digest(token.encode(), self.settings.pipedrive_token.encode()):
            return self._metered(unauthorized(), burst, day)
        if self.faults.spec.latency:
            time.sleep(self.faults.spec.latency)
        endpoint, params = self._resolve(request)
        fault = self.faults.draw()
        if fault is not None:
            self.state.log_fault(fault, request.method, request.url.path)
            if fault == "429":
                burst = BurstState(burst_limit, 0, burst.reset)
            return self._metered(self._faulty(fault, request, endpoint, params), burst, day)
        if not self.state.charge(day, endpoint.cost):
            self.state.refuse(bucket, now)
            retry = {"retry-after": str(seconds_to_midnight(now))}
            return self._metered(over_limit(retry), burst, day)
        return self._metered(self._dispatch(endpoint, request, params), burst, day)

    def _metered(self, response: httpx.Response, burst: BurstState, day: str) -> httpx.Response:
        response.headers.update(
            {
                "x-ratelimit-limit": str(burst.limit),
                "x-ratelimit-remaining": str(burst.remaining),
                "x-ratelimit-reset": str(burst.reset),
                "x-daily-ratelimit-token-limit": str(self.settings.pipedrive_daily_tokens),
                "x-daily-ratelimit-token-remaining": str(self.state.daily_remaining(day)),
            }
        )
        return response

    def _faulty(
        self, fault: str, request: httpx.Request, endpoint: Endpoint, params: dict[str, Any]
    ) -> httpx.Response:
        if fault in ("timeout", "lost"):
            # A GET commits nothing: a lost answer looks like a timeout to the client.
            raise Drop("timeout")
        if fault == "429":
            return over_limit()
        if fault == "ban":
            return banned()
        if fault == "html":
            return html_response(200, MAINTENANCE_PAGE)
        if fault == "truncate":
            full = self._dispatch(endpoint, request, params)
            content_type = full.headers["content-type"]
            return httpx.Response(
                200,
                content=full.content[: len(full.content) // 2],
                headers={"content-type": content_type},
            )
        return self._server_error()

    def _server_error(self) -> httpx.Response:
        """500 (JSON), 502 and 503 (HTML pages) in turn."""
        status = (500, 502, 503)[(self.faults.injected["5xx"] - 1) % 3]
        if status == 502:
            return html_response(502, BAD_GATEWAY_PAGE, headers={"server": "cloudflare"})
        if status == 503:
            return html_response(503, UNAVAILABLE_PAGE)
        return error(500, "Internal server error")

    def _resolve(self, request: httpx.Request) -> tuple[Endpoint, dict[str, Any]]:
        path = internal_path(request.url.path)
        resolved = self.router.resolve(request.method, path) if path else None
        if resolved is not None:
            endpoint, params = resolved
            return endpoint, params
        if path is not None and self.router.allows(path):
            return Endpoint(_method_not_allowed, 0), {}
        return Endpoint(_not_found, 0), {}

    def _dispatch(
        self, endpoint: Endpoint, request: httpx.Request, params: dict[str, Any]
    ) -> httpx.Response:
        try:
            return endpoint(request, **params)
        except ApiError as exc:
            return error(exc.status, exc.message)
        except DatasetError as exc:
            return error(500, f"Sandbox dataset error: {exc}")

    # routes -------------------------------------------------------------------------------

    def _build_router(self) -> Router:
        router = Router()

        def get(path: str, cost: int, serve: Callable[..., httpx.Response]) -> None:
            router.add("GET", path, Endpoint(serve, cost))

        get("/v2/deals", 10, self._deals)
        get("/v2/deals/archived", 20, self._archived_deals)
        get("/v2/deals/{deal_id:int}", 1, self._deal)
        get("/v2/deals/{deal_id:int}/followers", 10, self._followers_v2)
        for collection in COLLECTIONS:
            get(f"/v2/{collection.entity}", collection.list_cost, self._lister(collection))
            get(f"/v2/{collection.entity}/{{item_id:int}}", 1, self._getter(collection))
        for name in FIELD_ENTITIES:
            get(f"/v2/{name}Fields", 10, self._fields_v2(f"{name}_fields"))
            get(f"/v1/{name}Fields", 20, self._fields_v1(f"{name}_fields"))
        get("/v1/notes", 20, self._notes)
        get("/v1/leads", 20, self._leads(archived=False))
        get("/v1/leads/archived", 40, self._leads(archived=True))
        get("/v1/deals/{deal_id:int}/participants", 20, self._participants)
        get("/v1/deals/{deal_id:int}/followers", 20, self._followers_v1)
        get("/v1/deals/{deal_id:int}/mailMessages", 20, self._deal_mail)
        get("/v1/mailbox/mailMessages/{message_id:int}", 2, self._mail_message)
        get("/v1/users", 20, self._users)
        get("/v1/users/me", 2, self._me)
        get("/v1/users/{user_id:int}", 2, self._user)
        get("/v1/currencies", 20, self._currencies)
        get("/v1/activityTypes", 20, self._activity_types)
        for path in DEPRECATED_V1:
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                router.add(method, path, Endpoint(_gone, 0))
        return router

    # v2 collections -----------------------------------------------------------------------

    def _v2_list(
        self,
        request: httpx.Request,
        collection: Collection,
        extra: list[Predicate],
        decorate: Callable[[dict[str, Any]], dict[str, Any]] = dict,
    ) -> httpx.Response:
        query = Query(request)
        limit = query.limit(cap=False)
        sort_by = query.choice("sort_by", collection.sorts, "id")
        direction = query.choice("sort_direction", ("asc", "desc"), "asc")
        predicates = [
            *extra,
            *equality_filters(query, collection.equals),
            *updated_filters(query, collection.updated),
        ]
        ids = query.ids()
        if ids is not None:
            predicates.append(lambda r: r.get("id") in ids)
        for name in collection.flags:
            wanted = query.flag(name)
            if wanted is not None:
                predicates.append(lambda r, name=name, wanted=wanted: bool(r.get(name)) == wanted)
        view = self.data.view(collection.entity, sort_by, direction)
        page, next_cursor = view.page(query.get("cursor"), limit, all_of(predicates))
        return ok([decorate(record) for record in page], {"next_cursor": next_cursor})

    def _lister(self, collection: Collection) -> Callable[[httpx.Request], httpx.Response]:
        return lambda request: self._v2_list(request, collection, [])

    def _getter(self, collection: Collection) -> Callable[..., httpx.Response]:
        def get(request: httpx.Request, item_id: int) -> httpx.Response:
            record = self.data.by_id(collection.entity).get(item_id)
            if record is None:
                raise ApiError(404, f"{collection.noun} not found")
            return ok(record)

        return get

    def _deals(self, request: httpx.Request) -> httpx.Response:
        return self._deal_list(request, archived=False)

    def _archived_deals(self, request: httpx.Request) -> httpx.Response:
        return self._deal_list(request, archived=True)

    def _deal_list(self, request: httpx.Request, *, archived: bool) -> httpx.Response:
        query = Query(request)
        statuses = query.csv("status") or ["open", "won", "lost"]
        unknown = sorted(set(statuses) - set(DEAL_STATUSES))
        if unknown:
            raise ApiError(
                400, f"unknown status {', '.join(unknown)}; use {', '.join(DEAL_STATUSES)}"
            )

        def keep(deal: dict[str, Any]) -> bool:
            if bool(deal.get("is_archived")) != archived:
                return False
            return ("deleted" if is_deleted(deal) else deal.get("status")) in statuses

        return self._v2_list(request, DEALS, [keep], self._deal_decorator(query))

    def _deal(self, request: httpx.Request, deal_id: int) -> httpx.Response:
        deal = self.data.by_id("deals").get(deal_id)
        if deal is None:
            raise ApiError(404, "Deal not found")
        return ok(self._deal_decorator(Query(request))(deal))

    def _deal_decorator(self, query: Query) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Adds the ``include_fields`` counts to a deal (validated before any page is read)."""
        wanted = query.csv("include_fields")
        unknown = sorted(set(wanted) - set(DEAL_COUNTS))
        if unknown:
            raise ApiError(
                400,
                f"include_fields {', '.join(unknown)} not supported by the sandbox; "
                f"supported: {', '.join(DEAL_COUNTS)}",
            )
        if not wanted:
            return dict
        return lambda deal: {**deal, **self._deal_counts(deal.get("id"), wanted)}

    def _deal_counts(self, deal_id: Any, wanted: list[str]) -> dict[str, int]:
        counts = {}
        for name in wanted:
            entity, counted = DEAL_COUNTS[name]
            children = self.data.grouped(entity, "deal_id").get(deal_id, [])
            counts[name] = sum(1 for child in children if counted(child))
        return counts

    def _deal_children(self, entity: str, deal_id: int) -> list[dict[str, Any]]:
        if deal_id not in self.data.by_id("deals"):
            raise ApiError(404, "Deal not found")
        return self.data.grouped(entity, "deal_id").get(deal_id, [])

    def _followers_v2(self, request: httpx.Request, deal_id: int) -> httpx.Response:
        query = Query(request)
        limit = query.limit(cap=False)
        view = View(f"deal_followers:{deal_id}", self._deal_children("deal_followers", deal_id))
        page, next_cursor = view.page(query.get("cursor"), limit, lambda record: True)
        data = [{"user_id": f.get("user_id"), "add_time": rfc3339(f.get("add_time"))} for f in page]
        return ok(data, {"next_cursor": next_cursor})

    def _fields_v2(self, entity: str) -> Callable[[httpx.Request], httpx.Response]:
        def fields(request: httpx.Request) -> httpx.Response:
            query = Query(request)
            limit = query.limit(cap=False)
            view = self.data.memo(("fields_v2", entity), lambda: self._v2_fields_view(entity))
            page, next_cursor = view.page(query.get("cursor"), limit, lambda record: True)
            return ok(page, {"next_cursor": next_cursor})

        return fields

    def _v2_fields_view(self, entity: str) -> View:
        rows = self.data.records(entity)
        subfields: dict[Any, list[dict[str, Any]]] = {}
        for row in rows:
            if row.get("is_subfield"):
                subfields.setdefault(row.get("parent_id"), []).append(row)
        derived = [
            v2_field(row, subfields.get(row.get("id"), []))
            for row in rows
            if not row.get("is_subfield") and row.get("active_flag", True)
        ]
        return View(entity, derived, identity=lambda field: field["field_code"])

    # v1 -----------------------------------------------------------------------------------

    def _fields_v1(self, entity: str) -> Callable[[httpx.Request], httpx.Response]:
        def fields(request: httpx.Request) -> httpx.Response:
            page, additional = offset_page(Query(request), self.data.records(entity), nested=False)
            return ok(page, additional)

        return fields

    def _notes(self, request: httpx.Request) -> httpx.Response:
        query = Query(request)
        predicates = [
            *equality_filters(query, ("deal_id", "person_id", "org_id", "lead_id", "user_id")),
            *updated_filters(query, ("updated_since",)),
        ]
        notes = self.data.records("notes")
        if predicates:
            notes = [note for note in notes if all_of(predicates)(note)]
        page, additional = offset_page(query, notes, nested=True)
        return ok(page, additional)

    def _leads(self, *, archived: bool) -> Callable[[httpx.Request], httpx.Response]:
        def leads(request: httpx.Request) -> httpx.Response:
            query = Query(request)
            keep = all_of(updated_filters(query, ("updated_since",)))
            records = [
                lead
                for lead in self.data.records("leads")
                if bool(lead.get("is_archived")) == archived and keep(lead)
            ]
            page, additional = offset_page(query, records, nested=False)
            return ok(page, additional)

        return leads

    def _followers_v1(self, request: httpx.Request, deal_id: int) -> httpx.Response:
        followers = self._deal_children("deal_followers", deal_id)
        page, additional = offset_page(Query(request), followers, nested=False)
        return ok(page, additional)

    def _participants(self, request: httpx.Request, deal_id: int) -> httpx.Response:
        participants = self._deal_children("deal_participants", deal_id)
        page, additional = offset_page(Query(request), participants, nested=False)
        persons = self.data.by_id("persons")
        related: dict[str, dict[str, Any]] = {"person": {}, "organization": {}, "user": {}}
        items = []
        for participant in page:
            person = persons.get(participant.get("person_id"))
            v1_person = self._v1_person(person) if person is not None else None
            items.append(participant_item(participant, v1_person))
            self._relate(related, v1_person, participant.get("added_by_user_id"))
        return ok(items, additional, related_objects=related)

    def _v1_person(self, person: dict[str, Any]) -> dict[str, Any]:
        owner = self.data.by_id("users").get(person.get("owner_id")) or {}
        org = self.data.by_id("organizations").get(person.get("org_id")) or {}
        visible_to = person.get("visible_to")
        return {
            "id": person.get("id"),
            "name": person.get("name"),
            "first_name": person.get("first_name"),
            "last_name": person.get("last_name"),
            "email": v1_contacts(person.get("emails")),
            "phone": v1_contacts(person.get("phones")),
            "owner_id": person.get("owner_id"),
            "owner_name": owner.get("name"),
            "org_id": person.get("org_id"),
            "org_name": org.get("name"),
            "active_flag": not person.get("is_deleted", False),
            "visible_to": str(visible_to) if visible_to is not None else None,
            "label_ids": person.get("label_ids", []),
            "add_time": v1_time(person.get("add_time")),
            "update_time": v1_time(person.get("update_time")),
            **v1_custom_fields(person.get("custom_fields") or {}, self.data.enum_keys("person")),
        }

    def _relate(
        self, related: dict[str, dict[str, Any]], person: dict[str, Any] | None, added_by: Any
    ) -> None:
        """Adds a participant's person, its organization and the users involved to
        ``related_objects``."""
        users = self.data.by_id("users")
        user_ids = [added_by.get("id") if isinstance(added_by, dict) else added_by]
        if person is not None:
            related["person"][str(person["id"])] = {"id": person["id"], **person_ref(person)}
            org = self.data.by_id("organizations").get(person["org_id"])
            if org is not None:
                related["organization"][str(org.get("id"))] = organization_summary(org)
            user_ids.append(person["owner_id"])
        for user_id in user_ids:
            if user_id in users:
                related["user"][str(user_id)] = user_summary(users[user_id])

    def _deal_mail(self, request: httpx.Request, deal_id: int) -> httpx.Response:
        query = Query(request)
        include_body = bool(query.flag("include_body"))
        page, additional = offset_page(
            query, self._deal_children("deal_mail_messages", deal_id), nested=False
        )
        wrappers = [
            {
                "object": "mailMessage",
                "timestamp": message.get("message_time") or message.get("add_time"),
                "data": mail_data(message, include_body),
            }
            for message in page
        ]
        return ok(wrappers, additional)

    def _mail_message(self, request: httpx.Request, message_id: int) -> httpx.Response:
        message = self.data.by_id("deal_mail_messages").get(message_id)
        if message is None:
            raise ApiError(404, "Mail message not found")
        payload = {
            "success": True,
            "status_code": 200,
            "status_text": "OK",
            "service": "mailbox",
            "data": mail_data(message, bool(Query(request).flag("include_body"))),
        }
        return json_response(200, payload)

    def _users(self, request: httpx.Request) -> httpx.Response:
        return ok(self.data.records("users"))

    def _user(self, request: httpx.Request, user_id: int) -> httpx.Response:
        user = self.data.by_id("users").get(user_id)
        if user is None:
            raise ApiError(404, "User not found")
        return ok(user)

    def _me(self, request: httpx.Request) -> httpx.Response:
        """The token's user: the one flagged ``is_you`` (else the first), with the company."""
        users = self.data.records("users")
        me = next((user for user in users if user.get("is_you")), users[0] if users else None)
        if me is None:
            raise ApiError(404, "User not found")
        return ok(
            {
                **me,
                "is_you": True,
                "company_id": me.get("company_id", 1),
                "company_name": me.get("company_name", "Sandbox Company"),
                "company_domain": me.get("company_domain", "sandbox"),
            }
        )

    def _currencies(self, request: httpx.Request) -> httpx.Response:
        term = (Query(request).get("term") or "").lower()
        currencies = [
            currency
            for currency in self.data.records("currencies")
            if term in str(currency.get("code", "")).lower()
            or term in str(currency.get("name", "")).lower()
        ]
        return ok(currencies)

    def _activity_types(self, request: httpx.Request) -> httpx.Response:
        return ok(self.data.records("activity_types"))


def _not_found(request: httpx.Request) -> httpx.Response:
    raise ApiError(404, f"Not found: {request.method} {request.url.path}")


def _method_not_allowed(request: httpx.Request) -> httpx.Response:
    raise ApiError(405, f"Method {request.method} not allowed on {request.url.path}")


def _gone(request: httpx.Request, **params: Any) -> httpx.Response:
    path = internal_path(request.url.path) or request.url.path
    entity = path.split("/")[2]
    replacement = "/api/v2/itemSearch" if entity == "itemSearch" else f"/api/v2/{entity}"
    raise ApiError(
        410,
        f"{request.method} {path} is a deprecated API v1 endpoint, out of support since "
        f"2026-08-01. Use {replacement} instead.",
    )
