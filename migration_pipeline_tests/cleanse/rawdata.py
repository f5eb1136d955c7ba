"""Hand-made raw tables for cleansing tests: records in the API's shape, typed columns as the
extract specs define them, without a round trip through the sandbox.

Every raw table of :data:`SPECS` is created (empty unless records are given), with the same
columns the extractor writes: ``source``, the spec's typed columns, ``_problems`` and
``record``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from migration_pipeline.extract.specs import PARENT, SPECS, RawSpec


def _lookup(record: dict[str, Any], path: str) -> Any:
    if path == PARENT:
        return record.get("deal_id")
    value: Any = record
    for part in path.removeprefix("$.").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _value(record: dict[str, Any], paths: tuple[str, ...]) -> Any:
    for path in paths:
        value = _lookup(record, path)
        if value is not None and value != "":
            return value
    return None


def _create(con: duckdb.DuckDBPyConnection, spec: RawSpec, records: list[dict[str, Any]]) -> None:
    columns = ['"source" VARCHAR'] + [f'"{c.name}" {c.type}' for c in spec.columns]
    columns += ['"_problems" VARCHAR[]', '"record" JSON']
    con.execute(f"create or replace table {spec.qualified} ({', '.join(columns)})")
    if not records:
        return
    data: dict[str, list[Any]] = {"source": [r.get("_source", "list") for r in records]}
    for column in spec.columns:
        values = [_value(r, column.paths) for r in records]
        if column.type == "JSON":
            values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
        else:
            values = [None if v is None else str(v) for v in values]
        data[column.name] = values
    data["record"] = [
        json.dumps({k: v for k, v in r.items() if k != "_source"}, ensure_ascii=False)
        for r in records
    ]
    con.register("_rows", pa.table({name: pa.array(v, pa.string()) for name, v in data.items()}))
    casts = ", ".join(
        ['"source"']
        + [f'try_cast("{c.name}" as {c.type}) as "{c.name}"' for c in spec.columns]
        + ["[]::VARCHAR[] as _problems", "record::JSON as record"]
    )
    con.execute(f"insert into {spec.qualified} select {casts} from _rows")
    con.unregister("_rows")


def load_raw(db: Path, entities: dict[str, list[dict[str, Any]]]) -> Path:
    """Create every raw table in ``db`` from ``entities`` (raw table name → records)."""
    unknown = set(entities) - {spec.table for spec in SPECS}
    if unknown:
        raise KeyError(f"no raw table named {sorted(unknown)}")
    with duckdb.connect(str(db)) as con:
        con.execute("create schema if not exists raw")
        for spec in SPECS:
            _create(con, spec, entities.get(spec.table, []))
    return db
