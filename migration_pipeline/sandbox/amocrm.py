"""The fake amoCRM (API v4): one account whose whole state lives in one SQLite file.

Every process and thread that builds an :class:`AmoCrmFake` on the same settings serves the
same account: entities, custom fields, links, the rate-limit window, the ban and the request
log are rows in ``settings.amocrm_state``; nothing authoritative is kept in memory (only the
fault generator, which is seeded). Facts come from ``reference/amocrm_api.md``; its §10
checklist is what this module implements.

Our choices where the reference says UNCONFIRMED or nothing:

* **Rate limit**: account-wide (not per token or IP): at most ``round(amocrm_rps)`` accepted
  requests in any 1 s window, or one request per ``1 / amocrm_rps`` s below 1 rps. Like the
  ban, it answers before the token is checked (both pages come from nginx, in front of the
  API), so every request counts. A request is logged under the time the limiter admitted it,
  so the request log shows exactly what the limiter let through (``max_requests_per_second``).
* **Ban**: more than ``ban_after`` rate-limit 429s within 10 s ban the account for
  ``ban_seconds``; injected 429s do not count. The ``ban`` fault answers one request with the
  ban page and bans nothing.
* **Batch limits**: more than 250 items per write (50 per complex call), an empty batch or a
  body that is not a JSON array answer 400 problem+json *without* ``validation-errors``; its
  ``detail`` says why, e.g. ``"Too many entities in one request: 251 (at most 250)"``.
* **All or nothing**: a batch with any invalid item answers 400 and creates nothing.
* **Validation codes** besides the documented ``NotSupportedChoice`` (unknown ids, enums,
  codes, statuses, users): ``InvalidType``, ``NotBlank`` (required), ``TooLong``, ``TooMany``
  (over a count limit) and ``AlreadyExists`` (tag name, field code).
* **Lengths**: names (entities, pipelines, statuses, fields, tags, loss reasons) at most 255
  characters; note text, task text and ``textarea`` values at most 65,535. ``text``,
  ``url`` and ``multitext`` values at most 256 (reference §8).
* **Timestamps**: any integer ``created_at``/``updated_at``/``closed_at`` is accepted (past or
  future). Lead ``price`` must be an integer (floats are rejected, amoCRM.ru has no minor units)
  between 0 and 2,147,483,647 (a signed 32-bit budget: our choice, the limit is unconfirmed).
* **Lists**: ``limit`` above 250 is clamped to 250 (custom fields: 50 per page); ``filter[name]``
  is an exact match; ``query`` is a case-insensitive substring of the name or of any custom
  field value; ``order[id|created_at|updated_at]=asc|desc``, ties broken by id.
* **Custom fields**: creation answers **201** (KOMMO-HTTP). Values read back as
  ``{value, enum_id, enum_code}`` for enum fields; ``multitext`` values also carry ``enum``
  (reference §4.3) and default to the field's first enum (``WORK``) when none is given.
* **Links**: a lead and a contact each have at most one company (linking another replaces
  it); the first contact linked to a lead becomes its main contact. ``_embedded.contacts`` and
  ``_embedded.companies`` are read on lead create only; contacts and companies link through
  the links API.
* **Tags**: names match case-insensitively; ``POST …/tags`` with an existing name is
  ``AlreadyExists``; ``_embedded.tags`` by name finds or creates.
* **Missing things**: ``GET`` of a missing entity, pipeline, status, user, field or loss reason
  answers 204; ``POST …/pipelines/{id}/statuses`` of a missing pipeline 404 problem+json.
* **Faults**: ``5xx`` cycles 500 (problem+json), 502, 503, 504 (nginx HTML); a ``timeout``
  is logged with status 0 (the limiter admitted it, nobody got an answer).
* **reset()** empties every table (account, limiter, ban and logs) and seeds a new account.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import re
import sqlite3
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, partial
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpx

from . import AMOCRM_URL, SandboxSettings
from .dataset import read_entity
from .faults import FaultInjector, FaultSpec
from .http import Drop, Router, html_response, json_response, read_json
from .store import (
    LIMITER_SCHEMA,
    SlidingWindow,
    log_fault,
    max_requests_in_window,
    open_db,
    transaction,
)

SIDE = "amocrm"
ACCOUNT_BUCKET = "amocrm-account"
ACCOUNT_ID = 29_873_511
FIRST_ID = 10_000_001
MAX_WRITE = 250
MAX_COMPLEX = 50
MAX_COMPLEX_FIELDS = 40
MAX_LIMIT = 250
DEFAULT_LIMIT = 50
MAX_FIELDS_PAGE = 50
MAX_PIPELINES = 50
MAX_STATUSES = 100
NAME_MAX = 255
TEXT_VALUE_MAX = 256
LONG_TEXT_MAX = 65_535
PRICE_MAX = 2_147_483_647
THROTTLE_WINDOW = 10.0
WON, LOST = 142, 143

ENTITY_KINDS = ("leads", "contacts", "companies")
COUNTED_KINDS = (*ENTITY_KINDS, "tasks", "notes")
WRITE_FAULTS = ("429", "5xx", "timeout", "lost", "ban")
READ_FAULTS = ("429", "5xx", "timeout", "ban")
SERVER_ERRORS = (500, 502, 503, 504)
LINKABLE = {
    "leads": ("contacts", "companies"),
    "contacts": ("companies",),
    "companies": ("contacts", "leads"),
}
ALWAYS_EMBEDDED = {"leads": ("companies",), "contacts": ("companies",), "companies": ()}
EMBEDDED_WITH = {"leads": ("contacts",), "contacts": ("leads",), "companies": ("contacts", "leads")}

TASK_TYPES = (
    {"id": 1, "name": "Связаться", "color": None, "icon_id": None, "code": "FOLLOW_UP"},
    {"id": 2, "name": "Встреча", "color": None, "icon_id": None, "code": "MEETING"},
)
NOTE_PARAMS = {
    "common": ("text",),
    "call_in": ("uniq", "duration", "source", "phone"),
    "call_out": ("uniq", "duration", "source", "phone"),
    "service_message": ("service", "text"),
    "extended_service_message": ("service", "text"),
    "message_cashier": ("status", "text"),
    "geolocation": ("text", "address", "longitude", "latitude"),
    "sms_in": ("text", "phone"),
    "sms_out": ("text", "phone"),
    "attachment": ("file_uuid", "file_name"),
}
BASE_FIELD_TYPES = (
    "text", "numeric", "checkbox", "select", "multiselect", "date", "url", "textarea",
    "radiobutton", "streetaddress", "smart_address", "birthday", "legal_entity", "date_time",
    "tracking_data", "monetary", "file",
)  # fmt: skip
FIELD_TYPES = {
    "leads": (*BASE_FIELD_TYPES, "chained_list"),
    "contacts": (*BASE_FIELD_TYPES, "multitext"),
    "companies": (*BASE_FIELD_TYPES, "multitext"),
}
ENUM_TYPES = ("select", "multiselect", "radiobutton", "multitext")
SINGLE_VALUE_TYPES = (
    "text", "numeric", "checkbox", "select", "radiobutton", "date", "date_time", "birthday",
    "url", "textarea", "monetary", "streetaddress",
)  # fmt: skip

SEED_STATUSES = (
    ("Первичный контакт", 20, "#99ccff"),
    ("Переговоры", 30, "#ffff99"),
    ("Принимают решение", 40, "#ffcc66"),
)
CLOSED_NAMES = {WON: "Успешно реализовано", LOST: "Закрыто и не реализовано"}
PHONE_ENUMS = ("WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER")
EMAIL_ENUMS = ("WORK", "PRIV", "OTHER")
LOSS_REASONS = ("Дорого", "Выбрали конкурента")
CURRENCY_SYMBOLS = {"RUB": "₽", "USD": "$", "EUR": "€", "KZT": "₸", "UAH": "₴", "GBP": "£"}
ACCOUNT_WITH: dict[str, tuple[str, Any]] = {
    "users_groups": ("_embedded", [{"id": 0, "name": "Отдел продаж", "uuid": None}]),
    "task_types": ("_embedded", list(TASK_TYPES)),
    "datetime_settings": (
        "_embedded",
        {
            "date_pattern": "d.m.Y H:i",
            "short_date_pattern": "d.m.Y",
            "short_time_pattern": "H:i",
            "date_format": "d.m.Y",
            "time_format": "H:i:s",
            "timezone": "Europe/Moscow",
            "timezone_offset": "+03:00",
        },
    ),
    "amojo_id": ("top", "0b7bcb52-5b1c-4bd6-9a1a-5f0d5c8e2f11"),
    "version": ("top", 11),
    "is_api_filter_enabled": ("top", True),
}

SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists counters (name text primary key, value integer not null);
create table if not exists objects (
    kind text not null, id integer not null, data text not null, primary key (kind, id)
);
create table if not exists entities (
    id integer primary key,
    kind text not null,
    name text not null,
    responsible_user_id integer,
    pipeline_id integer,
    status_id integer,
    parent_kind text,
    parent_id integer,
    created_at integer not null,
    updated_at integer not null,
    data text not null
);
create index if not exists entities_kind_id on entities(kind, id);
create index if not exists entities_parent on entities(kind, parent_kind, parent_id);
create table if not exists field_values (
    kind text not null, entity_id integer not null, field_id integer not null, value text not null
);
create index if not exists field_values_lookup on field_values(kind, field_id, value);
create index if not exists field_values_entity on field_values(entity_id);
create table if not exists links (
    kind text not null,
    entity_id integer not null,
    to_kind text not null,
    to_id integer not null,
    is_main integer not null,
    primary key (kind, entity_id, to_kind, to_id)
);
create index if not exists links_reverse on links(to_kind, to_id, kind);
create table if not exists throttled (at real not null);
"""
STATE_TABLES = (
    "meta", "counters", "objects", "entities", "field_values", "links", "throttled",
    "limiter_hits", "request_log", "fault_log",
)  # fmt: skip

Entity = dict[str, Any]


# ---------------------------------------------------------------------------------- responses


class _Rejected(Exception):  # noqa: N818 - an answer, not an error of ours
    """An error answer; raised inside the request's transaction, so nothing it wrote stays."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _hal(status: int, payload: Any) -> httpx.Response:
    return json_response(status, payload, content_type="application/hal+json")


def _no_content() -> httpx.Response:
    return httpx.Response(204)


def _problem(status: int, detail: str, **extra: Any) -> httpx.Response:
    body = {
        **extra,
        "title": HTTPStatus(status).phrase,
        "type": f"https://httpstatus.es/{status}",
        "status": status,
        "detail": detail,
    }
    return json_response(status, body, content_type="application/problem+json")


def _bad_request(detail: str) -> _Rejected:
    return _Rejected(_problem(400, detail))


def _nginx(status: int) -> httpx.Response:
    """The HTML page nginx answers with (429, 403 ban, 502-504): no JSON, no Retry-After."""
    title = f"{status} {HTTPStatus(status).phrase}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return html_response(status, page)


# --------------------------------------------------------------------------------- validation


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Check:
    """The validation errors of one submitted item, with paths in the API's dot notation."""

    def __init__(self, prefix: str = "", errors: list[dict[str, str]] | None = None) -> None:
        self.prefix = prefix
        self.errors: list[dict[str, str]] = [] if errors is None else errors

    def at(self, prefix: str) -> _Check:
        """The same error list, for a nested object (``prefix`` ends with a dot)."""
        return _Check(self.prefix + prefix, self.errors)

    def fail(self, code: str, path: str, detail: str) -> None:
        self.errors.append({"code": code, "path": self.prefix + path, "detail": detail})

    def choice(self, ok: bool, path: str) -> None:
        if not ok:
            self.fail("NotSupportedChoice", path, "The value you selected is not a valid choice.")

    def member(self, value: Any, allowed: Any, path: str) -> None:
        """A valid value (None means already reported) must be one of ``allowed``."""
        if value is not None:
            self.choice(value in allowed, path)

    def required(self, item: dict[str, Any], key: str) -> bool:
        if item.get(key) in (None, ""):
            self.fail("NotBlank", key, "This value should not be blank.")
            return False
        return True

    def required_text(self, item: dict[str, Any], key: str, max_length: int) -> str | None:
        return self.text(item[key], key, max_length) if self.required(item, key) else None

    def required_integer(self, item: dict[str, Any], key: str) -> int | None:
        return self.integer(item[key], key) if self.required(item, key) else None

    def integer(self, value: Any, path: str) -> int | None:
        if _is_int(value):
            return value
        self.fail("InvalidType", path, "This value should be of type int.")
        return None

    def boolean(self, value: Any, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.fail("InvalidType", path, "This value should be of type bool.")
        return None

    def text(self, value: Any, path: str, max_length: int) -> str | None:
        if not isinstance(value, str):
            self.fail("InvalidType", path, "This value should be of type string.")
            return None
        if len(value) > max_length:
            detail = f"This value is too long. It should have {max_length} characters or less."
            self.fail("TooLong", path, detail)
            return None
        return value

    def too_many(self, count: int, maximum: int, path: str) -> bool:
        if count <= maximum:
            return False
        self.fail("TooMany", path, f"This collection should contain {maximum} elements or less.")
        return True


def _request_id(item: Any, index: int) -> str:
    given = item.get("request_id") if isinstance(item, dict) else None
    return str(index) if given is None else str(given)


def _run_batch(items: list[Any], one: Callable[[dict[str, Any], _Check, str], Any]) -> list[Any]:
    """Apply ``one`` to every item; if any item is invalid, reject the whole batch (the
    transaction rolls back whatever the valid items wrote)."""
    results, problems = [], []
    for index, item in enumerate(items):
        request_id = _request_id(item, index)
        check = _Check()
        if isinstance(item, dict):
            result = one(item, check, request_id)
        else:
            result = None
            check.fail("InvalidType", "", "This value should be of type object.")
        if check.errors:
            problems.append({"request_id": request_id, "errors": check.errors})
        else:
            results.append(result)
    if problems:
        validation = {"validation-errors": problems}
        raise _Rejected(_problem(400, "Request validation failed", **validation))
    return results


# ------------------------------------------------------------------------------------ storage


def _next_id(con: sqlite3.Connection) -> int:
    (value,) = con.execute(
        "update counters set value = value + 1 where name = 'id' returning value"
    ).fetchone()
    return value


def _objects(con: sqlite3.Connection, kind: str) -> list[dict[str, Any]]:
    rows = con.execute("select data from objects where kind = ? order by id", (kind,))
    return [json.loads(data) for (data,) in rows]


def _object(con: sqlite3.Connection, kind: str, object_id: Any) -> dict[str, Any] | None:
    if not _is_int(object_id):
        return None
    row = con.execute(
        "select data from objects where kind = ? and id = ?", (kind, object_id)
    ).fetchone()
    return json.loads(row[0]) if row else None


def _save_object(con: sqlite3.Connection, kind: str, obj: dict[str, Any]) -> None:
    con.execute("insert or replace into objects values (?, ?, ?)", (kind, obj["id"], _dump(obj)))


def _searchable(value: Any) -> str:
    """A custom field value as text, for exact-match filters and ``query``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return _dump(value)
    return str(value)


def _store(
    con: sqlite3.Connection, kind: str, entity: Entity, parent_kind: str | None = None
) -> None:
    """Write an entity (insert or replace) with its indexed columns and custom field values."""
    con.execute(
        "insert or replace into entities values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entity["id"],
            kind,
            entity.get("name") or "",
            entity.get("responsible_user_id"),
            entity.get("pipeline_id"),
            entity.get("status_id"),
            parent_kind or entity.get("entity_type"),
            entity.get("entity_id"),
            entity["created_at"],
            entity["updated_at"],
            _dump(entity),
        ),
    )
    con.execute("delete from field_values where entity_id = ?", (entity["id"],))
    con.executemany(
        "insert into field_values values (?, ?, ?, ?)",
        [
            (kind, entity["id"], custom["field_id"], _searchable(value["value"]))
            for custom in entity.get("custom_fields_values") or []
            for value in custom["values"]
        ],
    )


@dataclass
class _Query:
    """A select over one kind of entity: ``where`` clauses with their ``?`` arguments."""

    kind: str
    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, clause: str, *args: Any) -> _Query:
        self.clauses.append(clause)
        self.args.extend(args)
        return self

    def among(self, column: str, values: Sequence[Any]) -> _Query:
        return self.add(f"{column} in ({', '.join('?' * len(values))})", *values)

    def fetch(
        self, con: sqlite3.Connection, *, order: str = "id asc", limit: int = -1, offset: int = 0
    ) -> list[Entity]:
        where = "".join(f" and ({clause})" for clause in self.clauses)
        sql = f"select data from entities where kind = ?{where} order by {order} limit ? offset ?"
        rows = con.execute(sql, (self.kind, *self.args, limit, offset))
        return [json.loads(data) for (data,) in rows]


def _load_one(con: sqlite3.Connection, kind: str, entity_id: Any) -> Entity | None:
    if not _is_int(entity_id):
        return None
    found = _Query(kind).add("id = ?", entity_id).fetch(con)
    return found[0] if found else None


def _links_of(
    con: sqlite3.Connection, kind: str, ids: Sequence[int]
) -> dict[int, list[tuple[str, int, bool]]]:
    """Every link of the given entities: id → [(to_kind, to_id, is_main)]."""
    rows = con.execute(
        f"select entity_id, to_kind, to_id, is_main from links where kind = ? "
        f"and entity_id in ({', '.join('?' * len(ids))}) order by to_kind, to_id",
        (kind, *ids),
    )
    found: dict[int, list[tuple[str, int, bool]]] = defaultdict(list)
    for entity_id, to_kind, to_id, is_main in rows:
        found[entity_id].append((to_kind, to_id, bool(is_main)))
    return found


def _unlink(con: sqlite3.Connection, kind: str, entity_id: int, to_kind: str, to_id: int) -> None:
    con.execute(
        "delete from links where (kind, entity_id, to_kind, to_id) in (values (?, ?, ?, ?), "
        "(?, ?, ?, ?))",
        (kind, entity_id, to_kind, to_id, to_kind, to_id, kind, entity_id),
    )


def _unlink_all(con: sqlite3.Connection, kind: str, entity_id: int, to_kind: str) -> None:
    # Two statements, not one with OR: SQLite then plans each on its own index (links_reverse
    # for the reverse direction) instead of scanning every link of a kind.
    con.execute(
        "delete from links where kind = ? and entity_id = ? and to_kind = ?",
        (kind, entity_id, to_kind),
    )
    con.execute(
        "delete from links where to_kind = ? and to_id = ? and kind = ?",
        (kind, entity_id, to_kind),
    )


def _link(
    con: sqlite3.Connection, kind: str, entity_id: int, to_kind: str, to_id: int, is_main: bool
) -> None:
    """Link two entities (stored in both directions). One company per lead and per contact;
    a lead's first contact becomes its main one."""
    if to_kind == "companies":
        _unlink_all(con, kind, entity_id, "companies")
    if kind == "companies" and to_kind in ("leads", "contacts"):
        _unlink_all(con, to_kind, to_id, "companies")
    if (kind, to_kind) == ("leads", "contacts"):
        (others,) = con.execute(
            "select count(*) from links where kind = 'leads' and entity_id = ? "
            "and to_kind = 'contacts' and to_id != ? and is_main = 1",
            (entity_id, to_id),
        ).fetchone()
        is_main = is_main or others == 0
        if is_main:
            con.execute(
                "update links set is_main = 0 "
                "where kind = 'leads' and entity_id = ? and to_kind = 'contacts'",
                (entity_id,),
            )
            con.execute(
                "update links set is_main = 0 "
                "where to_kind = 'leads' and to_id = ? and kind = 'contacts'",
                (entity_id,),
            )
    con.executemany(
        "insert or replace into links values (?, ?, ?, ?, ?)",
        [
            (kind, entity_id, to_kind, to_id, int(is_main)),
            (to_kind, to_id, kind, entity_id, int(is_main)),
        ],
    )


# ------------------------------------------------------------------------------- the account


def _user(user_id: int, name: str, email: str | None, *, is_admin: bool) -> dict[str, Any]:
    access = {"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"}
    rights = {
        "leads": access,
        "contacts": access,
        "companies": access,
        "tasks": {"edit": "A", "delete": "A"},
        "mail_access": True,
        "catalog_access": True,
        "status_rights": [],
        "is_admin": is_admin,
        "is_free": False,
        "is_active": True,
        "group_id": None,
        "role_id": None,
    }
    return {"id": user_id, "name": name, "email": email, "lang": "ru", "rights": rights}


def _seed_users(con: sqlite3.Connection, settings: SandboxSettings, subdomain: str) -> int:
    """The account owner plus one user per active Pipedrive user, except every 4th (by id),
    which has no counterpart. Returns the owner's id."""
    admin_id = _next_id(con)
    _save_object(con, "user", _user(admin_id, "Admin", f"admin@{subdomain}.example", is_admin=True))
    active = sorted(
        (user for user in read_entity(settings.dataset_dir(), "users") if user.get("active_flag")),
        key=lambda user: user["id"],
    )
    for position, source in enumerate(active, start=1):
        if position % 4:
            user = _user(
                _next_id(con), source.get("name") or "", source.get("email"), is_admin=False
            )
            _save_object(con, "user", user)
    return admin_id


def _status(
    status_id: int,
    pipeline_id: int,
    name: str,
    sort: int,
    color: str,
    *,
    status_type: int = 0,
    editable: bool = True,
) -> dict[str, Any]:
    return {
        "id": status_id,
        "name": name,
        "sort": sort,
        "is_editable": editable,
        "pipeline_id": pipeline_id,
        "color": color,
        "type": status_type,
        "account_id": ACCOUNT_ID,
    }


def _new_pipeline(
    con: sqlite3.Connection,
    *,
    name: str,
    sort: int,
    is_main: bool,
    is_unsorted_on: bool,
    is_archive: bool,
    statuses: Sequence[tuple[str, int, str]],
    closed_names: dict[int, str],
) -> dict[str, Any]:
    """A pipeline with the unsorted status (when on), ``statuses`` and 142/143."""
    pipeline_id = _next_id(con)
    rows = []
    if is_unsorted_on:
        unsorted = _status(_next_id(con), pipeline_id, "Неразобранное", 10, "#c1c1c1",
                           status_type=1, editable=False)  # fmt: skip
        rows.append(unsorted)
    rows += [_status(_next_id(con), pipeline_id, *status) for status in statuses]
    rows += [
        _status(WON, pipeline_id, closed_names[WON], 10000, "#CCFF66", editable=False),
        _status(LOST, pipeline_id, closed_names[LOST], 11000, "#D5D8DB", editable=False),
    ]
    if is_main:
        for other in _objects(con, "pipeline"):
            _save_object(con, "pipeline", {**other, "is_main": False})
    pipeline = {
        "id": pipeline_id,
        "name": name,
        "sort": sort,
        "is_main": is_main,
        "is_unsorted_on": is_unsorted_on,
        "is_archive": is_archive,
        "account_id": ACCOUNT_ID,
        "_embedded": {"statuses": rows},
    }
    _save_object(con, "pipeline", pipeline)
    return pipeline


def _new_field(
    con: sqlite3.Connection,
    kind: str,
    *,
    name: str,
    field_type: str,
    code: str | None = None,
    sort: int = 500,
    enums: Sequence[tuple[str, int, str | None]] = (),
    is_api_only: bool = False,
    predefined: bool = False,
) -> dict[str, Any]:
    field_id = _next_id(con)
    custom = {
        "id": field_id,
        "name": name,
        "type": field_type,
        "account_id": ACCOUNT_ID,
        "code": code,
        "sort": sort,
        "is_api_only": is_api_only,
        "enums": [
            {"id": _next_id(con), "value": value, "sort": enum_sort, "code": enum_code}
            for value, enum_sort, enum_code in enums
        ]
        or None,
        "group_id": None,
        "required_statuses": [],
        "is_deletable": not predefined,
        "is_predefined": predefined,
        "entity_type": kind,
        "remind": None,
        "currency": None,
    }
    _save_object(con, f"field:{kind}", custom)
    return custom


def _seed(con: sqlite3.Connection, settings: SandboxSettings) -> None:
    """A new customer's account: users, one pipeline, PHONE/EMAIL fields, loss reasons."""
    now = int(time.time())
    subdomain = (urlsplit(AMOCRM_URL).hostname or "sandbox").split(".")[0]
    con.execute("insert into counters values ('id', ?)", (FIRST_ID - 1,))
    admin_id = _seed_users(con, settings, subdomain)
    account = {
        "id": ACCOUNT_ID,
        "name": subdomain.capitalize(),
        "subdomain": subdomain,
        "created_at": now,
        "created_by": admin_id,
        "updated_at": now,
        "updated_by": admin_id,
        "current_user_id": admin_id,
        "country": "RU",
        "customers_mode": "disabled",
        "is_unsorted_on": True,
        "is_loss_reason_enabled": True,
        "is_helpbot_enabled": False,
        "is_technical_account": False,
        "contact_name_display_order": 1,
        "currency": settings.currency,
        "currency_symbol": CURRENCY_SYMBOLS.get(settings.currency, settings.currency),
    }
    con.execute("insert into meta values ('account', ?)", (_dump(account),))
    _new_pipeline(con, name="Воронка", sort=1, is_main=True, is_unsorted_on=True,
                  is_archive=False, statuses=SEED_STATUSES, closed_names=CLOSED_NAMES)  # fmt: skip
    for kind in ("contacts", "companies"):
        for name, code, sort, enums in (("Телефон", "PHONE", 4, PHONE_ENUMS),
                                        ("Email", "EMAIL", 6, EMAIL_ENUMS)):  # fmt: skip
            choices = [(value, 2 * (n + 1), value) for n, value in enumerate(enums)]
            _new_field(con, kind, name=name, field_type="multitext", code=code, sort=sort,
                       enums=choices, predefined=True)  # fmt: skip
    for sort, name in enumerate(LOSS_REASONS, start=1):
        reason = {"id": _next_id(con), "name": name, "sort": sort, "created_at": now,
                  "updated_at": now}  # fmt: skip
        _save_object(con, "loss_reason", reason)


@dataclass(frozen=True)
class _Catalog:
    """The account's configuration as one request sees it (read inside its transaction)."""

    account: dict[str, Any]
    users: dict[int, dict[str, Any]]
    pipelines: list[dict[str, Any]]
    loss_reasons: dict[int, dict[str, Any]]
    fields: dict[str, list[dict[str, Any]]]

    @classmethod
    def load(cls, con: sqlite3.Connection) -> _Catalog:
        (account,) = con.execute("select value from meta where key = 'account'").fetchone()
        return cls(
            account=json.loads(account),
            users={user["id"]: user for user in _objects(con, "user")},
            pipelines=sorted(_objects(con, "pipeline"), key=lambda p: (p["sort"], p["id"])),
            loss_reasons={reason["id"]: reason for reason in _objects(con, "loss_reason")},
            fields={kind: _objects(con, f"field:{kind}") for kind in ENTITY_KINDS},
        )

    @property
    def admin_id(self) -> int:
        return self.account["current_user_id"]

    def pipeline(self, pipeline_id: Any) -> dict[str, Any] | None:
        return next((p for p in self.pipelines if p["id"] == pipeline_id), None)

    def main_pipeline(self) -> dict[str, Any]:
        return next((p for p in self.pipelines if p["is_main"]), self.pipelines[0])

    def pipeline_of_status(self, status_id: int, current: Any) -> dict[str, Any] | None:
        """142/143 exist in every pipeline: they stay in the lead's (or the main) pipeline."""
        if status_id in (WON, LOST):
            return self.pipeline(current) or self.main_pipeline()
        return next((p for p in self.pipelines if _has_status(p, status_id)), None)

    def field(self, kind: str, *, field_id: Any = None, code: Any = None) -> dict | None:
        for custom in self.fields[kind]:
            if field_id is not None and custom["id"] == field_id:
                return custom
            if isinstance(code, str) and (custom["code"] or "").upper() == code.upper():
                return custom
        return None


def _has_status(pipeline: dict[str, Any], status_id: int) -> bool:
    return any(status["id"] == status_id for status in pipeline["_embedded"]["statuses"])


def _first_status(pipeline: dict[str, Any]) -> int:
    """Where a lead lands by default: the first working (not unsorted, not closed) status."""
    statuses = sorted(pipeline["_embedded"]["statuses"], key=lambda s: s["sort"])
    working = [s for s in statuses if s["type"] == 0 and s["id"] not in (WON, LOST)]
    return (working or statuses)[0]["id"]


# ---------------------------------------------------------------------------------- a request


@dataclass
class _Call:
    """One request being served: its connection (inside its transaction), time and account."""

    con: sqlite3.Connection
    request: httpx.Request
    now: int = field(default_factory=lambda: int(time.time()))

    @property
    def params(self) -> httpx.QueryParams:
        return self.request.url.params

    def href(self, path: str) -> dict[str, str]:
        url = self.request.url
        return {"href": f"{url.scheme}://{url.netloc.decode('ascii')}{path}"}

    @cached_property
    def catalog(self) -> _Catalog:
        return _Catalog.load(self.con)

    def body(self) -> Any:
        try:
            return read_json(self.request)
        except ValueError:
            raise _bad_request("Request body is not valid JSON") from None

    def batch(self, maximum: int) -> list[Any]:
        """The body as a batch of at most ``maximum`` items (else 400, see module docstring)."""
        items = self.body()
        if not isinstance(items, list):
            raise _bad_request("Request body must be a JSON array")
        if not items:
            raise _bad_request("Request body is an empty array")
        if len(items) > maximum:
            raise _bad_request(
                f"Too many entities in one request: {len(items)} (at most {maximum})"
            )
        return items


def _to_int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise _bad_request(f"{name} must be an integer") from None


def _int_param(params: httpx.QueryParams, name: str, default: int) -> int:
    raw = params.get(name)
    return default if raw is None else _to_int(raw, name)


def _paging(params: httpx.QueryParams, max_limit: int = MAX_LIMIT) -> tuple[int, int]:
    page = _int_param(params, "page", 1)
    limit = _int_param(params, "limit", DEFAULT_LIMIT)
    if page < 1 or limit < 1:
        raise _bad_request("page and limit must be positive")
    return page, min(limit, max_limit)


def _page_links(call: _Call, page: int, limit: int, more: bool) -> dict[str, Any]:
    url = call.request.url.copy_set_param("page", page).copy_set_param("limit", limit)
    links: dict[str, Any] = {"self": {"href": str(url)}}
    if more:
        links["next"] = {"href": str(url.copy_set_param("page", page + 1))}
    return links


def _paged_list(
    call: _Call, key: str, items: list[Any], *, max_limit: int = MAX_LIMIT
) -> httpx.Response:
    """A page of an in-memory list (users, fields, tags, loss reasons), with totals."""
    page, limit = _paging(call.params, max_limit)
    chunk = items[(page - 1) * limit : page * limit]
    if not chunk:
        return _no_content()
    return _hal(
        200,
        {
            "_total_items": len(items),
            "_page": page,
            "_page_count": math.ceil(len(items) / limit),
            "_links": _page_links(call, page, limit, page * limit < len(items)),
            "_embedded": {key: chunk},
        },
    )


def _with(params: httpx.QueryParams) -> set[str]:
    return {part.strip() for part in params.get("with", "").split(",") if part.strip()}


@dataclass
class _Filters:
    """``filter[...]`` query parameters, grouped by what they filter."""

    values: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ranges: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    fields: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def parse(cls, params: httpx.QueryParams) -> _Filters:
        found = cls()
        for key, value in params.multi_items():
            parts = re.findall(r"\[([^\]]*)\]", key) if key.startswith("filter[") else []
            if not parts:
                continue
            name, *rest = parts
            if name == "custom_fields_values" and rest:
                found.fields[rest[0]].append(value)
            elif name == "statuses" and len(rest) == 2:
                found.statuses[rest[0]][rest[1]] = value
            elif rest and rest[0] in ("from", "to"):
                found.ranges[name][rest[0]] = value
            else:
                found.values[name].append(value)
        return found

    def ints(self, name: str) -> list[int]:
        return [_to_int(value, f"filter[{name}]") for value in self.values.get(name, [])]


def _order(params: httpx.QueryParams) -> str:
    for column in ("id", "created_at", "updated_at"):
        direction = params.get(f"order[{column}]")
        if direction is None:
            continue
        if direction.lower() not in ("asc", "desc"):
            raise _bad_request(f"order[{column}] must be asc or desc")
        return f"{column} {direction.lower()}, id {direction.lower()}"
    return "id asc"


def _common_filters(query: _Query, found: _Filters) -> _Query:
    if ids := found.ints("id"):
        query.among("id", ids)
    if users := found.ints("responsible_user_id"):
        query.among("responsible_user_id", users)
    for column in ("created_at", "updated_at"):
        bounds = found.ranges.get(column, {})
        for bound, operator in (("from", ">="), ("to", "<=")):
            if bound in bounds:
                query.add(f"{column} {operator} ?", _to_int(bounds[bound], f"filter[{column}]"))
    return query


def _entity_query(call: _Call, kind: str, found: _Filters) -> _Query:
    query = _common_filters(_Query(kind), found)
    if names := found.values.get("name"):
        query.among("name", names)
    if pipelines := found.ints("pipeline_id"):
        query.among("pipeline_id", pipelines)
    statuses = [pair for pair in found.statuses.values() if "status_id" in pair]
    if statuses:
        query.add(
            " or ".join("(pipeline_id = ? and status_id = ?)" for _ in statuses),
            *[
                _to_int(pair.get(name, "0"), "filter[statuses]")
                for pair in statuses
                for name in ("pipeline_id", "status_id")
            ],
        )
    for field_id, values in found.fields.items():
        query.add(
            f"id in (select entity_id from field_values where kind = ? and field_id = ? "
            f"and value in ({', '.join('?' * len(values))}))",
            kind,
            int(field_id) if field_id.isdigit() else -1,
            *values,
        )
    if text := call.params.get("query"):
        query.add(
            "contains_ci(name, ?) or id in (select entity_id from field_values where kind = ? "
            "and contains_ci(value, ?))",
            text,
            kind,
            text,
        )
    return query


def _task_query(found: _Filters) -> _Query:
    query = _common_filters(_Query("tasks"), found)
    if kinds := found.values.get("entity_type"):
        query.among("parent_kind", kinds)
    if targets := found.ints("entity_id"):
        query.among("parent_id", targets)
    if task_types := found.ints("task_type"):
        query.among("json_extract(data, '$.task_type_id')", task_types)
    if done := found.values.get("is_completed"):
        flags = [int(value.lower() in ("1", "true")) for value in done]
        query.among("json_extract(data, '$.is_completed')", flags)
    return query


# --------------------------------------------------------------------------------- rendering


def _entity_path(kind: str, entity_id: int) -> str:
    return f"/api/v4/{kind}/{entity_id}"


def _render(
    call: _Call,
    kind: str,
    entity: Entity,
    links: list[tuple[str, int, bool]],
    embed: set[str],
) -> Entity:
    out = {**entity, "_links": {"self": call.href(_entity_path(kind, entity["id"]))}}
    if kind not in ENTITY_KINDS:
        return out
    embedded = dict(entity["_embedded"])
    shown = [*ALWAYS_EMBEDDED[kind], *(k for k in EMBEDDED_WITH[kind] if k in embed)]
    for to_kind in shown:
        refs = []
        for linked_kind, to_id, is_main in links:
            if linked_kind == to_kind:
                ref: dict[str, Any] = {"id": to_id}
                if (kind, to_kind) == ("leads", "contacts"):
                    ref["is_main"] = is_main
                refs.append({**ref, "_links": {"self": call.href(_entity_path(to_kind, to_id))}})
        embedded[to_kind] = refs
    out["_embedded"] = embedded
    return out


def _render_many(call: _Call, kind: str, entities: list[Entity]) -> list[Entity]:
    links = _links_of(call.con, kind, [entity["id"] for entity in entities])
    embed = _with(call.params)
    return [_render(call, kind, entity, links.get(entity["id"], []), embed) for entity in entities]


def _render_note(call: _Call, parent_kind: str, note: Entity) -> Entity:
    return _with_link(call, note, f"/api/v4/{parent_kind}/notes/{note['id']}")


def _render_pipeline(call: _Call, pipeline: dict[str, Any]) -> dict[str, Any]:
    path = f"/api/v4/leads/pipelines/{pipeline['id']}"
    statuses = sorted(pipeline["_embedded"]["statuses"], key=lambda s: s["sort"])
    return {
        **pipeline,
        "_links": {"self": call.href(path)},
        "_embedded": {"statuses": [_render_status(call, status) for status in statuses]},
    }


def _render_status(call: _Call, status: dict[str, Any]) -> dict[str, Any]:
    path = f"/api/v4/leads/pipelines/{status['pipeline_id']}/statuses/{status['id']}"
    return _with_link(call, status, path)


def _with_link(call: _Call, obj: dict[str, Any], path: str) -> dict[str, Any]:
    return {**obj, "_links": {"self": call.href(path)}}


def _link_view(kind: str, entity_id: int, to_kind: str, to_id: int, is_main: bool) -> dict:
    lead_contact = {kind, to_kind} == {"leads", "contacts"}
    return {
        "entity_id": entity_id,
        "entity_type": kind,
        "to_entity_id": to_id,
        "to_entity_type": to_kind,
        "metadata": {"main_contact": is_main} if lead_contact else None,
    }


# ---------------------------------------------------------------------- custom field values


def _short_text(value: Any, check: _Check) -> str | None:
    return check.text(value, "value", TEXT_VALUE_MAX)


def _long_text(value: Any, check: _Check) -> str | None:
    return check.text(value, "value", LONG_TEXT_MAX)


def _number(value: Any, check: _Check) -> int | float | None:
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
        value = int(number) if number is not None and number.is_integer() else number
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    check.fail("InvalidType", "value", "This value should be of type numeric.")
    return None


def _flag(value: Any, check: _Check) -> bool | None:
    return check.boolean(value, "value")


def _timestamp(value: Any, check: _Check) -> int | None:
    """Unix seconds, or an RFC 3339 string (what the official PHP library sends)."""
    if _is_int(value):
        return value
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value).timestamp())
        except ValueError:
            pass
    check.fail("InvalidType", "value", "This value should be a Unix timestamp or RFC 3339 date.")
    return None


VALUE_CONVERTERS: dict[str, Callable[[Any, _Check], Any]] = {
    "text": _short_text,
    "url": _short_text,
    "textarea": _long_text,
    "streetaddress": _long_text,
    "numeric": _number,
    "monetary": _number,
    "checkbox": _flag,
    "date": _timestamp,
    "date_time": _timestamp,
    "birthday": _timestamp,
}


def _enum_value(custom: dict[str, Any], raw: dict[str, Any], check: _Check) -> dict | None:
    enums = custom["enums"] or []
    if raw.get("enum_id") is not None:
        path, found = "enum_id", [e for e in enums if e["id"] == raw["enum_id"]]
    elif raw.get("enum_code") is not None:
        code = str(raw["enum_code"]).upper()
        path, found = "enum_code", [e for e in enums if (e["code"] or "").upper() == code]
    elif custom["type"] == "multitext":
        path, found = "enum_id", enums[:1]
    else:
        path, found = "value", [e for e in enums if e["value"] == raw.get("value")]
    if not found:
        check.choice(False, path)
        return None
    enum = found[0]
    if custom["type"] != "multitext":
        return {"value": enum["value"], "enum_id": enum["id"], "enum_code": enum["code"]}
    text = _short_text(raw.get("value"), check)
    if text == "":
        check.fail("NotBlank", "value", "This value should not be blank.")
    if not text:
        return None
    return {"value": text, "enum_id": enum["id"], "enum_code": enum["code"], "enum": enum["code"]}


def _field_value(custom: dict[str, Any], raw: Any, check: _Check) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        check.fail("InvalidType", "", "This value should be of type object.")
        return None
    if custom["type"] in ENUM_TYPES:
        return _enum_value(custom, raw, check)
    convert = VALUE_CONVERTERS.get(custom["type"])
    if convert is None:  # types we keep as sent (addresses, legal entities, tracking data…)
        return {"value": raw.get("value")}
    value = convert(raw.get("value"), check)
    return None if value is None else {"value": value}


def _field_of(call: _Call, kind: str, entry: dict[str, Any], check: _Check) -> dict | None:
    if entry.get("field_id") is not None:
        found = call.catalog.field(kind, field_id=entry["field_id"])
        check.choice(found is not None, "field_id")
    elif entry.get("field_code") is not None:
        found = call.catalog.field(kind, code=entry["field_code"])
        check.choice(found is not None, "field_code")
    else:
        found = None
        check.fail("NotBlank", "field_id", "field_id or field_code is required.")
    return found


def _apply_custom_fields(
    call: _Call, kind: str, item: dict[str, Any], check: _Check, entity: Entity
) -> None:
    """Set the given fields (others keep their values); ``values`` null or [] clears one."""
    raw = item.get("custom_fields_values")
    if raw is None:
        return
    if not isinstance(raw, list):
        check.fail("InvalidType", "custom_fields_values", "This value should be of type array.")
        return
    current = {custom["field_id"]: custom for custom in entity["custom_fields_values"] or []}
    for n, entry in enumerate(raw):
        at = check.at(f"custom_fields_values.{n}.")
        if not isinstance(entry, dict):
            check.fail(
                "InvalidType", f"custom_fields_values.{n}", "This value should be an object."
            )
            continue
        custom = _field_of(call, kind, entry, at)
        if custom is None:
            continue
        values = entry.get("values")
        if not values:
            current.pop(custom["id"], None)
            continue
        if not isinstance(values, list):
            at.fail("InvalidType", "values", "This value should be of type array.")
            continue
        if custom["type"] in SINGLE_VALUE_TYPES:
            at.too_many(len(values), 1, "values")
        converted = [
            _field_value(custom, value, at.at(f"values.{m}.")) for m, value in enumerate(values)
        ]
        current[custom["id"]] = {
            "field_id": custom["id"],
            "field_name": custom["name"],
            "field_code": custom["code"],
            "field_type": custom["type"],
            "values": [value for value in converted if value is not None],
        }
    entity["custom_fields_values"] = list(current.values()) or None


# ------------------------------------------------------------------------------ entity bodies


def _embedded_of(item: dict[str, Any]) -> dict[str, Any]:
    embedded = item.get("_embedded")
    return embedded if isinstance(embedded, dict) else {}


def _tag_named(con: sqlite3.Connection, kind: str, name: str) -> dict[str, Any] | None:
    wanted = name.casefold()
    return next((t for t in _objects(con, f"tag:{kind}") if t["name"].casefold() == wanted), None)


def _new_tag(con: sqlite3.Connection, kind: str, name: str, color: str | None) -> dict[str, Any]:
    tag = {"id": _next_id(con), "name": name, "color": color}
    _save_object(con, f"tag:{kind}", tag)
    return tag


def _resolve_tags(call: _Call, kind: str, raw: Any, check: _Check, path: str) -> list[dict]:
    """``[{id}|{name}]`` → tags; unknown ids are invalid, unknown names are created."""
    if not isinstance(raw, list):
        check.fail("InvalidType", path, "This value should be of type array.")
        return []
    tags = []
    for n, given in enumerate(raw):
        given = given if isinstance(given, dict) else {}
        at = check.at(f"{path}.{n}.")
        if given.get("id") is not None:
            tag = _object(call.con, f"tag:{kind}", given["id"])
            at.choice(tag is not None, "id")
        elif name := at.required_text(given, "name", NAME_MAX):
            tag = _tag_named(call.con, kind, name) or _new_tag(
                call.con, kind, name, given.get("color")
            )
        else:
            tag = None
        if tag is not None:
            tags.append({"id": tag["id"], "name": tag["name"], "color": tag["color"]})
    return tags


def _apply_tags(
    call: _Call, kind: str, item: dict[str, Any], check: _Check, entity: Entity
) -> None:
    if item.get("_embedded") is not None and not isinstance(item["_embedded"], dict):
        check.fail("InvalidType", "_embedded", "This value should be of type object.")
    embedded = _embedded_of(item)
    tags = entity["_embedded"]["tags"]
    if "tags" in embedded:
        tags = _resolve_tags(call, kind, embedded["tags"], check.at("_embedded."), "tags")
    if "tags_to_add" in item:
        tags = tags + _resolve_tags(call, kind, item["tags_to_add"], check, "tags_to_add")
    if isinstance(item.get("tags_to_delete"), list):
        dropped = [tag for tag in item["tags_to_delete"] if isinstance(tag, dict)]
        ids = {tag.get("id") for tag in dropped}
        names = {str(tag.get("name", "")).casefold() for tag in dropped}
        tags = [tag for tag in tags if tag["id"] not in ids and tag["name"].casefold() not in names]
    unique = {tag["id"]: tag for tag in tags}
    entity["_embedded"] = {**entity["_embedded"], "tags": list(unique.values())}


def _apply_people(call: _Call, item: dict[str, Any], check: _Check, entity: Entity) -> None:
    """Owner, authors (0 = robot) and timestamps (any integer: backdating is allowed)."""
    users = call.catalog.users
    if item.get("responsible_user_id") is not None:
        user = check.integer(item["responsible_user_id"], "responsible_user_id")
        check.member(user, users, "responsible_user_id")
        entity["responsible_user_id"] = user
    for key in ("created_by", "updated_by"):
        if item.get(key) is not None:
            author = check.integer(item[key], key)
            check.member(author, {0, *users}, key)
            entity[key] = author
    for key in ("created_at", "updated_at"):
        if item.get(key) is not None:
            entity[key] = check.integer(item[key], key)


def _apply_common(
    call: _Call, kind: str, item: dict[str, Any], check: _Check, entity: Entity
) -> None:
    _apply_people(call, item, check, entity)
    _apply_custom_fields(call, kind, item, check, entity)
    _apply_tags(call, kind, item, check, entity)


def _apply_status(
    call: _Call, item: dict[str, Any], check: _Check, entity: Entity, creating: bool
) -> None:
    """Pipeline and status: a status must belong to the pipeline; by default a lead lands in
    the first working status of the given (else the main) pipeline."""
    catalog = call.catalog
    pipeline = None
    if item.get("pipeline_id") is not None:
        pipeline_id = check.integer(item["pipeline_id"], "pipeline_id")
        pipeline = catalog.pipeline(pipeline_id)
        if pipeline is None:
            check.choice(pipeline_id is None, "pipeline_id")  # a bad type is reported already
            return
    if item.get("status_id") is not None:
        status_id = check.integer(item["status_id"], "status_id")
        if status_id is None:
            return
        pipeline = pipeline or catalog.pipeline_of_status(status_id, entity["pipeline_id"])
        if pipeline is None or not _has_status(pipeline, status_id):
            check.choice(False, "status_id")
            return
    elif pipeline is not None and (creating or pipeline["id"] != entity["pipeline_id"]):
        status_id = _first_status(pipeline)
    elif creating:
        pipeline = catalog.main_pipeline()
        status_id = _first_status(pipeline)
    else:
        return
    entity["pipeline_id"], entity["status_id"] = pipeline["id"], status_id
    entity["closed_at"] = (entity["closed_at"] or call.now) if status_id in (WON, LOST) else None


def _build_lead(
    call: _Call, item: dict[str, Any], check: _Check, entity: Entity, creating: bool
) -> None:
    if "name" in item:
        entity["name"] = check.text(item["name"] or "", "name", NAME_MAX)
    if item.get("price") is not None:
        price = check.integer(item["price"], "price")
        if price is not None and not 0 <= price <= PRICE_MAX:
            check.fail("InvalidValue", "price", f"This value should be between 0 and {PRICE_MAX}.")
        entity["price"] = price
    _apply_status(call, item, check, entity, creating)
    if "loss_reason_id" in item:
        reason = item["loss_reason_id"]
        if reason is not None:
            reason = check.integer(reason, "loss_reason_id")
            check.member(reason, call.catalog.loss_reasons, "loss_reason_id")
        entity["loss_reason_id"] = reason
    if "closed_at" in item:
        closed = item["closed_at"]
        entity["closed_at"] = None if closed is None else check.integer(closed, "closed_at")
    _apply_common(call, "leads", item, check, entity)


def _build_contact(
    call: _Call, item: dict[str, Any], check: _Check, entity: Entity, creating: bool
) -> None:
    for key in ("name", "first_name", "last_name"):
        if key in item:
            entity[key] = check.text(item[key] or "", key, NAME_MAX)
    if creating and "name" not in item:
        entity["name"] = " ".join(p for p in (entity["first_name"], entity["last_name"]) if p)
    _apply_common(call, "contacts", item, check, entity)


def _build_company(
    call: _Call, item: dict[str, Any], check: _Check, entity: Entity, creating: bool
) -> None:
    if "name" in item:
        entity["name"] = check.text(item["name"] or "", "name", NAME_MAX)
    _apply_common(call, "companies", item, check, entity)


def _apply_target(call: _Call, item: dict[str, Any], check: _Check, entity: Entity) -> None:
    """A task's entity: ``entity_type`` and ``entity_id`` together, the entity must exist."""
    if item.get("entity_type") is None and item.get("entity_id") is None:
        return
    kind = item.get("entity_type")
    check.choice(kind in ENTITY_KINDS, "entity_type")
    if check.required(item, "entity_id"):
        target = check.integer(item["entity_id"], "entity_id")
        if target is not None and kind in ENTITY_KINDS:
            check.choice(_load_one(call.con, kind, target) is not None, "entity_id")
        entity["entity_type"], entity["entity_id"] = kind, target


def _build_task(
    call: _Call, item: dict[str, Any], check: _Check, entity: Entity, creating: bool
) -> None:
    if creating:
        entity["text"] = check.required_text(item, "text", LONG_TEXT_MAX)
        entity["complete_till"] = check.required_integer(item, "complete_till")
    elif item.get("text") is not None:
        entity["text"] = check.text(item["text"], "text", LONG_TEXT_MAX)
    for key in ("complete_till", "duration"):
        if item.get(key) is not None:
            entity[key] = check.integer(item[key], key)
    if item.get("task_type_id") is not None:
        task_type = check.integer(item["task_type_id"], "task_type_id")
        check.member(task_type, [t["id"] for t in TASK_TYPES], "task_type_id")
        entity["task_type_id"] = task_type
    if item.get("is_completed") is not None:
        entity["is_completed"] = check.boolean(item["is_completed"], "is_completed")
    if item.get("result") is not None:
        result = item["result"] if isinstance(item["result"], dict) else {}
        text = check.at("result.").required_text(result, "text", LONG_TEXT_MAX)
        entity["result"] = {"text": text}
    _apply_target(call, item, check, entity)
    _apply_people(call, item, check, entity)


BUILDERS: dict[str, Callable[[_Call, dict[str, Any], _Check, Entity, bool], None]] = {
    "leads": _build_lead,
    "contacts": _build_contact,
    "companies": _build_company,
    "tasks": _build_task,
}


def _blank(call: _Call, kind: str) -> Entity:
    """A new entity of ``kind`` with the defaults the API fills in, under a fresh id."""
    admin, now = call.catalog.admin_id, call.now
    owned = {
        "responsible_user_id": admin,
        "group_id": 0,
        "created_by": admin,
        "updated_by": admin,
        "created_at": now,
        "updated_at": now,
    }
    if kind == "leads":
        fields = {"name": "", "price": 0, **owned, "status_id": None, "pipeline_id": None,
                  "loss_reason_id": None, "closed_at": None, "closest_task_at": None,
                  "is_deleted": False, "custom_fields_values": None, "score": None,
                  "labor_cost": None}  # fmt: skip
    elif kind == "contacts":
        fields = {"name": "", "first_name": "", "last_name": "", **owned,
                  "closest_task_at": None, "is_deleted": False, "is_unsorted": False,
                  "custom_fields_values": None}  # fmt: skip
    elif kind == "companies":
        fields = {"name": "", **owned, "closest_task_at": None, "is_deleted": False,
                  "custom_fields_values": None}  # fmt: skip
    elif kind == "tasks":
        fields = {**owned, "entity_id": None, "entity_type": None, "duration": 0,
                  "is_completed": False, "task_type_id": 1, "text": "", "result": [],
                  "complete_till": None}  # fmt: skip
    else:
        fields = {"entity_id": None, **owned, "note_type": None, "params": {}}
    entity = {"id": _next_id(call.con), **fields, "account_id": ACCOUNT_ID}
    if kind in ENTITY_KINDS:
        entity["_embedded"] = {"tags": []}
    return entity


def _new_entity(call: _Call, kind: str, item: dict[str, Any], check: _Check) -> Entity:
    entity = _blank(call, kind)
    BUILDERS[kind](call, item, check, entity, True)
    return entity


def _lead_links(call: _Call, item: dict[str, Any], check: _Check) -> list[tuple[str, int, bool]]:
    """``_embedded.contacts[{id, is_main}]`` and ``_embedded.companies[{id}]`` of a new lead."""
    embedded = _embedded_of(item)
    links = []
    for to_kind in ("contacts", "companies"):
        refs = embedded.get(to_kind) or []
        path = f"_embedded.{to_kind}"
        if not isinstance(refs, list):
            check.fail("InvalidType", path, "This value should be of type array.")
            continue
        if to_kind == "companies" and check.too_many(len(refs), 1, path):
            continue
        for n, ref in enumerate(refs):
            ref = ref if isinstance(ref, dict) else {}
            exists = _load_one(call.con, to_kind, ref.get("id")) is not None
            check.choice(exists, f"{path}.{n}.id")
            if exists:
                links.append((to_kind, ref["id"], ref.get("is_main") is True))
    return links


# --------------------------------------------------------------------------------- endpoints


def get_account(call: _Call) -> httpx.Response:
    account = {**call.catalog.account, "_links": {"self": call.href("/api/v4/account")}}
    embedded = {}
    for name in sorted(_with(call.params) & ACCOUNT_WITH.keys()):
        where, value = ACCOUNT_WITH[name]
        if where == "top":
            account[name] = value
        else:
            embedded[name] = value
    if embedded:
        account["_embedded"] = embedded
    return _hal(200, account)


def _render_user(call: _Call, user: dict[str, Any]) -> dict[str, Any]:
    return _with_link(call, user, f"/api/v4/users/{user['id']}")


def list_users(call: _Call) -> httpx.Response:
    users = [_render_user(call, user) for user in call.catalog.users.values()]
    return _paged_list(call, "users", users)


def get_user(call: _Call, user_id: int) -> httpx.Response:
    user = call.catalog.users.get(user_id)
    return _hal(200, _render_user(call, user)) if user else _no_content()


def list_pipelines(call: _Call) -> httpx.Response:
    pipelines = [_render_pipeline(call, pipeline) for pipeline in call.catalog.pipelines]
    return _hal(
        200,
        {
            "_total_items": len(pipelines),
            "_links": {"self": call.href("/api/v4/leads/pipelines")},
            "_embedded": {"pipelines": pipelines},
        },
    )


def get_pipeline(call: _Call, pipeline_id: int) -> httpx.Response:
    pipeline = call.catalog.pipeline(pipeline_id)
    return _hal(200, _render_pipeline(call, pipeline)) if pipeline else _no_content()


def _status_rows(item: dict[str, Any], check: _Check) -> tuple[list, dict[int, str]]:
    """Statuses given with a new pipeline: ``[(name, sort, color)]`` and names for 142/143."""
    raw = _embedded_of(item).get("statuses") or []
    rows, closed = [], dict(CLOSED_NAMES)
    for n, status in enumerate(raw if isinstance(raw, list) else []):
        at = check.at(f"_embedded.statuses.{n}.")
        status = status if isinstance(status, dict) else {}
        name = at.required_text(status, "name", NAME_MAX)
        if status.get("id") in (WON, LOST):
            closed[status["id"]] = name
        else:
            rows.append(
                (name, at.required_integer(status, "sort"), status.get("color") or "#99ccff")
            )
    check.too_many(len(rows) + 3, MAX_STATUSES, "_embedded.statuses")
    return rows, closed


def create_pipelines(call: _Call) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> dict[str, Any] | None:
        name = check.required_text(item, "name", NAME_MAX)
        sort = check.required_integer(item, "sort")
        for key in ("is_main", "is_unsorted_on"):
            check.required(item, key)
        flags = {
            key: check.boolean(item.get(key) or False, key)
            for key in ("is_main", "is_unsorted_on", "is_archive")
        }
        statuses, closed = _status_rows(item, check)
        check.too_many(len(_objects(call.con, "pipeline")) + 1, MAX_PIPELINES, "")
        if check.errors:
            return None
        pipeline = _new_pipeline(call.con, name=name, sort=sort, statuses=statuses,
                                 closed_names=closed, **flags)  # fmt: skip
        return {**_render_pipeline(call, pipeline), "request_id": request_id}

    created = _run_batch(call.batch(MAX_PIPELINES), one)
    return _hal(200, {"_total_items": len(created), "_embedded": {"pipelines": created}})


def list_statuses(call: _Call, pipeline_id: int) -> httpx.Response:
    pipeline = call.catalog.pipeline(pipeline_id)
    if pipeline is None:
        return _no_content()
    statuses = _render_pipeline(call, pipeline)["_embedded"]["statuses"]
    return _hal(
        200,
        {
            "_total_items": len(statuses),
            "_links": {"self": call.href(f"/api/v4/leads/pipelines/{pipeline_id}/statuses")},
            "_embedded": {"statuses": statuses},
        },
    )


def get_status(call: _Call, pipeline_id: int, status_id: int) -> httpx.Response:
    pipeline = call.catalog.pipeline(pipeline_id)
    statuses = pipeline["_embedded"]["statuses"] if pipeline else []
    found = [status for status in statuses if status["id"] == status_id]
    return _hal(200, _render_status(call, found[0])) if found else _no_content()


def create_statuses(call: _Call, pipeline_id: int) -> httpx.Response:
    if _object(call.con, "pipeline", pipeline_id) is None:
        raise _Rejected(_problem(404, f"Pipeline {pipeline_id} not found"))

    def one(item: dict[str, Any], check: _Check, request_id: str) -> dict[str, Any] | None:
        pipeline = _object(call.con, "pipeline", pipeline_id)
        statuses = pipeline["_embedded"]["statuses"]
        name = check.required_text(item, "name", NAME_MAX)
        sort = check.required_integer(item, "sort")
        check.too_many(len(statuses) + 1, MAX_STATUSES, "")
        if check.errors:
            return None
        status = _status(
            _next_id(call.con), pipeline_id, name, sort, item.get("color") or "#99ccff"
        )
        statuses.append(status)
        _save_object(call.con, "pipeline", pipeline)
        return {**_render_status(call, status), "request_id": request_id}

    created = _run_batch(call.batch(MAX_STATUSES), one)
    return _hal(200, {"_total_items": len(created), "_embedded": {"statuses": created}})


def _render_reason(call: _Call, reason: dict[str, Any]) -> dict[str, Any]:
    return _with_link(call, reason, f"/api/v4/leads/loss_reasons/{reason['id']}")


def list_loss_reasons(call: _Call) -> httpx.Response:
    reasons = [_render_reason(call, reason) for reason in call.catalog.loss_reasons.values()]
    return _paged_list(call, "loss_reasons", reasons)


def get_loss_reason(call: _Call, reason_id: int) -> httpx.Response:
    reason = call.catalog.loss_reasons.get(reason_id)
    return _hal(200, _render_reason(call, reason)) if reason else _no_content()


def create_loss_reasons(call: _Call) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> dict[str, Any] | None:
        name = check.required_text(item, "name", NAME_MAX)
        sort = check.integer(item.get("sort", 0), "sort")
        if check.errors:
            return None
        reason = {"id": _next_id(call.con), "name": name, "sort": sort,
                  "created_at": call.now, "updated_at": call.now}  # fmt: skip
        _save_object(call.con, "loss_reason", reason)
        return {**_render_reason(call, reason), "request_id": request_id}

    created = _run_batch(call.batch(MAX_WRITE), one)
    return _hal(200, {"_embedded": {"loss_reasons": created}})


def _render_field(call: _Call, kind: str, custom: dict[str, Any]) -> dict[str, Any]:
    return _with_link(call, custom, f"/api/v4/{kind}/custom_fields/{custom['id']}")


def list_fields(call: _Call, kind: str) -> httpx.Response:
    fields = [_render_field(call, kind, custom) for custom in call.catalog.fields[kind]]
    return _paged_list(call, "custom_fields", fields, max_limit=MAX_FIELDS_PAGE)


def get_field(call: _Call, kind: str, field_id: int) -> httpx.Response:
    custom = call.catalog.field(kind, field_id=field_id)
    return _hal(200, _render_field(call, kind, custom)) if custom else _no_content()


def _enum_rows(item: dict[str, Any], check: _Check) -> list[tuple[str, int, str | None]]:
    raw = item.get("enums")
    if item.get("type") not in ENUM_TYPES:
        return []
    if not isinstance(raw, list) or not raw:
        check.fail("NotBlank", "enums", "This field type needs a non-empty list of enums.")
        return []
    rows = []
    for n, enum in enumerate(raw):
        at = check.at(f"enums.{n}.")
        enum = enum if isinstance(enum, dict) else {}
        code = enum.get("code")
        rows.append((at.required_text(enum, "value", NAME_MAX),
                     at.integer(enum.get("sort", n + 1), "sort"),
                     at.text(code, "code", NAME_MAX) if code is not None else None))  # fmt: skip
    return rows


def create_fields(call: _Call, kind: str) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> dict[str, Any] | None:
        name = check.required_text(item, "name", NAME_MAX)
        if check.required(item, "type"):
            check.choice(item["type"] in FIELD_TYPES[kind], "type")
        code = item.get("code")
        if code is not None and check.text(code, "code", NAME_MAX) is not None:
            taken = any(
                (f["code"] or "").upper() == code.upper()
                for f in _objects(call.con, f"field:{kind}")
            )
            if taken:
                check.fail("AlreadyExists", "code", "A field with this code already exists.")
        sort = check.integer(item.get("sort", 500), "sort")
        is_api_only = check.boolean(item.get("is_api_only", False), "is_api_only")
        enums = _enum_rows(item, check)
        if check.errors:
            return None
        custom = _new_field(call.con, kind, name=name, field_type=item["type"], code=code,
                            sort=sort, enums=enums, is_api_only=is_api_only)  # fmt: skip
        return {**_render_field(call, kind, custom), "request_id": request_id}

    created = _run_batch(call.batch(MAX_WRITE), one)
    return _hal(201, {"_total_items": len(created), "_embedded": {"custom_fields": created}})


def list_tags(call: _Call, kind: str) -> httpx.Response:
    found = _Filters.parse(call.params)
    tags = _objects(call.con, f"tag:{kind}")
    if ids := found.ints("id"):
        tags = [tag for tag in tags if tag["id"] in ids]
    if names := {name.casefold() for name in found.values.get("name", [])}:
        tags = [tag for tag in tags if tag["name"].casefold() in names]
    if text := call.params.get("query"):
        tags = [tag for tag in tags if text.casefold() in tag["name"].casefold()]
    return _paged_list(call, "tags", tags)


def create_tags(call: _Call, kind: str) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> dict[str, Any] | None:
        name = check.required_text(item, "name", NAME_MAX)
        if name and _tag_named(call.con, kind, name) is not None:
            check.fail("AlreadyExists", "name", "A tag with this name already exists.")
        if check.errors:
            return None
        return {**_new_tag(call.con, kind, name, item.get("color")), "request_id": request_id}

    created = _run_batch(call.batch(MAX_WRITE), one)
    return _hal(200, {"_embedded": {"tags": created}})


def _query_page(
    call: _Call, query: _Query, key: str, render: Callable[[list[Entity]], list[Entity]]
) -> httpx.Response:
    """One page of a query (``page``, ``limit``, ``order``), or 204 when it is empty."""
    page, limit = _paging(call.params)
    offset = (page - 1) * limit
    rows = query.fetch(call.con, order=_order(call.params), limit=limit + 1, offset=offset)
    if not rows:
        return _no_content()
    return _hal(
        200,
        {
            "_page": page,
            "_links": _page_links(call, page, limit, len(rows) > limit),
            "_embedded": {key: render(rows[:limit])},
        },
    )


def list_entities(call: _Call, kind: str) -> httpx.Response:
    found = _Filters.parse(call.params)
    query = _task_query(found) if kind == "tasks" else _entity_query(call, kind, found)
    return _query_page(call, query, kind, partial(_render_many, call, kind))


def get_entity(call: _Call, kind: str, entity_id: int) -> httpx.Response:
    entity = _load_one(call.con, kind, entity_id)
    return _hal(200, _render_many(call, kind, [entity])[0]) if entity else _no_content()


def create_entities(call: _Call, kind: str) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> dict[str, Any] | None:
        entity = _new_entity(call, kind, item, check)
        links = _lead_links(call, item, check) if kind == "leads" else []
        if check.errors:
            return None
        _store(call.con, kind, entity)
        for to_kind, to_id, is_main in links:
            _link(call.con, kind, entity["id"], to_kind, to_id, is_main)
        path = _entity_path(kind, entity["id"])
        return {"id": entity["id"], "request_id": request_id, "_links": {"self": call.href(path)}}

    created = _run_batch(call.batch(MAX_WRITE), one)
    return _hal(
        200, {"_links": {"self": call.href(f"/api/v4/{kind}")}, "_embedded": {kind: created}}
    )


def _update(
    call: _Call, kind: str, item: dict[str, Any], check: _Check, request_id: str
) -> dict | None:
    entity = _load_one(call.con, kind, item.get("id"))
    if entity is None:
        check.choice(False, "id")
        return None
    entity.update(updated_at=call.now, updated_by=call.catalog.admin_id)
    BUILDERS[kind](call, item, check, entity, False)
    if check.errors:
        return None
    _store(call.con, kind, entity)
    result = {"id": entity["id"], "updated_at": entity["updated_at"], "request_id": request_id}
    if "name" in entity:
        result["name"] = entity["name"]
    return {**result, "_links": {"self": call.href(_entity_path(kind, entity["id"]))}}


def update_entities(call: _Call, kind: str) -> httpx.Response:
    updated = _run_batch(call.batch(MAX_WRITE), partial(_update, call, kind))
    return _hal(
        200, {"_links": {"self": call.href(f"/api/v4/{kind}")}, "_embedded": {kind: updated}}
    )


def update_entity(call: _Call, kind: str, entity_id: int) -> httpx.Response:
    body = call.body()
    if not isinstance(body, dict):
        raise _bad_request("Request body must be a JSON object")
    (updated,) = _run_batch([{**body, "id": entity_id}], partial(_update, call, kind))
    return _hal(200, updated)


def _complex_part(
    call: _Call, kind: str, item: dict[str, Any], check: _Check
) -> tuple[Entity, bool] | None:
    """The contact or company of a complex lead: (entity, is new) or None when absent."""
    parts = _embedded_of(item).get(kind) or []
    path = f"_embedded.{kind}"
    if not isinstance(parts, list):
        check.fail("InvalidType", path, "This value should be of type array.")
        return None
    if not parts or check.too_many(len(parts), 1, path):
        return None
    part = parts[0] if isinstance(parts[0], dict) else {}
    if part.get("id") is not None:
        existing = _load_one(call.con, kind, part["id"])
        check.choice(existing is not None, f"{path}.0.id")
        return (existing, False) if existing else None
    at = check.at(f"{path}.0.")
    at.too_many(
        len(part.get("custom_fields_values") or []), MAX_COMPLEX_FIELDS, "custom_fields_values"
    )
    return _new_entity(call, kind, part, at), True


def create_complex(call: _Call) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> dict[str, Any] | None:
        check.too_many(len(item.get("custom_fields_values") or []), MAX_COMPLEX_FIELDS,
                       "custom_fields_values")  # fmt: skip
        lead = _new_entity(call, "leads", item, check)
        contact = _complex_part(call, "contacts", item, check)
        company = _complex_part(call, "companies", item, check)
        if check.errors:
            return None
        _store(call.con, "leads", lead)
        for kind, part in (("contacts", contact), ("companies", company)):
            if part is not None:
                if part[1]:
                    _store(call.con, kind, part[0])
                _link(call.con, "leads", lead["id"], kind, part[0]["id"], True)
        if contact and company:
            _link(call.con, "contacts", contact[0]["id"], "companies", company[0]["id"], False)
        return {
            "id": lead["id"],
            "contact_id": contact[0]["id"] if contact else None,
            "company_id": company[0]["id"] if company else None,
            "request_id": [request_id],
            "merged": False,
        }

    return _hal(200, _run_batch(call.batch(MAX_COMPLEX), one))


def _target(
    call: _Call, kind: str, item: dict[str, Any], check: _Check, entity_id: int | None
) -> int | None:
    """The entity a note or link belongs to: from the path, else the item's ``entity_id``."""
    if entity_id is None:
        entity_id = check.required_integer(item, "entity_id")
    if entity_id is not None:
        check.choice(_load_one(call.con, kind, entity_id) is not None, "entity_id")
    return entity_id


def _note_params(item: dict[str, Any], check: _Check) -> dict[str, Any] | None:
    if not check.required(item, "note_type"):
        return None
    check.choice(
        isinstance(item["note_type"], str) and item["note_type"] in NOTE_PARAMS, "note_type"
    )
    params = item.get("params")
    if not isinstance(params, dict):
        check.fail("InvalidType", "params", "This value should be of type object.")
        return None
    at = check.at("params.")
    for key in NOTE_PARAMS.get(item["note_type"], ()):
        at.required(params, key)
    if isinstance(params.get("text"), str):
        at.text(params["text"], "text", LONG_TEXT_MAX)
    return params


def create_notes(call: _Call, kind: str, entity_id: int | None = None) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> dict[str, Any] | None:
        target = _target(call, kind, item, check, entity_id)
        params = _note_params(item, check)
        note = _blank(call, "notes")
        _apply_people(call, item, check, note)
        if check.errors:
            return None
        note.update(entity_id=target, note_type=item["note_type"], params=params)
        _store(call.con, "notes", note, parent_kind=kind)
        return {
            "id": note["id"],
            "entity_id": target,
            "request_id": request_id,
            "_links": {"self": call.href(f"/api/v4/{kind}/notes/{note['id']}")},
        }

    created = _run_batch(call.batch(MAX_WRITE), one)
    return _hal(
        200, {"_links": {"self": call.href(call.request.url.path)}, "_embedded": {"notes": created}}
    )


def list_notes(call: _Call, kind: str, entity_id: int | None = None) -> httpx.Response:
    found = _Filters.parse(call.params)
    query = _common_filters(_Query("notes").add("parent_kind = ?", kind), found)
    targets = [entity_id] if entity_id is not None else found.ints("entity_id")
    if targets:
        query.among("parent_id", targets)
    if note_types := found.values.get("note_type"):
        query.among("json_extract(data, '$.note_type')", note_types)
    return _query_page(
        call, query, "notes", lambda notes: [_render_note(call, kind, note) for note in notes]
    )


def get_note(call: _Call, kind: str, note_id: int) -> httpx.Response:
    found = _Query("notes").add("id = ? and parent_kind = ?", note_id, kind).fetch(call.con)
    return _hal(200, _render_note(call, kind, found[0])) if found else _no_content()


def _link_item(
    call: _Call, kind: str, item: dict[str, Any], check: _Check, entity_id: int | None
) -> tuple[int, str, int, bool] | None:
    """(entity id, to kind, to id, is main) of one link request item, validated."""
    entity_id = _target(call, kind, item, check, entity_id)
    to_kind = item.get("to_entity_type")
    check.choice(to_kind in LINKABLE[kind], "to_entity_type")
    to_id = check.integer(item.get("to_entity_id"), "to_entity_id")
    if to_kind in LINKABLE[kind] and to_id is not None:
        check.choice(_load_one(call.con, to_kind, to_id) is not None, "to_entity_id")
    metadata = item.get("metadata") or {}
    is_main = isinstance(metadata, dict) and metadata.get("is_main") is True
    return None if check.errors else (entity_id, to_kind, to_id, is_main)


def link(call: _Call, kind: str, entity_id: int | None = None) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> tuple | None:
        found = _link_item(call, kind, item, check, entity_id)
        if found is not None:
            source, to_kind, to_id, is_main = found
            _link(call.con, kind, source, to_kind, to_id, is_main)
            return source, to_kind, to_id
        return None

    done = _run_batch(call.batch(MAX_WRITE), one)
    stored = _links_of(call.con, kind, [source for source, _, _ in done])
    main = {
        (source, to_kind, to_id): is_main
        for source, rows in stored.items()
        for to_kind, to_id, is_main in rows
    }
    return _links_response(call, [_link_view(kind, *key, main[key]) for key in done])


def unlink(call: _Call, kind: str, entity_id: int | None = None) -> httpx.Response:
    def one(item: dict[str, Any], check: _Check, request_id: str) -> bool | None:
        found = _link_item(call, kind, item, check, entity_id)
        if found is not None:
            _unlink(call.con, kind, found[0], found[1], found[2])
        return True

    _run_batch(call.batch(MAX_WRITE), one)
    return _no_content()


def list_links(call: _Call, kind: str, entity_id: int | None = None) -> httpx.Response:
    found = _Filters.parse(call.params)
    sources = [entity_id] if entity_id is not None else found.ints("entity_id")
    if not sources:
        raise _bad_request("filter[entity_id] is required")
    to_kinds = found.values.get("to_entity_type")
    to_ids = set(found.ints("to_entity_id"))
    links = [
        _link_view(kind, source, to_kind, to_id, is_main)
        for source, rows in sorted(_links_of(call.con, kind, sources).items())
        for to_kind, to_id, is_main in rows
        if (not to_kinds or to_kind in to_kinds) and (not to_ids or to_id in to_ids)
    ]
    return _links_response(call, links) if links else _no_content()


def _links_response(call: _Call, links: list[dict[str, Any]]) -> httpx.Response:
    return _hal(
        200,
        {
            "_total_items": len(links),
            "_links": {"self": call.href(call.request.url.path)},
            "_embedded": {"links": links},
        },
    )


def _router() -> Router:
    router = Router()
    router.add("GET", "/api/v4/account", get_account)
    router.add("GET", "/api/v4/users", list_users)
    router.add("GET", "/api/v4/users/{user_id:int}", get_user)
    pipelines = "/api/v4/leads/pipelines"
    router.add("GET", pipelines, list_pipelines)
    router.add("POST", pipelines, create_pipelines)
    router.add("GET", pipelines + "/{pipeline_id:int}", get_pipeline)
    router.add("GET", pipelines + "/{pipeline_id:int}/statuses", list_statuses)
    router.add("POST", pipelines + "/{pipeline_id:int}/statuses", create_statuses)
    router.add("GET", pipelines + "/{pipeline_id:int}/statuses/{status_id:int}", get_status)
    router.add("GET", "/api/v4/leads/loss_reasons", list_loss_reasons)
    router.add("POST", "/api/v4/leads/loss_reasons", create_loss_reasons)
    router.add("GET", "/api/v4/leads/loss_reasons/{reason_id:int}", get_loss_reason)
    router.add("POST", "/api/v4/leads/complex", create_complex)
    for kind in (*ENTITY_KINDS, "tasks"):
        base = f"/api/v4/{kind}"
        router.add("GET", base, partial(list_entities, kind=kind))
        router.add("POST", base, partial(create_entities, kind=kind))
        router.add("PATCH", base, partial(update_entities, kind=kind))
        router.add("GET", base + "/{entity_id:int}", partial(get_entity, kind=kind))
        router.add("PATCH", base + "/{entity_id:int}", partial(update_entity, kind=kind))
    for kind in ENTITY_KINDS:
        base = f"/api/v4/{kind}"
        endpoints = (
            ("GET", "/custom_fields", list_fields),
            ("POST", "/custom_fields", create_fields),
            ("GET", "/custom_fields/{field_id:int}", get_field),
            ("GET", "/tags", list_tags),
            ("POST", "/tags", create_tags),
            ("GET", "/notes", list_notes),
            ("POST", "/notes", create_notes),
            ("GET", "/notes/{note_id:int}", get_note),
            ("GET", "/{entity_id:int}/notes", list_notes),
            ("POST", "/{entity_id:int}/notes", create_notes),
            ("GET", "/links", list_links),
            ("GET", "/{entity_id:int}/links", list_links),
            ("POST", "/link", link),
            ("POST", "/{entity_id:int}/link", link),
            ("POST", "/unlink", unlink),
            ("POST", "/{entity_id:int}/unlink", unlink),
        )
        for method, path, endpoint in endpoints:
            router.add(method, base + path, partial(endpoint, kind=kind))
    return router


# ---------------------------------------------------------------------------------- the fake


def _contains_ci(haystack: str | None, needle: str | None) -> int:
    return int(
        haystack is not None and needle is not None and needle.casefold() in haystack.casefold()
    )


def _is_write(request: httpx.Request) -> bool:
    return request.method not in ("GET", "HEAD")


class AmoCrmFake:
    """The fake amoCRM account of ``settings``; ``handle`` serves one request (thread-safe;
    any number of processes may serve the same ``settings.amocrm_state`` at once)."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self._faults = FaultInjector(FaultSpec.parse(settings.faults, SIDE))
        self._router = _router()
        self._local = threading.local()
        rps = settings.amocrm_rps
        self._limit, self._window = (max(1, round(rps)), 1.0) if rps >= 1 else (1, 1.0 / rps)

    # -- serving

    def handle(self, request: httpx.Request) -> httpx.Response:
        accepted_at = time.time()
        con = self._connection()
        if self._banned(con):
            return self._answer(con, request, time.time(), _nginx(403))
        if not self._take_slot(con, accepted_at):
            return self._answer(con, request, time.time(), self._throttle(con))
        if not self._authorized(request):
            unauthorized = _problem(401, "Неверный логин или пароль")
            return self._answer(con, request, accepted_at, unauthorized)
        fault = self._draw_fault(con, request)
        if fault == "timeout":
            self._log_request(con, accepted_at, request, 0)
            raise Drop("timeout")
        if fault in ("429", "5xx", "ban"):
            return self._answer(con, request, accepted_at, self._fault_response(fault))
        response = self._serve(con, request)
        if fault == "lost":
            self._log_request(con, accepted_at, request, response.status_code)
            raise Drop("lost")
        return self._answer(con, request, accepted_at, response)

    def _serve(self, con: sqlite3.Connection, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        resolved = self._router.resolve(request.method, path)
        if resolved is None:
            if self._router.allows(path):
                return _problem(405, f"Method {request.method} is not allowed here")
            return _problem(404, f"No such method: {path}")
        endpoint, params = resolved
        call = _Call(con, request)
        try:
            with transaction(con):
                return endpoint(call, **params)
        except _Rejected as rejected:
            return rejected.response

    def _answer(
        self, con: sqlite3.Connection, request: httpx.Request, at: float, response: httpx.Response
    ) -> httpx.Response:
        response.headers["X-Request-Id"] = uuid.uuid4().hex
        self._log_request(con, at, request, response.status_code)
        return response

    @staticmethod
    def _log_request(
        con: sqlite3.Connection, at: float, request: httpx.Request, status: int
    ) -> None:
        """``store.log_request`` stamped with ``at``: an accepted request is logged under the
        limiter's acceptance time, so the log can never show more than the limiter admitted."""
        con.execute(
            "insert into request_log values (?, ?, ?, ?, ?)",
            (SIDE, at, request.method, request.url.path, status),
        )

    # -- the gate: ban, auth, rate limit, faults

    def _banned(self, con: sqlite3.Connection) -> bool:
        row = con.execute("select value from meta where key = 'ban_until'").fetchone()
        return row is not None and float(row[0]) > time.time()

    def _authorized(self, request: httpx.Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, f"Bearer {self.settings.amocrm_token}".encode())

    def _take_slot(self, con: sqlite3.Connection, arrived: float) -> bool:
        """Take a slot in the account's window for a request that arrived at ``arrived``.

        The arrival time, not the time the shared state's write lock is granted: a real server
        counts requests as they come in, while here a request may wait for another thread's
        250-entity insert to release the SQLite lock, which would bunch the stamps together."""
        window = SlidingWindow(con, limit=self._limit, window=self._window)
        return window.hit(ACCOUNT_BUCKET, now=arrived)[0]

    def _throttle(self, con: sqlite3.Connection) -> httpx.Response:
        """A 429; the one too many within 10 s bans the account for ``ban_seconds``."""
        if self.settings.ban_after > 0:
            with transaction(con):
                now = time.time()
                con.execute("delete from throttled where at <= ?", (now - THROTTLE_WINDOW,))
                con.execute("insert into throttled values (?)", (now,))
                (count,) = con.execute("select count(*) from throttled").fetchone()
                if count > self.settings.ban_after:
                    until = str(now + self.settings.ban_seconds)
                    con.execute("insert or replace into meta values ('ban_until', ?)", (until,))
                    con.execute("delete from throttled")
        return _nginx(429)

    def _draw_fault(self, con: sqlite3.Connection, request: httpx.Request) -> str | None:
        if self._faults.spec.latency:
            time.sleep(self._faults.spec.latency)
        fault = self._faults.draw(applicable=WRITE_FAULTS if _is_write(request) else READ_FAULTS)
        if fault is not None:
            log_fault(con, SIDE, fault, request.method, request.url.path)
        return fault

    def _fault_response(self, fault: str) -> httpx.Response:
        if fault == "429":
            return _nginx(429)
        if fault == "ban":
            return _nginx(403)
        status = SERVER_ERRORS[(self._faults.injected["5xx"] - 1) % len(SERVER_ERRORS)]
        return _problem(500, "Internal server error") if status == 500 else _nginx(status)

    # -- state

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own)."""
        if getattr(self._local, "pid", None) != os.getpid():
            self._local.con = self._open()
            self._local.pid = os.getpid()
        return self._local.con

    def _open(self) -> sqlite3.Connection:
        con = open_db(self.settings.amocrm_state)
        con.create_function("contains_ci", 2, _contains_ci, deterministic=True)
        con.executescript(LIMITER_SCHEMA + SCHEMA)
        with transaction(con):
            if con.execute("select 1 from meta where key = 'account'").fetchone() is None:
                _seed(con, self.settings)
        return con

    def reset(self) -> None:
        """Empty the account back to a new customer's (limiter, ban and logs included)."""
        con = self._connection()
        with transaction(con):
            for table in STATE_TABLES:
                con.execute(f"delete from {table}")
            _seed(con, self.settings)

    # -- inspection (reads SQLite, so it sees what every process did)

    def entity_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(COUNTED_KINDS, 0)
        rows = self._connection().execute("select kind, count(*) from entities group by kind")
        counts.update(dict(rows.fetchall()))
        return counts

    def creations_per_pipedrive_id(self, entity_type: str) -> dict[str, int]:
        """How many ``entity_type`` entities carry each value of the field named "Pipedrive ID"
        (any type, name matched case-insensitively)."""
        con = self._connection()
        field_ids = [
            custom["id"]
            for custom in _objects(con, f"field:{entity_type}")
            if custom["name"].strip().casefold() == "pipedrive id"
        ]
        rows = con.execute(
            f"select value, count(distinct entity_id) from field_values where kind = ? "
            f"and field_id in ({', '.join('?' * len(field_ids))}) group by value",
            (entity_type, *field_ids),
        )
        return dict(rows.fetchall())

    def max_requests_per_second(self, since: float | None = None) -> int:
        """Accepted requests in the busiest 1 s window (of those after ``since``, epoch s)."""
        return max_requests_in_window(self._connection(), SIDE, 1.0, since=since)

    def request_times(self, since: float = 0.0) -> list[float]:
        """When the server saw each request at or after ``since`` (epoch s), in order."""
        rows = self._connection().execute(
            "select at from request_log where side = ? and at >= ? order by at", (SIDE, since)
        )
        return [at for (at,) in rows]

    def requests_served(self) -> int:
        con = self._connection()
        (count,) = con.execute(
            "select count(*) from request_log where side = ?", (SIDE,)
        ).fetchone()
        return count

    def faults_injected(self) -> dict[str, int]:
        rows = self._connection().execute(
            "select kind, count(*) from fault_log where side = ? group by kind", (SIDE,)
        )
        return dict(rows.fetchall())
