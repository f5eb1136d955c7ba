"""What migrates: every extracted record gets one decision with its reason.

The rules come from :class:`~migration_pipeline.config.SelectionConfig` (the vendor's
guidance: open deals always, closed ones by recency, contacts when needed, activities and
notes of what migrates) and are written to ``clean.selection_rules``; the decisions to
``clean.selection`` (``sql/cleanse/selected_*.sql``, one temporary table per entity, in
dependency order: persons are needed by deals, activities follow their parents).

Decisions: ``migrate``; ``archive`` (by policy or because the record is deleted); ``merged``
(into a survivor, named in ``merged_into``); ``failed`` (an error to fix, e.g. an unknown
currency; records attached to a failed deal fail with it). What does not migrate is exported
for the customer (:func:`export_archive`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..config import SelectionConfig, Window
from ..extract.specs import SPEC_BY_TABLE
from ..sql import read_sql

DECISIONS = ("migrate", "archive", "merged", "failed")

# Raw table → SQL for its record id in clean.selection (followers have no id of their own).
RECORD_IDS: dict[str, str] = {
    "deals": "id::VARCHAR",
    "leads": "id",
    "persons": "id::VARCHAR",
    "organizations": "id::VARCHAR",
    "activities": "id::VARCHAR",
    "notes": "id::VARCHAR",
    "deal_participants": "id::VARCHAR",
    "deal_followers": "deal_id::VARCHAR || ':' || user_id::VARCHAR",
    "mail_messages": "id::VARCHAR",
}
ENTITIES = tuple(RECORD_IDS)

# The order the per-entity selections are built in: each reads the ones before it.
_STEPS = (
    "selected_deals",
    "selected_leads",
    "selected_persons",
    "selected_organizations",
    "selected_parents",
    "selected_activities",
    "selected_notes",
    "selected_deal_participants",
    "selected_deal_followers",
    "selected_mail_messages",
)


def _window(window: Window) -> list[str | int | None]:
    return [window.policy, window.months]


def rule_parameters(config: SelectionConfig) -> list[object]:
    """The parameters of ``selection_rules.sql``, in its order."""
    return [
        config.reference_date,
        *_window(config.deals.won),
        *_window(config.deals.lost),
        *_window(config.deals.archived),
        *_window(config.leads.archived),
        config.persons.policy,
        config.organizations.policy,
        *_window(config.activities.done),
        config.notes.policy,
        config.mail_messages.policy,
    ]


def build_selection_rules(con: duckdb.DuckDBPyConnection, config: SelectionConfig) -> str:
    """Create ``clean.selection_rules``; returns the reference date and where it came from."""
    con.execute(read_sql("cleanse/selection_rules.sql"), rule_parameters(config))
    reference, source = con.execute(
        "select reference_date, reference_date_source from clean.selection_rules"
    ).fetchall()[0]
    return f"{reference} ({source})"


def build_selection(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Create ``clean.selection`` from the clean tables and ``clean.selection_rules``;
    returns the number of records per decision."""
    con.execute(read_sql("cleanse/selection_macros.sql"))
    for step in _STEPS:
        con.execute(read_sql(f"cleanse/{step}.sql"))
    con.execute(read_sql("cleanse/selection.sql"))
    counts = dict(
        con.execute("select decision, count(*) from clean.selection group by all").fetchall()
    )
    return {decision: int(counts.get(decision, 0)) for decision in DECISIONS}


def unaccounted(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Per entity: raw records without exactly one decision, plus decisions without a raw
    record or without a reason (all must be 0: nothing lost, nothing silent)."""
    out = {}
    for entity, record_id in RECORD_IDS.items():
        out[entity] = con.execute(
            f"""
            select count(*) from (
                select r.record_id, count(s.record_id) as decisions,
                    count(*) filter (where s.reason is null or s.decision not in ?) as bad
                from (select {record_id} as record_id from raw.{entity}) r
                full join (select * from clean.selection where entity = ?) s
                    on s.record_id = r.record_id
                group by r.record_id
            )
            where record_id is null or decisions <> 1 or bad > 0
            """,
            [list(DECISIONS), entity],
        ).fetchall()[0][0]
    return out


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def export_archive(con: duckdb.DuckDBPyConnection, directory: Path) -> int:
    """Write what does not migrate, per entity, to ``directory/<entity>.parquet`` and
    ``.csv``: decision, reason and survivor first, then the raw record's typed columns; the
    Parquet file also keeps the original API record (JSON), the complete backup, which the
    CSV leaves out so it opens in a spreadsheet. Every entity gets its files, possibly empty.
    Then create ``clean.archive_exports`` (one row per entity: what was written); returns the
    number of records exported."""
    directory.mkdir(parents=True, exist_ok=True)
    for entity, record_id in RECORD_IDS.items():
        order = ", ".join(f"r.{column}" for column in SPEC_BY_TABLE[entity].key)
        for columns, path, options in (
            ("r.*", directory / f"{entity}.parquet", "format parquet"),
            ("r.* exclude (record)", directory / f"{entity}.csv", "format csv, header"),
        ):
            con.execute(
                f"""
                copy (
                    select s.decision, s.reason, s.merged_into, {columns}
                    from raw.{entity} r
                    join clean.selection s
                        on s.entity = '{entity}' and s.record_id = {record_id}
                    where s.decision <> 'migrate'
                    order by {order}
                ) to {_quoted(path)} ({options})
                """
            )
    con.execute(read_sql("cleanse/archive_exports.sql"), [list(ENTITIES)])
    [(exported,)] = con.execute("select sum(records) from clean.archive_exports").fetchall()
    return int(exported)
