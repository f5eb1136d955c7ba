"""Apply a per-value Python library to one column: distinct values out of DuckDB as Arrow,
through the function, back in as an Arrow table that SQL joins to the rows.

Libraries such as ``phonenumbers`` and ``email-validator`` work on one value at a time; calling
them once per *distinct* value (not per row) and joining the answers back keeps the set-based
work in SQL. Values travel in chunks, as Arrow tables both ways, so memory stays bounded and
large columns are shared by worker processes (one per core). The functions are pure, so the
answer does not depend on how the work is split.

Workers are started with ``spawn`` (never ``fork``: the parent holds a DuckDB database), which
re-imports the caller's main module: a script calling this must guard its entry point with
``if __name__ == "__main__":`` (Dagster, pytest and ``python -m`` entry points are guarded).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial

import duckdb
import pyarrow as pa

Mapper = Callable[[Sequence[tuple]], list[tuple]]

CHUNK_ROWS = 25_000
PARALLEL_FROM = 4 * CHUNK_ROWS  # below this, starting worker processes costs more than it saves


def _workers() -> int:
    """One worker per core this process may run on (its CPU affinity, not the machine's)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 8))


class Workers:
    """Worker processes shared by the :func:`map_distinct` calls of one step, started on first
    need (a column too small to split never starts them) and stopped when the step ends."""

    def __init__(self) -> None:
        self._pool: Executor | None = None

    def pool(self) -> Executor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # never fork a process holding DuckDB
            self._pool = ProcessPoolExecutor(max_workers=_workers(), mp_context=context)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


@contextmanager
def workers() -> Iterator[Workers]:
    """Share worker processes between several :func:`map_distinct` calls."""
    shared = Workers()
    try:
        yield shared
    finally:
        shared.close()


def _map_chunk(mapper: Mapper, schema: pa.Schema, chunk: pa.Table) -> pa.Table:
    """One chunk of inputs (Arrow) → the mapper's rows as an Arrow table of ``schema``."""
    inputs = list(zip(*(column.to_pylist() for column in chunk.columns), strict=True))
    rows = mapper(inputs)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pa.Table.from_arrays(
        [pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def map_distinct(
    con: duckdb.DuckDBPyConnection,
    query: str,
    mapper: Mapper,
    schema: pa.Schema,
    table: str,
    shared: Workers | None = None,
) -> int:
    """Run ``query`` (distinct input tuples), map them with ``mapper`` (a module-level function
    from a list of input tuples to a list of ``schema`` rows, so worker processes can call it)
    and store the rows in the temporary table ``table`` (one of our constants). Large inputs
    are split over worker processes (``shared`` ones, else a pool of its own). Returns the
    number of distinct inputs."""
    inputs = con.sql(query).to_arrow_table()
    chunks = [inputs.slice(start, CHUNK_ROWS) for start in range(0, inputs.num_rows, CHUNK_ROWS)]
    work = partial(_map_chunk, mapper, schema)
    if inputs.num_rows < PARALLEL_FROM or _workers() == 1:
        results = [work(chunk) for chunk in chunks]
    elif shared is not None:
        results = list(shared.pool().map(work, chunks))
    else:
        with workers() as own:
            results = list(own.pool().map(work, chunks))
    mapped = pa.concat_tables(results) if results else schema.empty_table()
    con.register("_mapped_values", mapped)
    try:
        con.execute(f"create or replace temp table {table} as select * from _mapped_values")
    finally:
        con.unregister("_mapped_values")
    return inputs.num_rows
