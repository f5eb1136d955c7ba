"""Extract one raw table: page by page into a staging table, then one atomic swap.

Every page is written together with its checkpoint (the cursor or offset of the next page, or
the deals already done) in one DuckDB transaction, and no connection is held across an HTTP
call. So a run killed at any point resumes where it stopped, and a finished extraction becomes
visible at once: ``raw.<table>`` is replaced in the same transaction that drops the staging
table, so nobody ever reads a half-written table.

Typed columns are computed in SQL from the stored JSON. A value that does not cast keeps its
row (the raw copy is a backup) with the problem listed in ``_problems``; a record without a
usable key cannot be a row and goes to ``raw.quarantine`` with its reason, as do repeated
copies of one key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..clients.pipedrive import PipedriveClient
from ..db import connect
from .specs import PARENT, Column, RawSpec

log = logging.getLogger(__name__)

CHECKPOINTS_DDL = """
create table if not exists raw._checkpoints (
    tbl varchar not null,
    endpoint varchar not null,
    position varchar,
    finished boolean not null,
    pages integer not null,
    rows bigint not null,
    primary key (tbl, endpoint)
)
"""

QUARANTINE_DDL = """
create table if not exists raw.quarantine (
    tbl varchar not null,
    record_key varchar,
    reason varchar not null,
    record json
)
"""

Progress = Callable[[str], None]


@dataclass
class ExtractResult:
    table: str
    rows: int
    quarantined: int
    pages: int
    resumed: bool


def _staging(spec: RawSpec) -> str:
    return f"raw._staging_{spec.table}"


def _prepare(db: Path, spec: RawSpec) -> tuple[dict[str, tuple[str | None, bool]], int]:
    """Create staging and checkpoint tables if needed; return the checkpoints of this table
    (endpoint → (position, finished)) and the next staging sequence number."""
    with connect(db) as con:
        con.execute(CHECKPOINTS_DDL)
        con.execute(QUARANTINE_DDL)
        con.execute(
            f"create table if not exists {_staging(spec)} "
            "(seq bigint, source varchar, parent_id bigint, record varchar)"
        )
        rows = con.execute(
            "select endpoint, position, finished from raw._checkpoints where tbl = ?", [spec.table]
        ).fetchall()
        next_seq = con.execute(
            f"select coalesce(max(seq), -1) + 1 from {_staging(spec)}"
        ).fetchall()[0][0]
    return {endpoint: (position, finished) for endpoint, position, finished in rows}, int(next_seq)


def _write(
    db: Path,
    spec: RawSpec,
    seq: int,
    rows: list[tuple[str, int | None, dict[str, Any]]],
    checkpoints: list[tuple[str, str | None, bool]],
) -> int:
    """Append records and advance checkpoints in one transaction; returns the next seq."""
    table = pa.table(
        {
            "seq": pa.array(range(seq, seq + len(rows)), pa.int64()),
            "source": pa.array([source for source, _, _ in rows], pa.string()),
            "parent_id": pa.array([parent for _, parent, _ in rows], pa.int64()),
            "record": pa.array(
                [json.dumps(record, ensure_ascii=False, sort_keys=True) for _, _, record in rows],
                pa.string(),
            ),
        }
    )
    with connect(db) as con:
        con.execute("begin")
        con.register("page", table)
        con.execute(f"insert into {_staging(spec)} select * from page")
        con.unregister("page")
        for endpoint, position, finished in checkpoints:
            con.execute(
                """
                insert into raw._checkpoints values (?, ?, ?, ?, 1, ?)
                on conflict (tbl, endpoint) do update set
                    position = excluded.position, finished = excluded.finished,
                    pages = raw._checkpoints.pages + 1,
                    rows = raw._checkpoints.rows + excluded.rows
                """,
                [spec.table, endpoint, position, finished, len(rows)],
            )
        con.execute("commit")
    return seq + len(rows)


def _pages(
    client: PipedriveClient, api: str, path: str, params: dict[str, str], position: str | None
) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    """(records, position of the next page or None at the end) for one list endpoint."""
    if api == "flat":
        data = client.get_v1(path, params)
        yield (data if isinstance(data, list) else [] if data is None else [data]), None
    elif api == "v2":
        for page in client.iter_v2(path, params, start_cursor=position):
            yield page.records, page.next_cursor
    else:
        start = int(position) if position else 0
        for page in client.iter_v1(path, params, start=start):
            yield page.records, None if page.next_start is None else str(page.next_start)


def _extract_lists(
    client: PipedriveClient, db: Path, spec: RawSpec, progress: Progress
) -> tuple[int, bool]:
    checkpoints, seq = _prepare(db, spec)
    resumed = bool(checkpoints)
    pages = 0
    for endpoint in spec.endpoints:
        key = endpoint.path
        position, finished = checkpoints.get(key, (None, False))
        if finished:
            continue
        if position:
            progress(f"{spec.table}: resuming {endpoint.path} from a checkpoint")
        rows_so_far = 0
        for records, next_position in _pages(
            client, endpoint.api, endpoint.path, endpoint.params, position
        ):
            rows = [(endpoint.source, None, record) for record in records]
            seq = _write(db, spec, seq, rows, [(key, next_position, next_position is None)])
            pages += 1
            rows_so_far += len(records)
            if pages % 20 == 0:
                progress(f"{spec.table}: {rows_so_far} records from {endpoint.path} so far")
    return pages, resumed


def _deal_pages(client: PipedriveClient, spec: RawSpec, deal_id: int) -> list[dict[str, Any]]:
    per_deal = spec.per_deal
    assert per_deal is not None
    path = per_deal.path_template.format(id=deal_id)
    records: list[dict[str, Any]] = []
    for page_records, _ in _pages(client, per_deal.api, path, dict(per_deal.params), None):
        records.extend(page_records)
    return records


def _extract_per_deal(
    client: PipedriveClient,
    db: Path,
    spec: RawSpec,
    progress: Progress,
    *,
    workers: int,
    flush_every: int,
) -> tuple[int, bool]:
    per_deal = spec.per_deal
    assert per_deal is not None
    checkpoints, seq = _prepare(db, spec)
    resumed = bool(checkpoints)
    with connect(db, read_only=False) as con:
        deal_ids = [
            row[0]
            for row in con.execute(
                f"select id from raw.deals where coalesce({per_deal.count_column}, 0) > 0 order by id"
            ).fetchall()
        ]
    todo = [
        deal_id for deal_id in deal_ids if not checkpoints.get(f"deal:{deal_id}", (None, False))[1]
    ]
    if resumed:
        progress(
            f"{spec.table}: resuming, {len(deal_ids) - len(todo)} of {len(deal_ids)} deals already done"
        )
    buffer: list[tuple[str, int | None, dict[str, Any]]] = []
    done: list[tuple[str, str | None, bool]] = []
    last_flush = time.monotonic()
    finished = 0
    with ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=f"extract-{spec.table}"
    ) as pool:
        for deal_id, records in zip(
            todo, pool.map(lambda d: _deal_pages(client, spec, d), todo), strict=True
        ):
            buffer.extend(("deal", deal_id, record) for record in records)
            done.append((f"deal:{deal_id}", None, True))
            finished += 1
            if len(done) >= flush_every or time.monotonic() - last_flush > 5:
                seq = _write(db, spec, seq, buffer, done)
                buffer, done, last_flush = [], [], time.monotonic()
                progress(f"{spec.table}: {finished} of {len(todo)} deals fetched")
    if done:
        seq = _write(db, spec, seq, buffer, done)
    return len(todo), resumed


def _column_sql(column: Column) -> tuple[str, str]:
    """(typed expression, problem expression) for one column over staging alias ``s``."""
    if column.paths == (PARENT,):
        return "s.parent_id", "null"
    if column.type == "JSON":
        extracted = ", ".join(f"json_extract(s.record, '{path}')" for path in column.paths)
        return f"coalesce({extracted})::JSON", "null"
    text = (
        "coalesce("
        + ", ".join(f"nullif(json_extract_string(s.record, '{path}'), '')" for path in column.paths)
        + ")"
    )
    typed = f"try_cast({text} as {column.type})"
    problem = (
        f"case when {text} is not null and {typed} is null "
        f"then '{column.name}: expected {column.type.lower()}, got ' || left({text}, 40) end"
    )
    return typed, problem


def _finalize(db: Path, spec: RawSpec) -> tuple[int, int]:
    """Swap the staging rows into ``raw.<table>`` atomically; returns (rows, quarantined)."""
    selects, problems = [], []
    for column in spec.columns:
        typed, problem = _column_sql(column)
        selects.append(f'{typed} as "{column.name}"')
        if problem != "null":
            problems.append(problem)
    key_cols = ", ".join(f'"{name}"' for name in spec.key)
    key_text = " || '|' || ".join(f"coalesce(\"{name}\"::varchar, '')" for name in spec.key)
    key_null = " or ".join(f'"{name}" is null' for name in spec.key)
    typed_sql = f"""
        select s.seq, s.source, {", ".join(selects)},
               list_filter([{", ".join(problems) or "null"}], lambda x: x is not null) as _problems,
               s.record::JSON as record
        from {_staging(spec)} s
    """
    ranked_sql = f"""
        select *, row_number() over (partition by {key_cols} order by seq) as _copy
        from ({typed_sql}) where not ({key_null})
    """
    with connect(db) as con:
        con.execute("begin")
        con.execute(f"create or replace temp table _ranked as {ranked_sql}")
        con.execute(
            f"create or replace table {spec.qualified} as "
            f"select * exclude (seq, _copy) from _ranked where _copy = 1 order by {key_cols}"
        )
        con.execute("delete from raw.quarantine where tbl = ?", [spec.table])
        con.execute(
            f"""
            insert into raw.quarantine
            select ?, null, 'missing or invalid key ({", ".join(spec.key)})', record
            from ({typed_sql}) where {key_null}
            """,
            [spec.table],
        )
        con.execute(
            f"""
            insert into raw.quarantine
            select ?, {key_text}, 'repeated key: copy ' || _copy || ' of this record was ignored '
                   || '(the first copy is kept)', record
            from _ranked where _copy > 1 order by seq
            """,
            [spec.table],
        )
        con.execute(f"drop table {_staging(spec)}")
        con.execute("delete from raw._checkpoints where tbl = ?", [spec.table])
        con.execute("drop table _ranked")
        con.execute("commit")
        rows = con.execute(f"select count(*) from {spec.qualified}").fetchall()[0][0]
        quarantined = con.execute(
            "select count(*) from raw.quarantine where tbl = ?", [spec.table]
        ).fetchall()[0][0]
    return int(rows), int(quarantined)


def extract(
    client: PipedriveClient,
    db: Path,
    spec: RawSpec,
    *,
    progress: Progress = log.info,
    workers: int = 4,
    flush_every: int = 200,
) -> ExtractResult:
    """Extract ``spec`` into ``raw.<table>`` of the DuckDB file ``db``, resuming from a
    checkpoint left by an interrupted run."""
    if spec.per_deal is not None:
        pages, resumed = _extract_per_deal(
            client, db, spec, progress, workers=workers, flush_every=flush_every
        )
    else:
        pages, resumed = _extract_lists(client, db, spec, progress)
    rows, quarantined = _finalize(db, spec)
    return ExtractResult(spec.table, rows, quarantined, pages, resumed)
