"""Group ``cleansed``: raw Pipedrive tables → ``clean.*`` and the pre-migration report.

Everything happens in DuckDB (the SQL of ``sql/cleanse/``, the functions of
:mod:`migration_pipeline.cleanse`); these assets only order the steps, read the config
(:func:`migration_pipeline.config.load_config`, at run time) and report each table. The
order: e-mails → phones (e-mail domains hint at a number's country) → organization
duplicates → person duplicates (colleagues are matched within the surviving organization) →
re-pointed deals, leads, activities, notes, participants → money → selection → archive
exports → report.

No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation of an
asset function by identity, and a postponed (string) annotation fails that check.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from migration_pipeline import settings
from migration_pipeline.cleanse import currency, dedup, report, selection
from migration_pipeline.cleanse.emails import build_emails
from migration_pipeline.cleanse.phones import build_phones
from migration_pipeline.config import ConfigError, MigrationConfig, config_path, load_config
from migration_pipeline.db import Warehouse, table_metadata

from . import checks

GROUP = "cleansed"
KINDS = {"duckdb"}


def raw(*tables: str) -> list[dg.AssetKey]:
    """The asset keys of raw (extracted) tables."""
    return [dg.AssetKey(["raw", table]) for table in tables]


def clean(*tables: str) -> list[dg.AssetKey]:
    """The asset keys of clean tables."""
    return [dg.AssetKey(["clean", table]) for table in tables]


def _config() -> MigrationConfig:
    try:
        return load_config()
    except ConfigError as exc:
        raise dg.Failure(description=str(exc)) from None


@contextmanager
def _connect(warehouse: Warehouse) -> Iterator[duckdb.DuckDBPyConnection]:
    """A write connection to the warehouse, DuckDB's memory capped as the config says (the
    setting is validated, so it is safe to put in the statement)."""
    limit = _config().warehouse.memory_limit
    with warehouse.connect() as con:
        con.execute(f"set memory_limit = '{limit}'")
        yield con


def _counts(con: duckdb.DuckDBPyConnection, query: str) -> dict[str, int]:
    return {str(key): int(value) for key, value in con.execute(query).fetchall()}


@dg.asset(key=["clean", "emails"], group_name=GROUP, kinds=KINDS, deps=raw("persons"))
def clean_emails(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per e-mail address written in a person's e-mail entries (a field holding
    several addresses gives several rows): validated with email-validator (offline),
    normalised (trimmed, domain lower-cased), typed with amoCRM's EMAIL enum code (WORK, PRIV,
    OTHER), flagged when the domain is a free-mail one. Invalid addresses stay, with their
    problem and, when a mechanical repair fixes them, a suggestion used only for matching."""
    config = _config()
    with _connect(warehouse) as con:
        distinct = build_emails(con, config.dedup.extra_free_mail_domains)
        problems = _counts(
            con, "select coalesce(problem, 'valid'), count(*) from clean.emails group by all"
        )
        metadata = table_metadata(con, "clean.emails")
    context.log.info("clean.emails: %s", problems)
    return dg.MaterializeResult(
        metadata=metadata | {"distinct_fields_parsed": distinct, "problems": problems}
    )


@dg.asset(
    key=["clean", "phones"],
    group_name=GROUP,
    kinds=KINDS,
    deps=raw("persons", "organizations") + clean("emails"),
)
def clean_phones(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per phone entry of a person: the number in E.164 when it can be read, the
    original value beside it, the region it was read in and why (the person's or its
    organization's address, its e-mail domain, the configured default or a fallback), the
    amoCRM PHONE enum code (WORK, WORKDD, MOB, FAX, HOME, OTHER) and one problem code
    (invalid, possible_only, too_short, extension_dropped, empty, …)."""
    config = _config()
    with _connect(warehouse) as con:
        parsed = build_phones(con, config.phones)
        problems = _counts(
            con, "select coalesce(problem, 'valid'), count(*) from clean.phones group by all"
        )
        sources = _counts(con, "select region_source, count(*) from clean.phones group by all")
        metadata = table_metadata(con, "clean.phones")
    context.log.info("clean.phones: %s", problems)
    return dg.MaterializeResult(
        metadata=metadata | parsed | {"problems": problems, "region_sources": sources}
    )


_ENTITY_DEPS = {
    dedup.ORGANIZATION: raw("organizations", "persons", "organization_fields") + clean("emails"),
    dedup.PERSON: raw("persons") + clean("phones", "emails", "organization_duplicates"),
}
_PROFILE_DEPS = raw("persons", "organizations", "deals", "leads", "activities", "notes")
_PROFILE_DEPS += raw("deal_participants") + clean("phones", "emails")


def build_dedup_assets(entity: str) -> list[dg.AssetsDefinition]:
    """The four assets of one entity's duplicate detection: pairs, duplicates, review and
    the entity's clean table (``clean.persons`` / ``clean.organizations``)."""
    plural = f"{entity}s"

    @dg.asset(
        key=["clean", f"{entity}_pairs"],
        group_name=GROUP,
        kinds=KINDS,
        deps=_ENTITY_DEPS[entity],
        description=(
            f"One row per candidate pair of {plural} (records sharing a blocking key), scored "
            "by ordered comparison levels: the score, the decision (merge, review, distinct) "
            "and the reason listing every level and its points. Every duplicate decision is "
            "here, the ones that keep records apart too."
        ),
    )
    def pairs_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        config = _config()
        with _connect(warehouse) as con:
            stats = dedup.build_pairs(con, entity, config.dedup)
            decisions = _counts(
                con, f"select decision, count(*) from clean.{entity}_pairs group by all"
            )
            metadata = table_metadata(con, f"clean.{entity}_pairs")
        context.log.info("clean.%s_pairs: %s %s", entity, stats, decisions)
        return dg.MaterializeResult(metadata=metadata | stats | {"decisions": decisions})

    @dg.asset(
        key=["clean", f"{entity}_duplicates"],
        group_name=GROUP,
        kinds=KINDS,
        deps=clean(f"{entity}_pairs") + _PROFILE_DEPS,
        description=(
            f"One row per {entity} in a cluster of duplicates (connected merge pairs), with "
            "the cluster's survivor: the most complete record, then the most recently "
            "updated, then the most linked, then the lowest id. Each record shows the match "
            "that put it in the cluster (its pair with the survivor if any), score and reason."
        ),
    )
    def duplicates_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        with _connect(warehouse) as con:
            stats = dedup.build_duplicates(con, entity)
            metadata = table_metadata(con, f"clean.{entity}_duplicates")
        context.log.info("clean.%s_duplicates: %s", entity, stats)
        return dg.MaterializeResult(metadata=metadata | stats)

    @dg.asset(
        key=["clean", f"{entity}_review"],
        group_name=GROUP,
        kinds=KINDS,
        deps=clean(f"{entity}_pairs", f"{entity}_duplicates"),
        description=(
            f"One row per borderline pair of {plural} (score between review_score and "
            "merge_score) whose records did not end up in one cluster: NOT merged, listed "
            "for a human to check, highest scores first."
        ),
    )
    def review_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        with _connect(warehouse) as con:
            dedup.build_review(con, entity)
            metadata = table_metadata(con, f"clean.{entity}_review")
        return dg.MaterializeResult(metadata=metadata)

    survivors_deps = raw(plural) + clean(f"{entity}_duplicates")
    if entity == dedup.PERSON:
        survivors_deps += clean("phones", "emails", "organizations")
    survivors_checks = (
        [checks.no_merged_references_spec(plural)] if plural in dedup.REFERENCES else []
    )

    @dg.asset(
        key=["clean", plural],
        group_name=GROUP,
        kinds=KINDS,
        deps=survivors_deps,
        check_specs=survivors_checks,
        description=(
            f"One row per extracted {entity}, with its status: active (migrates as itself or "
            "as a survivor), merged (its data lives on in survivor_id) or deleted. A survivor "
            "carries the union of its cluster's "
            + ("valid phones, e-mails and labels" if entity == dedup.PERSON else "labels")
            + (
                "; org_id is re-pointed to the surviving organization, and problems lists "
                "what cannot be kept"
                if entity == dedup.PERSON
                else ""
            )
            + "."
        ),
    )
    def survivors_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with _connect(warehouse) as con:
            dedup.build_survivors(con, entity)
            statuses = _counts(con, f"select status, count(*) from clean.{plural} group by all")
            metadata = table_metadata(con, f"clean.{plural}")
        context.log.info("clean.%s: %s", plural, statuses)
        yield dg.MaterializeResult(metadata=metadata | {"statuses": statuses})
        if survivors_checks:
            yield checks.no_merged_references(warehouse, plural)

    return [pairs_asset, duplicates_asset, review_asset, survivors_asset]


@dg.asset(key=["clean", "currency_rates"], group_name=GROUP, kinds=KINDS)
def clean_currency_rates(warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per currency with a rate in the migration config (plus the amoCRM account
    currency at 1): how many units of the account currency one unit buys, the rate's date and
    its source. Deal and lead values are converted at these, and only these, rates."""
    config = _config()
    with _connect(warehouse) as con:
        currency.build_currency_rates(con, config.currency)
        metadata = table_metadata(con, "clean.currency_rates")
    return dg.MaterializeResult(
        metadata=metadata
        | {
            "account_currency": config.currency.account_currency,
            "config": dg.MetadataValue.path(str(config_path())),
        }
    )


@dg.asset(
    key=["clean", "amounts"],
    group_name=GROUP,
    kinds=KINDS,
    deps=raw("deals", "leads") + clean("currency_rates"),
)
def clean_amounts(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per deal and leads-inbox lead: its value converted to the amoCRM account
    currency (value × rate, rounded half away from zero to whole units, as amoCRM prices are
    integers), beside the original value, currency, rate, rate date and source. A currency
    without a rate is an error on that record ("unknown currency XYZ: add a rate to the
    config"), never a silent zero."""
    with _connect(warehouse) as con:
        stats = currency.build_amounts(con)
        errors = _counts(
            con, "select error, count(*) from clean.amounts where error is not null group by all"
        )
        metadata = table_metadata(con, "clean.amounts")
    if errors:
        context.log.warning("clean.amounts: conversion errors %s", errors)
    return dg.MaterializeResult(metadata=metadata | stats | {"errors": errors})


_REPOINTED = {
    "deals": (
        raw("deals") + clean("persons", "organizations", "amounts"),
        "One row per extracted deal: person and organization re-pointed to the surviving "
        "records (originals beside them), value converted to the account currency with "
        "the rate used, and problems (references that cannot be kept, conversion errors).",
    ),
    "leads": (
        raw("leads") + clean("persons", "organizations", "amounts"),
        "One row per leads-inbox lead: person and organization re-pointed to the "
        "survivors, value converted to the account currency, problems listed.",
    ),
    "activities": (
        raw("activities", "deals") + clean("persons", "organizations"),
        "One row per activity (an amoCRM task to be): person and organization re-pointed to "
        "the survivors (originals beside them), problems listed.",
    ),
    "notes": (
        raw("notes", "deals") + clean("persons", "organizations"),
        "One row per note: person and organization re-pointed to the survivors (originals "
        "beside them), problems listed.",
    ),
    "deal_participants": (
        raw("deal_participants", "deals") + clean("persons"),
        "One row per deal participant: person re-pointed to the survivor; a participant "
        "that merging made the same contact as another of its deal names it in duplicate_of.",
    ),
}


def build_repointed_asset(table: str) -> dg.AssetsDefinition:
    """The asset of one re-pointed table, with its blocking ``no_merged_references`` check."""
    deps, description = _REPOINTED[table]

    @dg.asset(
        key=["clean", table],
        group_name=GROUP,
        kinds=KINDS,
        deps=deps,
        description=description,
        check_specs=[checks.no_merged_references_spec(table)],
    )
    def _asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with _connect(warehouse) as con:
            dedup.build_repointed(con, table)
            with_problems = con.execute(
                f"select count(*) from clean.{table} where len(problems) > 0"
            ).fetchall()[0][0]
            metadata = table_metadata(con, f"clean.{table}")
        context.log.info("clean.%s: %d rows with problems", table, with_problems)
        yield dg.MaterializeResult(metadata=metadata | {"rows_with_problems": int(with_problems)})
        yield checks.no_merged_references(warehouse, table)

    return _asset


_ALL_RAW = raw(*selection.ENTITIES)


@dg.asset(key=["clean", "selection_rules"], group_name=GROUP, kinds=KINDS, deps=_ALL_RAW)
def clean_selection_rules(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row: the selection rules in force (reference date and where it came from, the
    window and policy of every entity), so every decision in clean.selection can be read
    against them. The reference date defaults to the newest update in the data, never the
    wall clock: the same data selects the same records."""
    config = _config()
    with _connect(warehouse) as con:
        reference = selection.build_selection_rules(con, config.selection)
        metadata = table_metadata(con, "clean.selection_rules")
    context.log.info("selection reference date: %s", reference)
    return dg.MaterializeResult(metadata=metadata | {"reference_date": reference})


@dg.asset(
    key=["clean", "selection"],
    group_name=GROUP,
    kinds=KINDS,
    deps=_ALL_RAW
    + clean(
        "selection_rules",
        "deals",
        "leads",
        "persons",
        "organizations",
        "activities",
        "notes",
        "deal_participants",
    ),
    check_specs=[checks.every_record_accounted_for_spec()],
)
def clean_selection(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """One row per extracted deal, lead, person, organization, activity, note, participant,
    follower and mail message: migrate, archive (by policy, exported for the customer),
    merged (into merged_into) or failed (an error to fix, e.g. an unknown currency), always
    with the reason. The one place that says what happens to every record."""
    with _connect(warehouse) as con:
        decisions = selection.build_selection(con)
        per_entity = _counts(
            con,
            "select entity || ' ' || decision, count(*) from clean.selection group by all "
            "order by all",
        )
        metadata = table_metadata(con, "clean.selection")
    context.log.info("clean.selection: %s", decisions)
    yield dg.MaterializeResult(metadata=metadata | decisions | {"per_entity": per_entity})
    yield checks.every_record_accounted_for(warehouse)


@dg.asset(
    key=["clean", "archive_exports"],
    group_name=GROUP,
    kinds=KINDS,
    deps=_ALL_RAW + clean("selection"),
)
def clean_archive_exports(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per entity: how many of its records do not migrate (archived, merged, failed)
    and the files that keep them for the customer, written with DuckDB COPY to
    <data dir>/exports/archive/<entity>.parquet (with the original API record) and .csv
    (spreadsheet-friendly, without it), each row with its decision and reason."""
    directory = settings.data_dir() / "exports" / "archive"
    with _connect(warehouse) as con:
        exported = selection.export_archive(con, directory)
        metadata = table_metadata(con, "clean.archive_exports")
    context.log.info("archive: %d records exported to %s", exported, directory)
    return dg.MaterializeResult(
        metadata=metadata
        | {"records_exported": exported, "directory": dg.MetadataValue.path(str(directory))}
    )


@dg.asset(
    key=["report", "pre_migration"],
    group_name=GROUP,
    kinds=KINDS,
    deps=clean(
        "phones",
        "emails",
        "amounts",
        "person_duplicates",
        "person_review",
        "organization_duplicates",
        "organization_review",
        "persons",
        "deals",
        "leads",
        "activities",
        "notes",
        "deal_participants",
        "selection_rules",
        "selection",
    ),
)
def report_pre_migration(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per number of the pre-migration report (section, item, value): records per
    entity, problems per kind (phones, e-mails, currencies, broken references), duplicates
    merged, what migrates and what is archived, the records to create and an estimate of the
    amoCRM requests (Σ⌈n/250⌉ per entity type, contact-company links, setup reads) and of the
    load time at 7 requests/s. Rendered as Markdown here and in
    <data dir>/reports/pre_migration.md."""
    with _connect(warehouse) as con:
        requests = report.build_report(con)
        reference = con.execute(
            "select reference_date || ' (' || reference_date_source || ')' "
            "from clean.selection_rules"
        ).fetchall()[0][0]
        markdown = report.render_markdown(con, reference=reference)
        metadata = table_metadata(con, "report.pre_migration")
    path = settings.data_dir() / "reports" / "pre_migration.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown, encoding="utf-8")
    context.log.info("pre-migration report: %s (%d amoCRM requests)", path, requests)
    return dg.MaterializeResult(
        metadata=metadata
        | {
            "report": dg.MetadataValue.md(markdown),
            "path": dg.MetadataValue.path(str(path)),
            "amocrm_requests": requests,
            "load_time": report.load_duration(requests),
        }
    )


cleanse_assets = [
    clean_emails,
    clean_phones,
    *build_dedup_assets(dedup.ORGANIZATION),
    *build_dedup_assets(dedup.PERSON),
    clean_currency_rates,
    clean_amounts,
    *(build_repointed_asset(table) for table in _REPOINTED),
    clean_selection_rules,
    clean_selection,
    clean_archive_exports,
    report_pre_migration,
]
