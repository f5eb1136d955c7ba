"""The errors our API clients raise, shared by the Pipedrive and the amoCRM client.

::

    MigrationError             anything this project raises on purpose
    └── ApiError               a call to a remote API failed: service, endpoint, status, detail
        ├── RateLimited        429 after the retries, or a daily budget that is spent
        ├── AccessDenied       401/402/403: stop, do not retry; the message says what to check
        ├── Rejected           400/404/410/422…: the request itself is wrong; carries the
        │                      parsed error body in ``details``
        ├── InDoubt            a write that may have landed: reconcile before sending it again
        ├── Unavailable        5xx, timeouts, connection errors after the retries
        └── BadResponse        an answer that is not the documented shape (not JSON, truncated
                               JSON, an HTML page with 200, a ``success: false`` envelope)

``str()`` of an :class:`ApiError` is built from ``service``, ``endpoint`` (method and path,
never a query string), ``status`` and a short ``detail`` written by the client: never a token,
a URL with its query, headers or a response body. A client chains the httpx exception as
``__cause__`` for debugging; httpx's own messages carry no headers either.

Retry or reconcile: httpx draws the line
-----------------------------------------

A transport error says how far the request got, and that decides what is safe:

* **Never sent** — ``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``: no byte of the
  request reached the server, so nothing can have been applied. Any request may be retried.
* **Maybe applied** — ``ReadTimeout``, ``ReadError``, ``RemoteProtocolError`` (the server hung
  up without answering): the request was sent and the server may have committed it before the
  answer was lost. ``WriteError``, ``WriteTimeout`` and ``CloseError`` are counted here too:
  after a partial write the server *probably* saw an incomplete body, but "probably" is not
  what exactly-once is built on, and the price of being wrong this way round is one lookup.

Reads (and other idempotent requests) retry on both kinds. A non-idempotent write that meets a
maybe-applied error raises :class:`InDoubt` instead: the caller looks the entity up by its
source id before anything is sent again (``design.md`` §2, invariant 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

NEVER_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
MAYBE_APPLIED: tuple[type[httpx.TransportError], ...] = (
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.RemoteProtocolError,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.CloseError,
)
# RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def may_have_landed(method: str, exc: httpx.TransportError) -> bool:
    """True when ``exc`` leaves a non-idempotent request possibly applied (raise InDoubt)."""
    return method.upper() not in IDEMPOTENT_METHODS and isinstance(exc, MAYBE_APPLIED)


class MigrationError(Exception):
    """Base of every error this project raises on purpose."""


class ApiError(MigrationError):
    """A call to ``service`` at ``endpoint`` (``"GET /api/v2/deals"``) failed.

    ``status`` is the HTTP status, or None when no answer came. ``detail`` is a short,
    human sentence written by the client: what happened and what to check.
    """

    def __init__(self, service: str, endpoint: str, status: int | None, detail: str) -> None:
        endpoint = _without_query(endpoint)
        super().__init__(service, endpoint, status, detail)
        self.service = service
        self.endpoint = endpoint
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        return f"{self.service} {self.endpoint} [{status}]: {self.detail}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep subclasses' keyword-only extras when pickled (Dagster ships errors between
        # processes); ``Exception`` alone would call ``cls(*args)`` and drop them.
        return (type(self), self.args, self.__dict__)


class RateLimited(ApiError):
    """429 after the retries, or a daily budget that is spent. ``retry_after`` is the wait
    in seconds the server asked for, when it said."""

    def __init__(
        self,
        service: str,
        endpoint: str,
        status: int | None,
        detail: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(service, endpoint, status, detail)
        self.retry_after = retry_after


class AccessDenied(ApiError):
    """401/402/403: retrying cannot help and hammering gets the token banned. Stop the run."""


class Rejected(ApiError):
    """The request was refused as wrong (400/404/410/422…). ``details`` is the parsed error
    body (``error``, ``error_info``, ``code``… for Pipedrive), empty when it was not JSON."""

    def __init__(
        self,
        service: str,
        endpoint: str,
        status: int | None,
        detail: str,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(service, endpoint, status, detail)
        self.details: Mapping[str, Any] = dict(details or {})


class InDoubt(ApiError):
    """A write was sent and its answer lost: it may have been applied. Reconcile first."""


class Unavailable(ApiError):
    """The service did not answer usefully (5xx, timeouts, connection errors), retries spent."""


class BadResponse(ApiError):
    """An answer that is not the documented shape; ``endpoint`` names where it came from."""


def _without_query(endpoint: str) -> str:
    return endpoint.split("?", 1)[0].split("#", 1)[0]
