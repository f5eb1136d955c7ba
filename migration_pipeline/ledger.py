"""The ledger: what the migration created in amoCRM, recorded so that nothing is created twice.

amoCRM has no idempotency key, so exactly-once is ours to keep (design invariant 1). For every
source entity (kind + source key, e.g. ``contact`` / ``1234``) the ledger holds one row:

=========== =========================================================================
state       meaning
=========== =========================================================================
claimed     a loader took it and is about to send it (intent recorded *before* the send)
in_doubt    a create was sent and its outcome is unknown (timeout, 5xx, lost answer)
created     it exists in amoCRM as ``amo_id``
failed      amoCRM rejected it (validation); ``error`` says why; a re-run tries again
=========== =========================================================================

A claim is the only way to send, and the table's primary key makes a claim exclusive across
processes. A ``claimed`` row whose lease ran out (its loader died mid-send) and every
``in_doubt`` row are *reconciled* before anything is sent again: the caller looks the entity
up in amoCRM by its Pipedrive id and records it as created if it is there.

DuckDB is single-writer, so every method opens the file, runs one short transaction and
closes it; no connection is held while the caller talks to amoCRM (invariant 5). Processes
take turns through the file lock (``db.connect`` waits for it); within a process only one
thread writes the ledger. This is the
one small interface the design asks for (§6): another implementation (a server database) can
take its place when several machines load at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .db import connect

SCHEMA = """
create table if not exists ledger.entities (
    kind varchar not null,
    source_key varchar not null,
    state varchar not null,
    amo_id bigint,
    partition_key varchar,
    claimant varchar,
    claimed_at double,
    attempts integer not null default 0,
    error varchar,
    updated_at timestamptz not null default now(),
    primary key (kind, source_key)
)
"""
RUNS_SCHEMA = """
create table if not exists ledger.runs (
    run_id varchar not null,
    partition_key varchar not null,
    started_at double not null,
    seconds double not null,
    requests integer not null,
    rate_limited integer not null,
    retries integer not null,
    in_doubt integer not null,
    failures integer -- deals or records not fully loaded; null: the run stopped on an error
)
"""


@dataclass
class Claim:
    """What a claim found, per key.

    ``done``: already created (key → amoCRM id). ``mine``: claimed now and known never to have
    been sent: send them. ``in_doubt``: claimed now, but an earlier attempt may have landed:
    look them up before sending. ``busy``: another live loader holds them: wait.
    """

    done: dict[str, int] = field(default_factory=dict)
    mine: list[str] = field(default_factory=list)
    in_doubt: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)


class Ledger(Protocol):
    def claim(
        self, kind: str, keys: Iterable[str], *, claimant: str, partition_key: str
    ) -> Claim: ...

    def created(self, kind: str, ids: Mapping[str, int]) -> None: ...

    def failed(self, kind: str, errors: Mapping[str, str]) -> None: ...

    def in_doubt(self, kind: str, keys: Iterable[str]) -> None: ...

    def release(self, kind: str, keys: Iterable[str], *, claimant: str) -> None: ...


class DuckDBLedger:
    """The ledger as a table ``ledger.entities`` in the migration's DuckDB file."""

    def __init__(self, path: Path, *, lease_seconds: float = 120.0) -> None:
        self.path = path
        self.lease_seconds = lease_seconds
        with connect(self.path) as con:
            con.execute(SCHEMA)
            con.execute(RUNS_SCHEMA)

    def claim(self, kind: str, keys: Iterable[str], *, claimant: str, partition_key: str) -> Claim:
        wanted = list(dict.fromkeys(keys))
        result = Claim()
        if not wanted:
            return result
        now = time.time()
        with connect(self.path) as con:
            con.execute("begin")
            rows = {
                key: (state, amo_id, holder, claimed_at)
                for key, state, amo_id, holder, claimed_at in con.execute(
                    "select source_key, state, amo_id, claimant, claimed_at from ledger.entities "
                    "where kind = ? and source_key in (select unnest(?::varchar[]))",
                    [kind, wanted],
                ).fetchall()
            }
            take: list[str] = []
            for key in wanted:
                state, amo_id, holder, claimed_at = rows.get(key, (None, None, None, None))
                if state == "created":
                    result.done[key] = int(amo_id)
                elif state in (None, "failed"):
                    result.mine.append(key)
                    take.append(key)
                elif state == "in_doubt" or holder == claimant:
                    # Ours from an attempt that did not finish, or anyone's unknown outcome.
                    result.in_doubt.append(key)
                    take.append(key)
                elif claimed_at is not None and now - claimed_at > self.lease_seconds:
                    result.in_doubt.append(key)  # its loader died mid-send
                    take.append(key)
                else:
                    result.busy.append(key)
            if take:
                con.execute(
                    """
                    insert into ledger.entities (kind, source_key, state, partition_key, claimant, claimed_at, attempts)
                    select ?, unnest(?::varchar[]), 'claimed', ?, ?, ?, 1
                    on conflict (kind, source_key) do update set
                        state = 'claimed', claimant = excluded.claimant,
                        claimed_at = excluded.claimed_at, partition_key = excluded.partition_key,
                        attempts = ledger.entities.attempts + 1, error = null, updated_at = now()
                    """,
                    [kind, take, partition_key, claimant, now],
                )
            con.execute("commit")
        return result

    # State changes are upserts on the key: DuckDB applies them in one pass, where an UPDATE
    # of a list of keys rewrites the primary-key index row by row (200× slower here).
    def created(self, kind: str, ids: Mapping[str, int]) -> None:
        self._upsert(kind, list(ids), "created", amo_ids=[int(i) for i in ids.values()])

    def failed(self, kind: str, errors: Mapping[str, str]) -> None:
        self._upsert(kind, list(errors), "failed", errors=list(errors.values()))

    def in_doubt(self, kind: str, keys: Iterable[str]) -> None:
        self._upsert(kind, list(keys), "in_doubt")

    def _upsert(
        self,
        kind: str,
        keys: list[str],
        state: str,
        *,
        amo_ids: list[int] | None = None,
        errors: list[str] | None = None,
    ) -> None:
        if not keys:
            return
        keep = "ledger.entities.amo_id" if amo_ids is None else "excluded.amo_id"
        with connect(self.path) as con:
            con.execute(
                f"""
                insert into ledger.entities (kind, source_key, state, amo_id, error)
                select ?, unnest(?::varchar[]), ?, unnest(?::bigint[]), unnest(?::varchar[])
                on conflict (kind, source_key) do update set
                    state = excluded.state, amo_id = {keep}, error = excluded.error,
                    claimant = case when excluded.state = 'failed' then null
                                    else ledger.entities.claimant end,
                    updated_at = now()
                """,
                [kind, keys, state, amo_ids or [None] * len(keys), errors or [None] * len(keys)],
            )

    def release(self, kind: str, keys: Iterable[str], *, claimant: str) -> None:
        """Give back claims that were never sent (so another loader need not wait a lease)."""
        keys = list(keys)
        if not keys:
            return
        with connect(self.path) as con:
            con.execute(
                "delete from ledger.entities where kind = ? and claimant = ? and state = 'claimed' "
                "and source_key in (select unnest(?::varchar[]))",
                [kind, claimant, keys],
            )


@dataclass(frozen=True)
class RunRecord:
    """One load run of one partition, for the report: what it cost and how it ended."""

    run_id: str
    partition_key: str
    started_at: float
    seconds: float
    requests: int
    rate_limited: int
    retries: int
    in_doubt: int
    failures: int | None


def record_run(path: Path, run: RunRecord) -> None:
    """Append ``run`` to ``ledger.runs`` (the report sums requests, 429s and time from it)."""
    with connect(path) as con:
        con.execute(RUNS_SCHEMA)
        con.execute(
            "insert into ledger.runs values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [getattr(run, name) for name in RunRecord.__dataclass_fields__],
        )
