"""The migration report: where every extracted record ended, and whether that adds up.

Tables (``report.*``, each a Dagster asset of group ``verify``):

* ``report.readback`` / ``report.mismatches``: what reading amoCRM back found (see
  :mod:`migration_pipeline.verify.readback`), written by :func:`write_readback`;
* ``report.outcomes``: one row per extracted record: migrated / merged / archived / failed /
  quarantined, with the reason for everything not migrated;
* ``report.migration``: per entity type, extracted = migrated + merged + archived + failed +
  quarantined, and whether it adds up.

:func:`render` turns them, with the load's cost from ``ledger.runs``, into the Markdown a
customer reads (in the UI and in ``<data dir>/migration_report.md``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import duckdb
import pyarrow as pa

from ..db import read_rows
from ..ledger import RUNS_SCHEMA, SCHEMA
from ..sql import read_sql
from .readback import ENTITIES, Mismatch, ReadBack

TOP_REASONS = 8  # reasons listed per entity type; the table report.outcomes has them all


def write_readback(con: duckdb.DuckDBPyConnection, found: ReadBack) -> None:
    """``report.readback`` (per kind) and ``report.mismatches`` (one row per difference)."""
    summary = pa.table(
        {
            "kind": list(ENTITIES),
            "checked": [found.checked[k] for k in ENTITIES],
            "missing": [found.missing[k] for k in ENTITIES],
            "mismatched": [found.mismatched[k] for k in ENTITIES],
        }
    )
    names = list(Mismatch.__dataclass_fields__)
    rows = [asdict(m) for m in found.mismatches]
    mismatches = pa.table(
        {name: [row[name] for row in rows] for name in names},
        schema=pa.schema(
            [(name, pa.int64() if name == "amo_id" else pa.string()) for name in names]
        ),
    )
    for table, data in (("readback", summary), ("mismatches", mismatches)):
        con.register("_report_rows", data)
        con.execute(f"create or replace table report.{table} as select * from _report_rows")
        con.unregister("_report_rows")


def build(con: duckdb.DuckDBPyConnection) -> None:
    """``report.outcomes`` and ``report.migration`` from the selection, the ledger and the
    quarantine."""
    con.execute(SCHEMA)  # a report before any load: nothing migrated yet, all still adds up
    con.execute(RUNS_SCHEMA)
    con.execute(read_sql("verify/outcomes.sql"))
    con.execute(read_sql("verify/migration.sql"))


def load_cost(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Requests, 429s, retries and time of every load run so far (``ledger.runs``)."""
    found = read_rows(
        con,
        """
        select count(*) as runs, count(distinct partition_key) as partitions,
            coalesce(sum(requests), 0) as requests, coalesce(sum(rate_limited), 0) as rate_limited,
            coalesce(sum(retries), 0) as retries, coalesce(sum(seconds), 0) as seconds
        from ledger.runs
        """,
    )
    return found[0]


def adds_up(con: duckdb.DuckDBPyConnection) -> list[str]:
    """What is wrong with the report: sums that do not add up, and read-back differences."""
    problems = [
        f"{r['entity']}: extracted {r['extracted']} ≠ migrated {r['migrated']} + merged "
        f"{r['merged']} + archived {r['archived']} + failed {r['failed']} + quarantined "
        f"{r['quarantined']}"
        for r in read_rows(con, "select * from report.migration where not adds_up")
    ]
    problems += [
        f"{r['kind']}: {r['missing']} of {r['checked']} not found in amoCRM, "
        f"{r['mismatched']} differ from the plan (see report.mismatches)"
        for r in read_rows(con, "select * from report.readback where missing > 0 or mismatched > 0")
    ]
    return problems


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render(con: duckdb.DuckDBPyConnection) -> str:
    """The report as Markdown."""
    totals = read_rows(con, "select * from report.migration order by entity")
    columns = ["extracted", "migrated", "merged", "archived", "failed", "quarantined"]
    problems = adds_up(con)
    cost = load_cost(con)
    parts = [
        "# Migration report: Pipedrive → amoCRM",
        "",
        "Every extracted record is accounted for: extracted = migrated + merged into a survivor"
        " + archived by the selection policy + failed + quarantined at extraction.",
        "",
        _table(
            ["entity", *columns, "adds up"],
            [
                [r["entity"], *(r[c] for c in columns), "yes" if r["adds_up"] else "**NO**"]
                for r in totals
            ],
        ),
        "",
        "## Read back from amoCRM",
        "",
        _table(
            ["kind", "checked", "not found", "differ from the plan"],
            [
                [r["kind"], r["checked"], r["missing"], r["mismatched"]]
                for r in read_rows(con, "select * from report.readback")
            ],
        ),
        "",
    ]
    mismatches = read_rows(con, "select * from report.mismatches order by all limit 20")
    if mismatches:
        parts += [
            "First differences (all of them: `report.mismatches`):",
            "",
            _table(
                ["kind", "Pipedrive key", "amoCRM id", "field", "expected", "actual"],
                [[m[n] for n in Mismatch.__dataclass_fields__] for m in mismatches],
            ),
            "",
        ]
    parts += [
        "## The load",
        "",
        f"{cost['runs']} runs over {cost['partitions']} partitions: {cost['requests']} requests, "
        f"{cost['rate_limited']} answered 429, {cost['retries']} retries, "
        f"{cost['seconds']:.0f} s of loading.",
        "",
        "## Not migrated, and why",
        "",
    ]
    reasons = read_rows(
        con,
        f"""
        select entity, outcome, regexp_replace(reason, '\\b[0-9][0-9-]*\\b', 'N', 'g') as reason,
            count(*) as records,
            row_number() over (partition by entity order by count(*) desc, 3) as rank
        from report.outcomes where outcome <> 'migrated'
        group by 1, 2, 3 qualify rank <= {TOP_REASONS}
        order by entity, records desc, reason
        """,
    )
    if reasons:
        parts.append(
            _table(
                ["entity", "outcome", "reason", "records"],
                [[r["entity"], r["outcome"], r["reason"], r["records"]] for r in reasons],
            )
        )
        parts.append(
            f"\nUp to {TOP_REASONS} reasons per entity, numbers shown as N; every record with its "
            "own reason is in "
            "`report.outcomes`, archived, merged and failed ones are also exported under `exports/archive/` in the data directory."
        )
    else:
        parts.append("Everything extracted was migrated.")
    left_out = read_rows(
        con,
        """
        select entity, reason, count(*) as n from plan.left_out_values
        group by all order by n desc, entity, reason limit 20
        """,
    )
    if left_out:
        parts += [
            "",
            "## Values left out of migrating records",
            "",
            "The records migrate; these custom field values could not go with them (every one, "
            "with its value: `plan.left_out_values`).",
            "",
            _table(
                ["entity", "reason", "values"],
                [[r["entity"], r["reason"], r["n"]] for r in left_out],
            ),
        ]
    parts += [
        "",
        "## Verdict",
        "",
        "All sums add up and amoCRM holds what the plan says."
        if not problems
        else "\n".join(f"- {p}" for p in problems),
        "",
    ]
    return "\n".join(parts)
