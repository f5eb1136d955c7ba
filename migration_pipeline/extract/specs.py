"""What we extract: one spec per raw table, saying where it comes from and which columns later
stages read as typed values. Every row also keeps the original record as JSON (``record``), so
the raw schema is the customer's complete backup whatever the columns say.

Endpoints follow ``reference/pipedrive_api.md``: API v2 wherever it exists (its v1 list
endpoints are out of support since 2026-08), v1 only for what has no v2 (users, notes, leads,
participants, mail, currencies, activity types) and for field definitions (v1 carries the
numeric field ids and ``edit_flag``, which v2 does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """A typed column read from the record. ``paths`` are JSON paths tried in order (the first
    non-null wins), so one column serves v1's ``{"value": id}`` objects and plain ids alike;
    ``PARENT`` stands for the deal a per-deal record was requested for."""

    name: str
    type: str
    paths: tuple[str, ...]


def col(name: str, type_: str, *paths: str) -> Column:
    return Column(name, type_, paths or (f"$.{name}",))


@dataclass(frozen=True)
class Endpoint:
    """One list endpoint. ``api`` is ``v1`` (offset pages), ``v2`` (cursor pages) or ``flat``
    (one unpaginated v1 answer). ``source`` tags the rows it yields (e.g. archived deals)."""

    api: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    source: str = "list"


@dataclass(frozen=True)
class PerDeal:
    """A sub-resource requested per deal, only for deals whose ``count_column`` says it has any."""

    api: str
    path_template: str
    count_column: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RawSpec:
    table: str
    description: str
    columns: tuple[Column, ...]
    endpoints: tuple[Endpoint, ...] = ()
    per_deal: PerDeal | None = None
    key: tuple[str, ...] = ("id",)  # the columns that identify a record (unique per table)

    @property
    def qualified(self) -> str:
        return f"raw.{self.table}"


TS = "TIMESTAMPTZ"
PARENT = "@parent"  # not a JSON path: the deal a per-deal record was requested for
ID = "BIGINT"

_FIELD_COLUMNS = (
    col("id", ID),
    col("key", "VARCHAR"),
    col("name", "VARCHAR"),
    col("field_type", "VARCHAR"),
    col("edit_flag", "BOOLEAN"),
    col("active_flag", "BOOLEAN"),
    col("options", "JSON"),
)


def _field_spec(entity: str) -> RawSpec:
    return RawSpec(
        table=f"{entity}_fields",
        description=(
            f"One row per {entity} field definition (v1 `/{entity}Fields`): built-in fields have "
            "readable keys, custom ones 40-character hash keys; `options` maps enum/set ids to labels."
        ),
        columns=_FIELD_COLUMNS,
        endpoints=(Endpoint("v1", f"/api/v1/{entity}Fields"),),
        key=("key",),
    )


DEAL_COUNTS = "participants_count,followers_count,email_messages_count"

SPECS: tuple[RawSpec, ...] = (
    RawSpec(
        "users",
        "One row per Pipedrive user (v1 `/users`): mapped to amoCRM users by e-mail, never created.",
        (
            col("id", ID),
            col("name", "VARCHAR"),
            col("email", "VARCHAR"),
            col("active_flag", "BOOLEAN"),
            col("is_deleted", "BOOLEAN"),
            col("default_currency", "VARCHAR"),
        ),
        (Endpoint("flat", "/api/v1/users"),),
    ),
    RawSpec(
        "currencies",
        "One row per currency the account knows (v1 `/currencies`); deal amounts use these codes.",
        (
            col("id", ID),
            col("code", "VARCHAR"),
            col("name", "VARCHAR"),
            col("decimal_points", "INTEGER"),
            col("is_custom_flag", "BOOLEAN"),
            col("active_flag", "BOOLEAN"),
        ),
        (Endpoint("flat", "/api/v1/currencies"),),
    ),
    RawSpec(
        "activity_types",
        "One row per activity type (v1 `/activityTypes`); activities name theirs by `key_string`.",
        (
            col("id", ID),
            col("name", "VARCHAR"),
            col("key_string", "VARCHAR"),
            col("active_flag", "BOOLEAN"),
        ),
        (Endpoint("flat", "/api/v1/activityTypes"),),
    ),
    RawSpec(
        "pipelines",
        "One row per pipeline (v2): becomes an amoCRM pipeline, matched by name.",
        (
            col("id", ID),
            col("name", "VARCHAR"),
            col("order_nr", "INTEGER"),
            col("is_deleted", "BOOLEAN"),
        ),
        (Endpoint("v2", "/api/v2/pipelines"),),
    ),
    RawSpec(
        "stages",
        "One row per stage (v2): becomes a status of the mapped amoCRM pipeline.",
        (
            col("id", ID),
            col("name", "VARCHAR"),
            col("pipeline_id", ID),
            col("order_nr", "INTEGER"),
            col("is_deleted", "BOOLEAN"),
        ),
        (Endpoint("v2", "/api/v2/stages"),),
    ),
    _field_spec("deal"),
    _field_spec("person"),
    _field_spec("organization"),
    _field_spec("activity"),
    _field_spec("product"),
    RawSpec(
        "deals",
        (
            "One row per deal: open, won, lost and deleted ones from `/api/v2/deals` "
            "(`source = list`) and archived ones from `/api/v2/deals/archived` "
            "(`source = archived`). The sub-resource counts decide which per-deal calls we make."
        ),
        (
            col("id", ID),
            col("title", "VARCHAR"),
            col("owner_id", ID),
            col("creator_user_id", ID),
            col("person_id", ID),
            col("org_id", ID),
            col("pipeline_id", ID),
            col("stage_id", ID),
            col("value", "DOUBLE"),
            col("currency", "VARCHAR"),
            col("status", "VARCHAR"),
            col("lost_reason", "VARCHAR"),
            col("is_deleted", "BOOLEAN"),
            col("is_archived", "BOOLEAN"),
            col("add_time", TS),
            col("update_time", TS),
            col("close_time", TS),
            col("won_time", TS),
            col("lost_time", TS),
            col("archive_time", TS),
            col("expected_close_date", "DATE"),
            col("label_ids", "JSON"),
            col("custom_fields", "JSON"),
            col("participants_count", "INTEGER"),
            col("followers_count", "INTEGER"),
            col("email_messages_count", "INTEGER"),
        ),
        (
            Endpoint(
                "v2",
                "/api/v2/deals",
                {"status": "open,won,lost,deleted", "include_fields": DEAL_COUNTS},
            ),
            Endpoint(
                "v2",
                "/api/v2/deals/archived",
                {"status": "open,won,lost,deleted", "include_fields": DEAL_COUNTS},
                "archived",
            ),
        ),
    ),
    RawSpec(
        "organizations",
        "One row per organization (v2): becomes an amoCRM company after deduplication.",
        (
            col("id", ID),
            col("name", "VARCHAR"),
            col("owner_id", ID),
            col("address", "VARCHAR", "$.address.value", "$.address"),
            col("address_country", "VARCHAR", "$.address.country"),
            col("website", "VARCHAR"),
            col("is_deleted", "BOOLEAN"),
            col("add_time", TS),
            col("update_time", TS),
            col("label_ids", "JSON"),
            col("custom_fields", "JSON"),
        ),
        (Endpoint("v2", "/api/v2/organizations"),),
    ),
    RawSpec(
        "persons",
        "One row per person (v2): becomes an amoCRM contact after cleansing and deduplication.",
        (
            col("id", ID),
            col("name", "VARCHAR"),
            col("first_name", "VARCHAR"),
            col("last_name", "VARCHAR"),
            col("owner_id", ID),
            col("org_id", ID),
            col("emails", "JSON"),
            col("phones", "JSON"),
            col("is_deleted", "BOOLEAN"),
            col("add_time", TS),
            col("update_time", TS),
            col("label_ids", "JSON"),
            col("custom_fields", "JSON"),
        ),
        (Endpoint("v2", "/api/v2/persons"),),
    ),
    RawSpec(
        "activities",
        "One row per activity (v2): becomes an amoCRM task (done ones completed, with their note).",
        (
            col("id", ID),
            col("subject", "VARCHAR"),
            col("type", "VARCHAR"),
            col("owner_id", ID),
            col("deal_id", ID),
            col("person_id", ID),
            col("org_id", ID),
            col("lead_id", "VARCHAR"),
            col("done", "BOOLEAN"),
            col("due_date", "DATE"),
            col("due_time", "VARCHAR"),
            col("duration", "VARCHAR"),
            col("marked_as_done_time", TS),
            col("note", "VARCHAR"),
            col("is_deleted", "BOOLEAN"),
            col("add_time", TS),
            col("update_time", TS),
        ),
        (Endpoint("v2", "/api/v2/activities"),),
    ),
    RawSpec(
        "products",
        "One row per product (v2); kept as a backup (amoCRM catalogs are a later step).",
        (
            col("id", ID),
            col("name", "VARCHAR"),
            col("code", "VARCHAR"),
            col("is_deleted", "BOOLEAN"),
            col("prices", "JSON"),
        ),
        (Endpoint("v2", "/api/v2/products"),),
    ),
    RawSpec(
        "notes",
        "One row per note (v1 `/notes`, HTML content): becomes an amoCRM note on its entity.",
        (
            col("id", ID),
            col("content", "VARCHAR"),
            col("deal_id", ID),
            col("person_id", ID),
            col("org_id", ID),
            col("lead_id", "VARCHAR"),
            col("user_id", ID),
            col("active_flag", "BOOLEAN"),
            col("add_time", TS),
            col("update_time", TS),
        ),
        (Endpoint("v1", "/api/v1/notes"),),
    ),
    RawSpec(
        "leads",
        (
            "One row per leads-inbox lead (v1 `/leads`, `source = list`, and `/leads/archived`, "
            "`source = archived`); ids are UUIDs."
        ),
        (
            col("id", "VARCHAR"),
            col("title", "VARCHAR"),
            col("owner_id", ID),
            col("person_id", ID),
            col("organization_id", ID),
            col("value_amount", "DOUBLE", "$.value.amount"),
            col("value_currency", "VARCHAR", "$.value.currency"),
            col("is_archived", "BOOLEAN"),
            col("add_time", TS),
            col("update_time", TS),
        ),
        (
            Endpoint("v1", "/api/v1/leads"),
            Endpoint("v1", "/api/v1/leads/archived", source="archived"),
        ),
    ),
    RawSpec(
        "deal_participants",
        "One row per deal participant (v1, requested only for deals with `participants_count > 0`).",
        (
            col("id", ID),
            col("deal_id", ID, PARENT),
            col("person_id", ID, "$.person_id.value", "$.person_id"),
            col("active_flag", "BOOLEAN"),
            col("add_time", TS),
        ),
        per_deal=PerDeal("v1", "/api/v1/deals/{id}/participants", "participants_count"),
    ),
    RawSpec(
        "deal_followers",
        "One row per deal follower (v2, only for deals with `followers_count > 0`): no amoCRM equivalent; kept on the lead as a note.",
        (col("deal_id", ID, PARENT), col("user_id", ID), col("add_time", TS)),
        per_deal=PerDeal("v2", "/api/v2/deals/{id}/followers", "followers_count"),
        key=("deal_id", "user_id"),
    ),
    RawSpec(
        "mail_messages",
        "One row per e-mail linked to a deal (v1 with bodies, only for deals with `email_messages_count > 0`): becomes a note on the lead.",
        (
            col("id", ID, "$.data.id", "$.id"),
            col("deal_id", ID, PARENT),
            col("subject", "VARCHAR", "$.data.subject", "$.subject"),
            col("from", "JSON", "$.data.from", "$.from"),
            col("to", "JSON", "$.data.to", "$.to"),
            col("cc", "JSON", "$.data.cc", "$.cc"),
            col("message_time", TS, "$.data.message_time", "$.message_time"),
            col("body", "VARCHAR", "$.data.body", "$.body"),
        ),
        per_deal=PerDeal(
            "v1", "/api/v1/deals/{id}/mailMessages", "email_messages_count", {"include_body": "1"}
        ),
    ),
)

SPEC_BY_TABLE = {spec.table: spec for spec in SPECS}
