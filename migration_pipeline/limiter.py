"""One request-rate limit per amoCRM account, shared by every process and thread that calls it.

amoCRM allows 7 requests per second (reference §2) and answers more with 429, repeated abuse
with a 403 ban that only its support lifts. Several Dagster run processes load partitions at
once (design §2, invariant 2), so the limit lives in a file every process opens:
``<data dir>/limits/amocrm-<account key>.sqlite3``, where the account key is a hash of the
account's origin (scheme, host, port), never of the token.

:class:`RequestLimiter` is the seam (design §6): the client only calls ``acquire()``. The one
implementation, :class:`SQLiteRequestLimiter`, is pyrate-limiter 4.5's ``SQLiteBucket`` with
its file lock behind a blocking ``Limiter``: a sliding-window log of admissions, counted and
appended under an exclusive ``flock`` so no two processes (or threads) interleave.

Two things about pyrate-limiter 4.5 shape the configuration; both were measured with three
spawned processes acquiring as fast as they could against one file at 7/s:

* **Its blocking wait drifts.** After sleeping, ``Limiter`` re-puts the waiting item with
  ``item.timestamp += delay``: the time it *meant* to sleep, not the time that passed. Oversleep
  and waiting for the file lock make the stored stamp earlier than the real admission, so the
  entry leaves the window early and an eighth request slips into a real 1-second window
  (measured: 8 in one window, 7.3/s sustained, with ``buffer_ms=0``). :class:`_FreshClockBucket`
  re-reads the clock inside ``put``, which runs under the lock, so every stored stamp is the
  real admission time. (Its non-blocking ``try_acquire(blocking=False)`` is no way out: it
  passes ``False`` positionally to ``FileLock.acquire`` as the timeout, which filelock 4
  rejects with ``TypeError``.)
* **A margin for the way to the server.** A request reaches amoCRM a little after ``acquire``
  returns, and not always equally late (thread scheduling, the network). Admitting exactly N
  per 1.000 s leaves no room for that jitter, so the window is widened by
  :data:`WINDOW_MARGIN_MS`: at most N requests per (N/rps s + 50 ms), plus pyrate's 10 ms wait
  buffer. At 7/s that is 7 per 1.05 s, measured at 6.6 requests/s sustained (94 % of the
  limit) with at most 7 in any 1-second window and at least 1.05 s between a request and the
  seventh after it. A second, longer rate (say 66 per 10 s) was considered and left out: the
  server counts per second, and the widened window already keeps the sustained rate under it.

A process that configures a different rate for the same account shares the log and applies
its own rate to it: the strictest process is never exceeded by itself, and nobody exceeds
the loosest. Timestamps are wall-clock milliseconds (``time.time``), comparable between the
processes of one machine; machines sharing a limit need a shared store (design §6).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from pathlib import Path
from typing import Protocol

import httpx
from pyrate_limiter import Limiter, Rate, RateItem, SQLiteBucket

from . import settings

TABLE = "amocrm_requests"
WINDOW_MARGIN_MS = 50  # widens each window: room for jitter between acquire() and the server
WAIT_BUFFER_MS = 10  # pyrate's pause on top of a computed wait (its default, 50, costs 4 %)
ACQUIRE_NAME = "request"  # one bucket per file: every acquisition is one request


class RequestLimiter(Protocol):
    """Bounds the request rate to one account: ``acquire()`` blocks until a request may go."""

    def acquire(self) -> None:
        """Wait until one more request fits under the account's limit, and take its slot."""
        ...


class _FreshClockBucket(SQLiteBucket):
    """``SQLiteBucket`` stamping each item when it is counted, not when it started waiting.

    ``Limiter`` calls ``put`` with the lock held, both on the first try and after every
    sleep, so the stamp read here is the admission time however long the wait took (see the
    module docstring for the drift this removes).
    """

    def put(self, item: RateItem) -> bool:
        item.timestamp = self.now()
        return super().put(item)


def window_rate(requests_per_second: float, margin_ms: int = WINDOW_MARGIN_MS) -> Rate:
    """The sliding window enforcing ``requests_per_second``: ``N`` requests per ``N / rps``
    seconds plus ``margin_ms`` (``N`` is the whole part of the rate, at least 1)."""
    if not (requests_per_second > 0 and math.isfinite(requests_per_second)):
        raise ValueError(
            f"requests_per_second must be a positive number, got {requests_per_second}"
        )
    limit = max(1, math.floor(requests_per_second))
    return Rate(limit, math.ceil(1000 * limit / requests_per_second) + margin_ms)


class SQLiteRequestLimiter:
    """A :class:`RequestLimiter` on pyrate-limiter's SQLite bucket at ``path``, locked with a
    file lock (``<path>.lock``) so every process and thread opening ``path`` shares one limit.

    Thread-safe. Keep one per process and account (see :func:`account_limiter`): each
    instance runs pyrate's background thread that trims old entries.
    """

    def __init__(
        self, path: Path, requests_per_second: float, *, margin_ms: int = WINDOW_MARGIN_MS
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rate = window_rate(requests_per_second, margin_ms)
        self._bucket = _FreshClockBucket.init_from_file(
            [self.rate], table=TABLE, db_path=str(path), use_file_lock=True
        )
        self._limiter = Limiter(self._bucket, buffer_ms=WAIT_BUFFER_MS)

    def acquire(self) -> None:
        # Blocking with no timeout only returns False for a weight the rate can never admit;
        # ours is 1 and every rate admits at least 1.
        if not self._limiter.try_acquire(ACQUIRE_NAME):
            raise RuntimeError(f"rate {self.rate} can never admit a request")

    def close(self) -> None:
        """Stop the trimming thread and close the SQLite connection."""
        self._limiter.close()


def account_key(base_url: str) -> str:
    """A short, stable name for the account at ``base_url``: a hash of its origin only, so
    ``https://Acme.amocrm.ru/`` and ``https://acme.amocrm.ru`` share a limit and nothing
    secret (a token, a query string) can end up in a file name."""
    url = httpx.URL(base_url)
    if not url.scheme or not url.host:
        raise ValueError("the amoCRM base URL must be absolute, e.g. https://acme.amocrm.ru")
    port = f":{url.port}" if url.port else ""
    origin = f"{url.scheme.lower()}://{url.host.lower()}{port}"
    return hashlib.sha256(origin.encode()).hexdigest()[:16]


def limiter_path(base_url: str, data_dir: Path | None = None) -> Path:
    """``<data dir>/limits/amocrm-<account key>.sqlite3`` (data dir: ``MIGRATION_DATA_DIR``)."""
    root = data_dir if data_dir is not None else settings.data_dir()
    return root / "limits" / f"amocrm-{account_key(base_url)}.sqlite3"


_limiters: dict[tuple[int, Path, float], SQLiteRequestLimiter] = {}
_limiters_lock = threading.Lock()


def account_limiter(
    base_url: str, requests_per_second: float, *, data_dir: Path | None = None
) -> RequestLimiter:
    """The limiter of the amoCRM account at ``base_url``, shared with every other process
    using the same data directory; one instance per process, account and rate.

    The cache is keyed by process id too: a forked child must not reuse its parent's SQLite
    connection and lock, so it opens its own.
    """
    path = limiter_path(base_url, data_dir)
    key = (os.getpid(), path, float(requests_per_second))
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = SQLiteRequestLimiter(path, requests_per_second)
        return limiter
