"""The DuckDB file every stage reads and writes, and the metadata every table asset reports.

DuckDB is single-writer: while one process has the file open for writing, every other open,
even read-only, fails with a lock error. So nobody holds a connection across HTTP calls:
``connect()`` retries the open while another process holds the lock, and always closes in
``finally`` (dagster-duckdb closes only on success, which keeps the lock alive while a
traceback lives; see ``style.md``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from . import settings

log = logging.getLogger(__name__)

SCHEMAS = ("raw", "clean", "map", "plan", "ledger", "report")
LOCK_RETRY_FIRST = 0.01
LOCK_RETRY_MAX = 0.2
"""Seconds between tries to open a locked file, doubling from the first to the most. Loaders
hold the file for tens of milliseconds at a time, so a long sleep mostly wastes the account's
request budget (two partitions took turns with sleeps of up to 2 s); a try costs about 15 ms,
so polling a file a user keeps open for minutes costs under 10 % of one core."""


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "lock" in text.lower() and (
        "conflicting" in text.lower() or "could not set" in text.lower()
    )


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, wait_seconds: float = 120.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``path``, retrying while another process holds the write lock; close in ``finally``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = LOCK_RETRY_FIRST
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.Error as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                raise
            log.info("%s is locked by another process; retrying in %.2fs", path.name, delay)
            time.sleep(delay)
            delay = min(delay * 2, LOCK_RETRY_MAX)
    try:
        if not read_only:
            for schema in SCHEMAS:
                con.execute(f"create schema if not exists {schema}")
        yield con
    finally:
        con.close()


class Warehouse(dg.ConfigurableResource):
    """The migration's DuckDB file (``MIGRATION_DUCKDB_PATH``, default ``data/migration.duckdb``)."""

    path: str | None = None

    def file(self) -> Path:
        return Path(self.path).expanduser().resolve() if self.path else settings.duckdb_path()

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.file(), read_only=read_only) as con:
            yield con


def _markdown_preview(con: duckdb.DuckDBPyConnection, table: str, rows: int) -> str:
    relation = con.sql(f"select * from {table} limit {int(rows)}")
    columns = relation.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in relation.fetchall():
        cells = []
        for value in row:
            text = "" if value is None else str(value)
            text = text.replace("|", "\\|").replace("\n", " ")
            cells.append(text[:80] + ("…" if len(text) > 80 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_metadata(con: duckdb.DuckDBPyConnection, table: str, *, preview_rows: int = 10) -> dict:
    """Row count, column schema and a Markdown preview of ``table`` for the Dagster UI.

    ``table`` is one of our own qualified names (``schema.table``), never user input.
    """
    row_count = con.execute(f"select count(*) from {table}").fetchall()[0][0]
    columns = [
        dg.TableColumn(name=name, type=str(column_type))
        for name, column_type, *_ in con.sql(f"describe {table}").fetchall()
    ]
    return {
        "dagster/row_count": dg.MetadataValue.int(int(row_count)),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
        "dagster/table_name": dg.MetadataValue.text(table),
        "preview": dg.MetadataValue.md(_markdown_preview(con, table, preview_rows)),
    }


def read_rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()
) -> list[dict[str, object]]:
    """The result of ``sql`` as dicts by column name."""
    cursor = con.execute(sql, list(params))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
