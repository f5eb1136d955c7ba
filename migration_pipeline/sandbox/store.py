"""SQLite state shared by every process that uses one sandbox (one data directory).

SQLite, not DuckDB: many processes write small transactions at once (every request of every
Dagster run process goes through here), which SQLite's WAL mode and file locks handle and
DuckDB's single-writer file does not.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_db(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), WAL, 30 s busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    deadline = time.monotonic() + 30.0
    while True:  # switching a new file to WAL ignores the busy timeout; retry while locked
        try:
            con.execute("pragma journal_mode=wal")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    con.execute("pragma synchronous=normal")
    con.execute("pragma busy_timeout=30000")
    return con


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front, so two processes never
    interleave a read-check-write (the limiter's count-then-insert relies on it)."""
    con.execute("begin immediate")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


LIMITER_SCHEMA = """
create table if not exists limiter_hits (
    bucket text not null,
    at real not null
);
create index if not exists limiter_hits_bucket_at on limiter_hits(bucket, at);
create table if not exists request_log (
    side text not null,
    at real not null,
    method text not null,
    path text not null,
    status integer not null
);
create index if not exists request_log_side_at on request_log(side, at);
create table if not exists fault_log (
    side text not null,
    kind text not null,
    at real not null,
    method text not null,
    path text not null
);
"""


PRUNE_BEHIND = 60.0  # seconds behind a window after which hits are deleted


class SlidingWindow:
    """At most ``limit`` accepted hits per ``window`` seconds for a bucket, across processes.

    Only accepted hits are recorded: a refused request does not push the window further.
    """

    def __init__(self, con: sqlite3.Connection, *, limit: int, window: float) -> None:
        self.con = con
        self.limit = limit
        self.window = window

    def hit(self, bucket: str, now: float | None = None) -> tuple[bool, int, float]:
        """Try to take one slot. Returns (accepted, remaining after this hit, seconds until the
        oldest hit in the window expires).

        A hit may be stamped with its arrival time and checked after later arrivals (threads
        and processes take turns on the state's lock), so the check is exact rather than
        "the last second before it": the hit is accepted when no ``window``-long span that
        contains it would then hold more than ``limit`` hits, counting hits on both sides.
        That is the documented limit itself; counting later hits as if they were earlier
        would refuse requests the real server, which sees them in order, accepts."""
        with transaction(self.con) as con:
            now = time.time() if now is None else now
            start = now - self.window
            # Prune only far behind the window, so a late check still sees every hit a later
            # arrival already counted.
            con.execute(
                "delete from limiter_hits where bucket = ? and at <= ?",
                (bucket, start - PRUNE_BEHIND),
            )
            near = [
                at
                for (at,) in con.execute(
                    "select at from limiter_hits where bucket = ? and at > ? and at < ? "
                    "order by at",
                    (bucket, start, now + self.window),
                ).fetchall()
            ]
            # Spans [x, x + window) containing `now` have x in (start, now]; a span's count
            # only drops as x passes a hit, so the busiest is at x = a hit in that range, just
            # after `start`, or at `now` itself.
            candidates = [math.nextafter(start, math.inf), now]
            used = max(
                sum(1 for at in near if x <= at < x + self.window)
                for x in [*candidates, *(at for at in near if at <= now)]
            )
            oldest = min((at for at in near if at <= now), default=None)
            reset = (oldest + self.window - now) if oldest is not None else self.window
            if used >= self.limit:
                return False, 0, max(reset, 0.0)
            con.execute("insert into limiter_hits values (?, ?)", (bucket, now))
            return True, self.limit - used - 1, max(reset, 0.0)


def log_request(con: sqlite3.Connection, side: str, method: str, path: str, status: int) -> None:
    con.execute(
        "insert into request_log values (?, ?, ?, ?, ?)", (side, time.time(), method, path, status)
    )


def log_fault(con: sqlite3.Connection, side: str, kind: str, method: str, path: str) -> None:
    con.execute(
        "insert into fault_log values (?, ?, ?, ?, ?)", (side, kind, time.time(), method, path)
    )


def max_requests_in_window(
    con: sqlite3.Connection,
    side: str,
    window: float = 1.0,
    *,
    accepted_only: bool = True,
    since: float | None = None,
) -> int:
    """The largest number of (accepted) requests the server saw in any ``window`` seconds
    (counting only those at or after ``since``, when given)."""
    status_filter = "and status not in (429, 403)" if accepted_only else ""
    times = [
        row[0]
        for row in con.execute(
            f"select at from request_log where side = ? and at >= ? {status_filter} order by at",
            (side, since or 0.0),
        )
    ]
    best, lo = 0, 0
    for hi, at in enumerate(times):
        while at - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
