"""The pre-migration report: what was found, what will happen, what it will cost.

The numbers are a table (``report.pre_migration``, ``sql/cleanse/pre_migration.sql``); this
module renders them as Markdown for the Dagster UI and ``<data dir>/reports/``. The request
estimate assumes the amoCRM limits of ``reference/amocrm_api.md``: at most 250 records per
write request and 7 requests per second for the account; leads are created with their
contacts and company embedded (no extra link request), contacts are linked to companies
with mass link requests, and the loader's setup reads the account, users, pipelines and
custom fields once.
"""

from __future__ import annotations

import math
from itertools import groupby

import duckdb

from ..sql import read_sql

BATCH_SIZE = 250
REQUESTS_PER_SECOND = 7.0
REQUESTS_SECTION = "amoCRM requests (estimate)"


def build_report(con: duckdb.DuckDBPyConnection, batch_size: int = BATCH_SIZE) -> int:
    """Create ``report.pre_migration``; returns the estimated number of amoCRM requests."""
    con.execute(read_sql("cleanse/pre_migration.sql"), [batch_size])
    return int(
        con.execute(
            "select coalesce(sum(value), 0) from report.pre_migration where section = ?",
            [REQUESTS_SECTION],
        ).fetchall()[0][0]
    )


def load_duration(requests: int, requests_per_second: float = REQUESTS_PER_SECOND) -> str:
    """How long ``requests`` take at the account's rate, in words (``2 h 05 min``)."""
    seconds = math.ceil(requests / requests_per_second)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def render_markdown(
    con: duckdb.DuckDBPyConnection,
    *,
    reference: str,
    requests_per_second: float = REQUESTS_PER_SECOND,
) -> str:
    """The report as Markdown: one table per section of ``report.pre_migration``, then the
    total request estimate and the load time it means."""
    rows = con.execute(
        "select section, item, value from report.pre_migration order by position"
    ).fetchall()
    lines = [
        "# Pre-migration report",
        "",
        f"Selection reference date: {reference}. Every number below is a row of "
        "`report.pre_migration`; every decision is in `clean.selection`, with its reason.",
    ]
    total = 0
    for section, items in groupby(rows, key=lambda row: row[0]):
        lines += ["", f"## {section}", "", "| item | count |", "|---|---:|"]
        for _, item, value in items:
            lines.append(f"| {item} | {value:,} |")
            if section == REQUESTS_SECTION:
                total += value
    lines += [
        "",
        f"**Total: {total:,} amoCRM requests, about {load_duration(total, requests_per_second)} "
        f"at {requests_per_second:g} requests/s** (batches of {BATCH_SIZE}; retries, "
        "look-ups of in-doubt writes and read-back verification come on top).",
    ]
    return "\n".join(lines) + "\n"
