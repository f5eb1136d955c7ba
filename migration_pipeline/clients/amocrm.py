"""amoCRM (API v4) client for the loader: paged reads, batch writes mapped back by
``request_id``, every request under the account's rate limit, and a hard line between what
may be retried and what must be reconciled first.

* **Token.** :func:`make_http_client` puts the token in the ``Authorization: Bearer`` header,
  the only place it travels: never in a URL, a log record or an exception. Redirects are not
  followed (httpx would carry the header to whatever host a redirect names).
* **Rate.** Every attempt, retries included, first takes a slot from the account's
  :class:`~migration_pipeline.limiter.RequestLimiter`, shared by all processes (design §2,
  invariant 2). A 429 (an HTML page, no ``Retry-After``) is counted in ``stats.rate_limited``
  and retried after a back-off of at least a second (twice the first back-off), during which
  every thread of this client holds off too. A 403 with an HTML body means amoCRM *blocked
  the account* for too many requests: :class:`AccessDenied` at once, never a retry (hammering
  keeps it blocked).
* **Batches.** The caller chooses the batch; the client refuses more than 250 items per write
  (50 per ``/leads/complex``) before sending. It sets ``request_id`` to each item's position
  and maps the answer back by it, never by order. A 400 with ``validation-errors`` raises
  :class:`InvalidItems`, naming the offending items, so the caller can quarantine exactly those
  and resend the rest. amoCRM is understood to create nothing from a rejected batch (the fake
  does not); reference §5 marks that UNCONFIRMED, so a cautious caller looks the rest up by
  Pipedrive id before resending them, as after :class:`InDoubt`.

Retry or reconcile
------------------

amoCRM has no idempotency key (reference §5): a write sent twice may create twice. So:

=============================================  =================  =========================
outcome                                        read (GET)         write (POST, PATCH)
=============================================  =================  =========================
never sent: ``ConnectError``,                  retry              retry
``ConnectTimeout``, ``PoolTimeout``
429 (refused before processing)                retry              retry
sent, answer lost: ``ReadTimeout``,            retry              :class:`InDoubt`, at once
``ReadError``, ``RemoteProtocolError``, …
5xx: 500, 502, 503, 504 (may be applied)       retry              :class:`InDoubt`, at once
2xx whose body cannot be mapped to the items   retry              :class:`InDoubt`, at once
401, 402, 403 (token, payment, rights, ban)    :class:`AccessDenied` at once (stop the run)
other 4xx (400 validation, 404…)               :class:`Rejected` / :class:`InvalidItems`
=============================================  =================  =========================

:class:`InDoubt` means: the items may exist in amoCRM now. The caller looks them up by their
Pipedrive id (:meth:`AmoCrmClient.find_by_field`) before sending anything again (design §2,
invariant 1). Links are the exception that proves the rule: linking twice changes nothing, so
an in-doubt :meth:`AmoCrmClient.link` may simply be resent.

One client may serve several threads (the loader keeps a few requests in flight): httpx's
client is thread-safe, and the stats and the shared pause sit behind a lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any, TypeVar

import httpx

from ..limiter import RequestLimiter
from .errors import (
    IDEMPOTENT_METHODS,
    MAYBE_APPLIED,
    NEVER_SENT,
    AccessDenied,
    ApiError,
    BadResponse,
    InDoubt,
    RateLimited,
    Rejected,
    Unavailable,
)
from .responses import NOT_JSON, backoff_delay, json_body, looks_html

logger = logging.getLogger(__name__)

SERVICE = "amoCRM"
API_PREFIX = "/api/v4"
MAX_BATCH = 250  # items per write (reference §3)
MAX_COMPLEX_BATCH = 50  # leads per /leads/complex call (reference §4.2)
PAGE_LIMIT = 250  # records per list page (reference §3)
IDS_PER_FILTER = 100  # ids per filter[...][] list: keeps the URL well under 8 KB
VALUES_PER_FILTER = 50  # custom field values per filter[custom_fields_values] list
MAX_PAGES = 100_000  # last resort against a listing that never ends

Record = dict[str, Any]
Records = list[Record]  # entities as amoCRM returned them
Model = TypeVar("Model")


def make_http_client(
    base_url: str,
    token: str,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 30.0,
) -> httpx.Client:
    """An ``httpx.Client`` for the account at ``base_url`` (``https://acme.amocrm.ru``; the
    client adds ``/api/v4``) that sends ``token`` as ``Authorization: Bearer`` and nowhere
    else. The caller closes it."""
    if not token:
        raise ValueError("no amoCRM access token: set AMOCRM_ACCESS_TOKEN")
    if not token.isascii() or any(char.isspace() for char in token):
        raise ValueError("AMOCRM_ACCESS_TOKEN has characters that cannot travel in a header")
    url = httpx.URL(base_url)
    if url.query or url.path not in ("", "/"):
        raise ValueError(
            "the amoCRM base URL is the account host alone, e.g. https://acme.amocrm.ru "
            "(no path, no query: the client adds /api/v4)"
        )
    return httpx.Client(
        base_url=url,
        headers={"authorization": f"Bearer {token}", "accept": "application/json"},
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
    )


# -- what the client returns ------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """The account (``GET /api/v4/account``). ``raw`` holds the whole answer, including what
    ``with_`` asked for (``task_types``, ``datetime_settings``… under ``_embedded``)."""

    id: int
    name: str
    subdomain: str
    currency: str | None
    current_user_id: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Account:
        return cls(
            id=raw["id"],
            name=raw.get("name") or "",
            subdomain=raw.get("subdomain") or "",
            currency=raw.get("currency"),
            current_user_id=raw.get("current_user_id"),
            raw=raw,
        )


@dataclass(frozen=True)
class User:
    """A user of the account; Pipedrive users are mapped onto these by e-mail."""

    id: int
    name: str
    email: str | None
    is_admin: bool
    is_active: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> User:
        rights = raw.get("rights") or {}
        return cls(
            id=raw["id"],
            name=raw.get("name") or "",
            email=raw.get("email"),
            is_admin=bool(rights.get("is_admin")),
            is_active=bool(rights.get("is_active", True)),
            raw=raw,
        )


@dataclass(frozen=True)
class Status:
    """A pipeline stage. 142 (won) and 143 (lost) exist in every pipeline; ``type`` 1 is the
    unsorted inbox."""

    id: int
    pipeline_id: int
    name: str
    sort: int
    type: int
    is_editable: bool

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Status:
        return cls(
            id=raw["id"],
            pipeline_id=raw["pipeline_id"],
            name=raw.get("name") or "",
            sort=raw.get("sort") or 0,
            type=raw.get("type") or 0,
            is_editable=bool(raw.get("is_editable", True)),
        )


@dataclass(frozen=True)
class Pipeline:
    """A lead pipeline with its statuses, in ``sort`` order."""

    id: int
    name: str
    sort: int
    is_main: bool
    is_archive: bool
    statuses: tuple[Status, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Pipeline:
        statuses = ((raw.get("_embedded") or {}).get("statuses")) or []
        return cls(
            id=raw["id"],
            name=raw.get("name") or "",
            sort=raw.get("sort") or 0,
            is_main=bool(raw.get("is_main")),
            is_archive=bool(raw.get("is_archive")),
            statuses=tuple(
                sorted((Status.from_api(s) for s in statuses), key=lambda s: (s.sort, s.id))
            ),
            raw=raw,
        )


@dataclass(frozen=True)
class FieldEnum:
    """One choice of a select-like field (``PHONE``/``EMAIL`` kinds carry codes like WORK)."""

    id: int
    value: str
    code: str | None
    sort: int


@dataclass(frozen=True)
class CustomField:
    """A custom field definition of one entity type (``leads``, ``contacts``, ``companies``)."""

    id: int
    name: str
    type: str
    code: str | None
    entity_type: str | None
    enums: tuple[FieldEnum, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> CustomField:
        return cls(
            id=raw["id"],
            name=raw.get("name") or "",
            type=raw.get("type") or "",
            code=raw.get("code"),
            entity_type=raw.get("entity_type"),
            enums=tuple(
                FieldEnum(e["id"], str(e.get("value", "")), e.get("code"), e.get("sort") or 0)
                for e in raw.get("enums") or []
            ),
            raw=raw,
        )


@dataclass(frozen=True)
class LossReason:
    """Why a lead was lost (status 143)."""

    id: int
    name: str
    sort: int

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> LossReason:
        return cls(id=raw["id"], name=raw.get("name") or "", sort=raw.get("sort") or 0)


@dataclass(frozen=True)
class Link:
    """A link between two entities; ``is_main`` is amoCRM's ``metadata.main_contact``."""

    entity_type: str
    entity_id: int
    to_entity_type: str
    to_entity_id: int
    is_main: bool

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Link:
        metadata = raw.get("metadata") or {}
        return cls(
            entity_type=raw["entity_type"],
            entity_id=raw["entity_id"],
            to_entity_type=raw["to_entity_type"],
            to_entity_id=raw["to_entity_id"],
            is_main=bool(metadata.get("main_contact")),
        )


@dataclass(frozen=True)
class Created:
    """The item at ``index`` of a write batch became amoCRM entity ``id``."""

    index: int
    id: int


@dataclass(frozen=True)
class Updated:
    """The item at ``index`` of an update batch changed entity ``id`` at ``updated_at``."""

    index: int
    id: int
    updated_at: int | None


@dataclass(frozen=True)
class ComplexCreated:
    """The lead at ``index`` of a ``/leads/complex`` batch, with the contact and company
    created (or matched) with it. ``merged``: amoCRM's duplicate control matched an existing
    lead, possibly for several items of the batch at once."""

    index: int
    lead_id: int
    contact_id: int | None
    company_id: int | None
    merged: bool


@dataclass(frozen=True)
class ItemError:
    """One validation error of one batch item. ``index`` is the item's position in the batch
    (None if amoCRM named a ``request_id`` we did not send); ``path`` is dot notation into the
    item, e.g. ``custom_fields_values.0.field_id``."""

    request_id: str
    index: int | None
    code: str
    path: str
    detail: str


class InvalidItems(Rejected):
    """400 ``validation-errors``: amoCRM rejected the batch because of the items in
    ``errors``. Quarantine ``indexes`` and resend the rest (whether amoCRM ever keeps the
    valid items of a rejected batch is UNCONFIRMED, reference §5: reconcile them first to be
    safe)."""

    def __init__(
        self,
        service: str,
        endpoint: str,
        status: int | None,
        detail: str,
        *,
        details: Mapping[str, Any] | None = None,
        errors: Sequence[ItemError] = (),
    ) -> None:
        super().__init__(service, endpoint, status, detail, details=details)
        self.errors: tuple[ItemError, ...] = tuple(errors)

    @property
    def indexes(self) -> frozenset[int]:
        """Positions of the offending items in the batch."""
        return frozenset(error.index for error in self.errors if error.index is not None)


@dataclass
class ClientStats:
    """What the client did, for the run log. ``requests`` counts every attempt."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    in_doubt: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class _Retry:
    """A failed attempt worth repeating; ``error`` is raised when no attempt is left."""

    error: type[ApiError]
    status: int | None
    reason: str
    rate_limited: bool = False

    def give_up(self, endpoint: str, attempts: int) -> ApiError:
        detail = f"{self.reason}; gave up after {attempts} attempts"
        return self.error(SERVICE, endpoint, self.status, detail)


# -- the client -------------------------------------------------------------------------------


class AmoCrmClient:
    """Reads and writes one amoCRM account through ``http`` (see :func:`make_http_client`),
    taking a slot from ``limiter`` before every attempt.

    ``sleep`` and ``clock`` are injectable so tests neither wait nor depend on real time.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        limiter: RequestLimiter,
        max_retries: int = 6,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self._http = http
        self._limiter = limiter
        self._max_retries = max_retries
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._resume_at = -math.inf  # after a 429 no thread sends before this clock() reading
        self._field_filter_works = True  # until amoCRM shows otherwise (find_by_field)
        self.stats = ClientStats()

    # -- reads --------------------------------------------------------------------------------

    def account(self, with_: Iterable[str] = ()) -> Account:
        """The account; ``with_`` adds parts, e.g. ``("task_types", "datetime_settings")``."""
        parts = ",".join(with_)
        body = self._get_one("account", {"with": parts} if parts else None)
        return self._parse(Account.from_api, body, f"GET {_api_path('account')}")

    def users(self) -> tuple[User, ...]:
        """Every user of the account (needs an admin token)."""
        endpoint = f"GET {_api_path('users')}"
        return tuple(
            self._parse(User.from_api, raw, endpoint) for page in self.list("users") for raw in page
        )

    def pipelines(self) -> tuple[Pipeline, ...]:
        """Every lead pipeline with its statuses (one request: this list is not paged)."""
        endpoint = f"GET {_api_path('leads/pipelines')}"
        records = _embedded(self._get_one("leads/pipelines"), "pipelines", endpoint)
        return tuple(self._parse(Pipeline.from_api, raw, endpoint) for raw in records)

    def custom_fields(self, entity: str) -> tuple[CustomField, ...]:
        """The custom field definitions of ``entity`` (``leads``, ``contacts``, ``companies``)."""
        endpoint = f"GET {_api_path(f'{entity}/custom_fields')}"
        pages = self.list(f"{entity}/custom_fields")
        return tuple(self._parse(CustomField.from_api, raw, endpoint) for p in pages for raw in p)

    def loss_reasons(self) -> tuple[LossReason, ...]:
        """The account's loss reasons."""
        endpoint = f"GET {_api_path('leads/loss_reasons')}"
        pages = self.list("leads/loss_reasons")
        return tuple(self._parse(LossReason.from_api, raw, endpoint) for p in pages for raw in p)

    def get(
        self, entity: str, entity_id: int, params: Mapping[str, Any] | None = None
    ) -> Record | None:
        """One entity (``get("leads", 42)``), or None when amoCRM answers 204 (no such id)."""
        path = _api_path(f"{entity}/{int(entity_id)}")
        body = self._request("GET", path, params=params)
        if body is not None and not isinstance(body, dict):
            raise BadResponse(SERVICE, f"GET {path}", 200, "expected an object")
        return body

    def list(self, entity: str, params: Mapping[str, Any] | None = None) -> Iterator[Records]:
        """Pages of the listing ``entity`` (``"leads"``, ``"leads/notes"``, ``"tasks"``…),
        ``limit=250`` each, until a page has no ``_links.next`` or amoCRM answers 204.

        ``params`` are filters and options (``{"filter[id][]": [1, 2], "with": "contacts"}``);
        ``page`` and ``limit`` are the client's. Records are in ``_embedded.<last segment>``.
        """
        path = _api_path(entity)
        key = path.rsplit("/", 1)[-1]
        query = {name: value for name, value in (params or {}).items() if value is not None}
        for page in count(1):
            if page > MAX_PAGES:
                detail = f"more than {MAX_PAGES} pages; stopping instead of looping"
                raise BadResponse(SERVICE, f"GET {path}", 200, detail)
            body = self._request("GET", path, params={**query, "page": page, "limit": PAGE_LIMIT})
            if body is None:  # 204: nothing (more) matches
                return
            records = _embedded(body, key, f"GET {path}")
            if records:
                yield records
            if not _has_next(body):
                return

    def find_by_field(
        self, entity: str, field_id: int, values: Iterable[str | int]
    ) -> dict[str | int, Records]:
        """The ``entity`` records whose custom field ``field_id`` holds each of ``values``
        exactly: ``{value: [records…]}``, an empty list for a value nobody holds. This is how
        in-doubt writes are reconciled: by the Pipedrive id stored on every created entity.

        It asks ``filter[custom_fields_values][<field_id>][]=…`` for up to 50 values a request.
        That filter is not on every account (older docs call it "alpha, limited list of
        accounts"; reference §4.1): an account without it answers 400, or ignores the filter
        and returns records that do not match. Either way the client falls back, for this and
        every later call, to ``query=<value>``: a substring search over names and field values,
        one request per value, matched exactly here (a search for ``12`` also finds ``120``).
        Results are always checked client-side, so a filter silently ignored can never
        attribute another record to a value.
        """
        wanted = {_field_text(value): value for value in values}
        found: dict[str | int, Records] = {value: [] for value in wanted.values()}
        if not wanted:
            return found
        pending = list(wanted)
        while pending and self._field_filter_works:
            chunk, pending = pending[:VALUES_PER_FILTER], pending[VALUES_PER_FILTER:]
            params = {f"filter[custom_fields_values][{int(field_id)}][]": chunk}
            try:
                matched = self._matching(entity, field_id, set(chunk), params)
            except _FilterIgnored:
                matched = None
            except Rejected as exc:
                if exc.status != 400 or isinstance(exc, InvalidItems):
                    raise
                matched = None
            if matched is None:
                logger.warning(
                    "%s: filter[custom_fields_values] is not available on this account; "
                    "looking values up with query= instead (one request per value)",
                    SERVICE,
                )
                self._field_filter_works = False
                pending = chunk + pending
                break
            for text, records in matched.items():
                found[wanted[text]].extend(records)
        for text in pending:
            matched = self._matching(entity, field_id, {text}, {"query": text}, strict=False)
            found[wanted[text]].extend(matched.get(text, []))
        return found

    def links(self, entity: str, entity_ids: Iterable[int]) -> tuple[Link, ...]:
        """Every link of the given ``entity`` records (to contacts, companies, leads…)."""
        endpoint = f"GET {_api_path(f'{entity}/links')}"
        return tuple(
            self._parse(Link.from_api, raw, endpoint)
            for ids in _chunks([int(i) for i in entity_ids], IDS_PER_FILTER)
            for page in self.list(f"{entity}/links", {"filter[entity_id][]": ids})
            for raw in page
        )

    def notes(self, entity: str, entity_ids: Iterable[int]) -> Records:
        """Every note on the given ``entity`` records (``leads``, ``contacts``, ``companies``)."""
        return [
            note
            for ids in _chunks([int(i) for i in entity_ids], IDS_PER_FILTER)
            for page in self.list(f"{entity}/notes", {"filter[entity_id][]": ids})
            for note in page
        ]

    def tasks(self, entity_type: str, entity_ids: Iterable[int]) -> Records:
        """Every task on the given records of ``entity_type`` (``leads``, ``contacts``…)."""
        return [
            task
            for ids in _chunks([int(i) for i in entity_ids], IDS_PER_FILTER)
            for page in self.list(
                "tasks", {"filter[entity_type]": entity_type, "filter[entity_id][]": ids}
            )
            for task in page
        ]

    # -- writes -------------------------------------------------------------------------------

    def create(self, entity: str, items: Sequence[Mapping[str, Any]]) -> tuple[Created, ...]:
        """Create ``items`` (``POST /api/v4/<entity>``): one :class:`Created` per item, in item
        order. Raises :class:`InvalidItems` (the batch was rejected) or :class:`InDoubt`."""
        results = self._write("POST", entity, items, MAX_BATCH)
        return tuple(Created(index, raw["id"]) for index, raw in results)

    def update(self, entity: str, items: Sequence[Mapping[str, Any]]) -> tuple[Updated, ...]:
        """Update ``items`` (each with its ``id``) in one ``PATCH /api/v4/<entity>``."""
        if any("id" not in item for item in items):
            raise ValueError("every item of an update needs its amoCRM id")
        results = self._write("PATCH", entity, items, MAX_BATCH)
        return tuple(Updated(index, raw["id"], raw.get("updated_at")) for index, raw in results)

    def create_complex(self, leads: Sequence[Mapping[str, Any]]) -> tuple[ComplexCreated, ...]:
        """Create leads with their contact and company in one call (at most 50 leads)."""
        results = self._write("POST", "leads/complex", leads, MAX_COMPLEX_BATCH)
        return tuple(
            ComplexCreated(
                index=index,
                lead_id=raw["id"],
                contact_id=raw.get("contact_id"),
                company_id=raw.get("company_id"),
                merged=bool(raw.get("merged")),
            )
            for index, raw in results
        )

    def create_tasks(self, items: Sequence[Mapping[str, Any]]) -> tuple[Created, ...]:
        """Create tasks (``text`` and ``complete_till`` required; reference §4.5)."""
        return self.create("tasks", items)

    def create_notes(self, entity: str, items: Sequence[Mapping[str, Any]]) -> tuple[Created, ...]:
        """Create notes on ``entity`` records; each item names its ``entity_id``."""
        return self.create(f"{entity}/notes", items)

    def link(self, entity: str, links: Sequence[Mapping[str, Any]]) -> tuple[Link, ...]:
        """Link ``entity`` records to others (``{entity_id, to_entity_id, to_entity_type,
        metadata?}``). Linking twice changes nothing, so an in-doubt call may be resent."""
        if not links:
            return ()
        _check_batch(links, MAX_BATCH)
        path = _api_path(f"{entity}/link")
        body = self._request("POST", path, json=[dict(link) for link in links])
        results = self._written(body, "links", "POST", path)
        return tuple(
            self._parse(Link.from_api, raw, f"POST {path}", written=True) for raw in results
        )

    def create_custom_fields(
        self, entity: str, fields: Sequence[Mapping[str, Any]]
    ) -> tuple[CustomField, ...]:
        """Create custom fields on ``entity``; the definitions come back with their enum ids."""
        endpoint = f"POST {_api_path(f'{entity}/custom_fields')}"
        results = self._write("POST", f"{entity}/custom_fields", fields, MAX_BATCH)
        return tuple(
            self._parse(CustomField.from_api, raw, endpoint, written=True) for _, raw in results
        )

    def create_pipeline(
        self,
        name: str,
        *,
        sort: int,
        statuses: Sequence[Mapping[str, Any]] = (),
        is_main: bool = False,
        is_unsorted_on: bool = False,
    ) -> Pipeline:
        """Create a pipeline with ``statuses`` (``{name, sort, color?}``); amoCRM adds 142 and
        143 (and the unsorted inbox when ``is_unsorted_on``)."""
        item = {
            "name": name,
            "sort": sort,
            "is_main": is_main,
            "is_unsorted_on": is_unsorted_on,
            "_embedded": {"statuses": [dict(status) for status in statuses]},
        }
        ((_, raw),) = self._write("POST", "leads/pipelines", [item], MAX_BATCH)
        endpoint = f"POST {_api_path('leads/pipelines')}"
        return self._parse(Pipeline.from_api, raw, endpoint, written=True)

    def create_statuses(
        self, pipeline_id: int, statuses: Sequence[Mapping[str, Any]]
    ) -> tuple[Status, ...]:
        """Add statuses (``{name, sort, color?}``) to an existing pipeline."""
        entity = f"leads/pipelines/{int(pipeline_id)}/statuses"
        results = self._write("POST", entity, statuses, MAX_BATCH)
        endpoint = f"POST {_api_path(entity)}"
        return tuple(
            self._parse(Status.from_api, raw, endpoint, written=True) for _, raw in results
        )

    def create_loss_reasons(self, reasons: Sequence[Mapping[str, Any]]) -> tuple[LossReason, ...]:
        """Create loss reasons (``{name, sort?}``)."""
        results = self._write("POST", "leads/loss_reasons", reasons, MAX_BATCH)
        endpoint = f"POST {_api_path('leads/loss_reasons')}"
        return tuple(
            self._parse(LossReason.from_api, raw, endpoint, written=True) for _, raw in results
        )

    # -- read helpers -------------------------------------------------------------------------

    def _get_one(self, path: str, params: Mapping[str, Any] | None = None) -> Record:
        endpoint = _api_path(path)
        body = self._request("GET", endpoint, params=params)
        if not isinstance(body, dict):
            status, what = (204, "nothing") if body is None else (200, "something else")
            raise BadResponse(SERVICE, f"GET {endpoint}", status, f"expected an object, got {what}")
        return body

    def _matching(
        self,
        entity: str,
        field_id: int,
        texts: set[str],
        params: Mapping[str, Any],
        *,
        strict: bool = True,
    ) -> dict[str, Records]:
        """Records of the listing that hold one of ``texts`` in ``field_id``, by text. With
        ``strict``, a record holding none of them means the filter was ignored."""
        matched: dict[str, Records] = {}
        for page in self.list(entity, params):
            for record in page:
                held = _field_texts(record, field_id) & texts
                if not held and strict:
                    raise _FilterIgnored
                for text in held:
                    matched.setdefault(text, []).append(record)
        return matched

    def _parse(
        self,
        parse: Callable[[Mapping[str, Any]], Model],
        raw: Any,
        endpoint: str,
        *,
        written: bool = False,
    ) -> Model:
        """``parse(raw)``. A record of the wrong shape is :class:`BadResponse`; after a write
        it is :class:`InDoubt` (the write went through, its result is unreadable)."""
        try:
            return parse(raw)
        except (KeyError, TypeError, AttributeError) as exc:
            what = f"a result of unexpected shape ({type(exc).__name__}: {exc})"
            if written:
                raise self._in_doubt(endpoint, 200, f"the write was accepted with {what}") from None
            raise BadResponse(SERVICE, endpoint, 200, what) from None

    # -- write helpers ------------------------------------------------------------------------

    def _write(
        self, method: str, entity: str, items: Sequence[Mapping[str, Any]], maximum: int
    ) -> Sequence[tuple[int, Record]]:
        """Send ``items`` with ``request_id`` = their position; (index, result) in item order.

        The client owns ``request_id``: one given in an item is replaced.
        """
        if not items:
            return ()
        _check_batch(items, maximum)
        path = _api_path(entity)
        payload = [{**item, "request_id": str(index)} for index, item in enumerate(items)]
        body = self._request(method, path, json=payload)
        key = path.rsplit("/", 1)[-1]
        results = self._written(body, None if key == "complex" else key, method, path)
        return self._by_request_id(results, len(items), method, path)

    def _written(self, body: Any, key: str | None, method: str, path: str) -> Records:
        """The result list of a 2xx write (``_embedded.<key>``, or the bare array of
        ``/leads/complex``). The write went through, so an answer we cannot read is in doubt."""
        results = body if key is None else _embedded_value(body, key)
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            what = "an empty answer" if body is None else "an answer without its results"
            raise self._in_doubt(f"{method} {path}", 200, f"the write was accepted with {what}")
        return results

    def _by_request_id(
        self, results: Records, size: int, method: str, path: str
    ) -> Sequence[tuple[int, Record]]:
        by_index: dict[int, Record] = {}
        for result in results:
            if not _is_int(result.get("id")):
                raise self._in_doubt(f"{method} {path}", 200, "a result has no integer id")
            given = result.get("request_id")
            for request_id in given if isinstance(given, list) else [given]:
                index = _index_of(request_id, size)
                if index is None or (index in by_index and by_index[index] is not result):
                    detail = f"the answer names request_id {request_id!r}, which was not sent once"
                    raise self._in_doubt(f"{method} {path}", 200, detail)
                by_index[index] = result
        missing = [index for index in range(size) if index not in by_index]
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (", …" if len(missing) > 5 else "")
            detail = f"the answer has no result for {len(missing)} item(s) (index {shown})"
            raise self._in_doubt(f"{method} {path}", 200, detail)
        return sorted(by_index.items())

    def _in_doubt(self, endpoint: str, status: int | None, what: str) -> InDoubt:
        with self._lock:
            self.stats.in_doubt += 1
        detail = (
            f"{what}; the items may have been created: look them up by their Pipedrive id "
            "before sending them again"
        )
        logger.warning("%s %s: in doubt: %s", SERVICE, endpoint, what)
        return InDoubt(SERVICE, endpoint, status, detail)

    # -- one request, with retries ------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one request until it succeeds or retrying cannot help; the JSON body, or None
        for 204. A small loop rather than tenacity: every failure decides for itself whether
        it may be retried, and every attempt passes the limiter and feeds the stats."""
        endpoint = f"{method} {path}"
        attempt = 0
        while True:
            self._wait_for_pause()
            outcome = self._attempt(method, path, params, json, endpoint)
            if not isinstance(outcome, _Retry):
                return outcome
            if attempt >= self._max_retries:
                raise outcome.give_up(endpoint, attempt + 1)
            delay = backoff_delay(self._backoff, attempt)
            if outcome.rate_limited:
                # At least twice the first back-off (1 s at the default): amoCRM counts per
                # second, and coming back sooner is asking for the next 429.
                delay = max(delay, 2 * self._backoff)
                self._pause_all(delay)
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
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        payload: Any,
        endpoint: str,
    ) -> Any:
        write = method not in IDEMPOTENT_METHODS
        with self._lock:
            self.stats.requests += 1
        # Encode the body (up to 250 entities) before taking a slot from the limiter: the slot
        # then goes straight to the wire, and requests from several threads reach amoCRM
        # spaced as the limiter spaced them.
        request = self._http.build_request(method, path, params=params, json=payload)
        self._limiter.acquire()
        try:
            response = self._http.send(request)
        except NEVER_SENT as exc:
            return _Retry(Unavailable, None, f"{type(exc).__name__} (not sent)")
        except MAYBE_APPLIED as exc:
            if write:
                what = f"{type(exc).__name__} after the request was sent"
                raise self._in_doubt(endpoint, None, what) from exc
            return _Retry(Unavailable, None, type(exc).__name__)
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}; check AMOCRM_BASE_URL"
            raise Unavailable(SERVICE, endpoint, None, detail) from exc
        logger.debug("%s %s -> %d", SERVICE, endpoint, response.status_code)
        return self._read(response, endpoint, write)

    def _read(self, response: httpx.Response, endpoint: str, write: bool) -> Any:
        status = response.status_code
        if status == 204:
            return None
        if 200 <= status < 300:
            body = json_body(response)
            if body is not NOT_JSON:
                return body
            what = "an HTML page" if looks_html(response) else "invalid or truncated JSON"
            if write:
                raise self._in_doubt(endpoint, status, f"the write was accepted with {what}")
            return _Retry(BadResponse, status, f"got {what} instead of JSON")
        if status == 429:
            with self._lock:
                self.stats.rate_limited += 1
            return _Retry(RateLimited, 429, "rate limited (429)", rate_limited=True)
        if status >= 500:
            hint = "; the batch may be too big or slow: shrink it" if status == 504 else ""
            if write:  # the server may have committed before failing: never resend blindly
                raise self._in_doubt(endpoint, status, f"server error {status} on a write{hint}")
            return _Retry(Unavailable, status, f"server error {status}{hint}")
        if status in (401, 402, 403):
            raise _access_denied(response, endpoint)
        if 400 <= status < 500:
            with self._lock:
                self.stats.rejected += 1
            raise _rejected(response, endpoint)
        raise BadResponse(
            SERVICE,
            endpoint,
            status,
            f"unexpected status {status} (redirects are not followed); check AMOCRM_BASE_URL",
        )

    def _pause_all(self, seconds: float) -> None:
        """After a 429 every thread of this client holds off: the account's budget is spent
        (by us or another integration), and more 429s lead to a ban."""
        with self._lock:
            self._resume_at = max(self._resume_at, self._clock() + seconds)

    def _wait_for_pause(self) -> None:
        with self._lock:
            wait = self._resume_at - self._clock()
        if wait > 0:
            self._sleep(wait)


# -- module helpers (no client state) ---------------------------------------------------------


class _FilterIgnored(Exception):
    """A filtered listing returned a record that does not match the filter."""


def _problem_detail(body: Any) -> str:
    """The ``detail`` (else ``title``) of a problem+json body, on one short line."""
    if not isinstance(body, dict):
        return "no JSON error body"
    text = str(body.get("detail") or body.get("title") or "no detail")
    return " ".join(text.split())[:200]


def _access_denied(response: httpx.Response, endpoint: str) -> AccessDenied:
    status = response.status_code
    body = json_body(response)
    if status == 401:
        detail = (
            "token rejected (invalid, expired or revoked); check AMOCRM_ACCESS_TOKEN and that "
            "it belongs to the account at AMOCRM_BASE_URL"
        )
    elif status == 402:
        detail = "the amoCRM account is not paid; check its subscription"
    elif not isinstance(body, dict):
        detail = (
            "amoCRM blocked the account for too many requests; stop and contact amoCRM "
            "support (give them the account subdomain and this machine's IP address)"
        )
    else:
        detail = (
            f"forbidden: {_problem_detail(body)}; the token's user may lack the rights "
            "(users, custom fields and pipelines need an administrator)"
        )
    return AccessDenied(SERVICE, endpoint, status, detail)


def _rejected(response: httpx.Response, endpoint: str) -> Rejected:
    status = response.status_code
    body = json_body(response)
    details = body if isinstance(body, dict) else {}
    problems = details.get("validation-errors")
    if status == 400 and isinstance(problems, list):
        errors = _item_errors(problems)
        return InvalidItems(
            SERVICE, endpoint, status, _describe(errors), details=details, errors=errors
        )
    message = _problem_detail(body)
    if "too many" in message.lower():
        message += " (at most 250 items per write, 50 per complex call: lower the batch size)"
    elif status == 404:
        message += "; check AMOCRM_BASE_URL (the account's own subdomain, not www)"
    return Rejected(SERVICE, endpoint, status, message, details=details)


def _item_errors(problems: list[Any]) -> list[ItemError]:
    errors = []
    for problem in problems:
        if not isinstance(problem, dict):
            continue
        request_id = str(problem.get("request_id", ""))
        for error in problem.get("errors") or []:
            if isinstance(error, dict):
                errors.append(
                    ItemError(
                        request_id=request_id,
                        index=_index_of(request_id, None),
                        code=str(error.get("code", "")),
                        path=str(error.get("path", "")),
                        detail=str(error.get("detail", "")),
                    )
                )
    return errors


def _describe(errors: Sequence[ItemError]) -> str:
    items = sorted({error.request_id for error in errors})
    shown = "; ".join(f"item {e.request_id}: {e.code} at {e.path or '.'}" for e in errors[:3])
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return f"validation failed for {len(items)} item(s), batch rejected: {shown}{more}"


def _embedded_value(body: Any, key: str) -> Any:
    """``body["_embedded"][key]``, or None when the answer is not shaped that way."""
    embedded = body.get("_embedded") if isinstance(body, dict) else None
    return embedded.get(key) if isinstance(embedded, dict) else None


def _embedded(body: Any, key: str, endpoint: str) -> Records:
    records = _embedded_value(body, key)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadResponse(SERVICE, endpoint, 200, f"expected a list in _embedded.{key}")
    return records


def _has_next(body: Mapping[str, Any]) -> bool:
    links = body.get("_links")
    return isinstance(links, dict) and isinstance(links.get("next"), dict)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index_of(request_id: Any, size: int | None) -> int | None:
    """The batch position a ``request_id`` we set stands for, or None."""
    text = str(request_id) if isinstance(request_id, str | int) else ""
    if not text.isdigit() or (text != "0" and text.startswith("0")):
        return None
    index = int(text)
    return index if size is None or index < size else None


def _check_batch(items: Sequence[Any], maximum: int) -> None:
    if len(items) > maximum:
        raise ValueError(f"{len(items)} items in one request; amoCRM accepts at most {maximum}")


def _field_text(value: Any) -> str:
    """A custom field value as text, the way equal values compare (``7``, ``7.0``, ``"7"``)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _field_texts(record: Mapping[str, Any], field_id: int) -> set[str]:
    """Every value ``record`` holds in custom field ``field_id``, as text."""
    return {
        _field_text(value.get("value"))
        for custom in record.get("custom_fields_values") or []
        if isinstance(custom, dict) and custom.get("field_id") == field_id
        for value in custom.get("values") or []
        if isinstance(value, dict) and value.get("value") is not None
    }


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _api_path(path: str) -> str:
    """``"leads"`` or ``"/api/v4/leads"`` → ``"/api/v4/leads"``."""
    relative = path.strip("/")
    if not relative or "?" in relative or "#" in relative:
        raise ValueError("give an API path such as 'leads'; pass query parameters in params")
    prefix = API_PREFIX.strip("/") + "/"
    return "/" + (relative if relative.startswith(prefix) else prefix + relative)
