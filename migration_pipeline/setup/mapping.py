"""How the Pipedrive account maps onto the amoCRM account: plain functions, no Dagster.

Every mapping follows the same three steps, so running it again creates nothing twice:

1. **read** what Pipedrive had (``raw.*``, DuckDB) and what amoCRM has now (the API);
2. **plan** what is missing (``*_to_create``); with ``create_missing = false`` that list is the
   error, raised before anything is sent;
3. after creating it, **re-read** amoCRM and match everything by name (``*_rows``): the rows
   of the ``map.*`` tables. A create that was lost on the way back is found by its name on the
   next run instead of being sent again.

Names are compared trimmed, with inner whitespace collapsed and case folded
(:func:`~migration_pipeline.setup.config.normalise`).

Users
    Pipedrive user → amoCRM user by e-mail; ``user_overrides`` first; the rest go to the
    default user (``default_user_email``, else the account's ``current_user_id``), listed with
    ``matched_by = 'default'`` and a ``note`` saying why. Users are never created; only active
    amoCRM users are targets.

Pipelines and stages
    Pipeline → pipeline by name (or ``pipeline_overrides``; an override naming a pipeline that
    does not exist creates it under that name), stage → status by name within the mapped
    pipeline (archived pipelines, the unsorted inbox and 142/143 are never matched by name;
    the oldest wins among namesakes). Won → 142 and lost → 143 in every pipeline. A new
    pipeline is created with all its stages, ``sort`` 10, 20, … in the stages' ``order_nr``;
    stages missing from an existing pipeline are appended after its last working status in
    the same order. The pipelines and stages mapped are those not deleted in Pipedrive plus
    every one a live (not deleted) deal uses.

Loss reasons
    Every distinct non-empty ``raw.deals.lost_reason`` (trimmed) → the amoCRM loss reason of
    that name (at most 255 characters), created when missing.

Custom fields
    Pipedrive custom fields (``edit_flag`` true): deal → ``leads``, person → ``contacts``,
    organization → ``companies``, by name and a compatible type:

    ===========================================  ===========  =============
    Pipedrive ``field_type``                     created as   also accepted
    ===========================================  ===========  =============
    varchar, varchar_auto, phone                 text         textarea
    text                                         textarea
    double, monetary                             numeric
    enum                                         select       radiobutton
    set                                          multiselect
    date                                         date         date_time
    user, org, people (the plan writes names)    text         textarea
    time, timerange, daterange, address          text         textarea
    any other type; enum or set without options  text         textarea
    ===========================================  ===========  =============

    An enum field also needs every Pipedrive option among its enums (by label); the
    ``enum_map`` keeps Pipedrive option id → amoCRM enum id. A same-named field of another
    type, or without all the options, is left alone (setup never edits an existing field):
    the field is created as ``"<name> (Pipedrive)"``. Two Pipedrive
    fields of one entity with the same name keep apart: the later (by key) is named
    ``"<name> (<first 8 characters of its key>)"``.

    The migration's own fields are created on every entity type it writes and must have
    exactly their type: ``Pipedrive ID`` (text; leads, contacts, companies: reconciliation
    looks entities up by it), on leads ``Original amount`` (numeric), ``Original currency``
    (text), ``Exchange rate`` (text), ``Rate date`` (date), on contacts and companies
    ``Pipedrive merged IDs`` (text: the ids of the duplicates merged into the record).
    amoCRM text fields take at most 256 characters through the API; the plan clips.

Task types
    Pipedrive activity type → an amoCRM task type whose name equals the activity type's
    ``key_string`` or name (amoCRM lists its types, 1 and 2 included, under
    ``GET /account?with=task_types``); otherwise ``meeting`` and ``lunch`` → 2 (MEETING) and
    every other type (call, task, email, deadline, …) → 1 (FOLLOW_UP). Nothing is created.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from ..clients.amocrm import Account, CustomField, LossReason, Pipeline, Status, User
from ..clients.errors import MigrationError
from ..db import read_rows
from .config import normalise

ENTITIES = {"deal": "leads", "person": "contacts", "organization": "companies"}
WON, LOST = 142, 143
UNSORTED = 1  # status type of the unsorted inbox
FOLLOW_UP, MEETING = 1, 2
MEETING_TYPES = frozenset({"meeting", "lunch"})
NAME_MAX = 255  # names of pipelines, statuses, fields, loss reasons
SORT_STEP = 10
FALLBACK_SUFFIX = " (Pipedrive)"

AMO_TYPE = {
    "varchar": "text",
    "varchar_auto": "text",
    "phone": "text",
    "text": "textarea",
    "double": "numeric",
    "monetary": "numeric",
    "enum": "select",
    "set": "multiselect",
    "date": "date",
    "user": "text",
    "org": "text",
    "people": "text",
    "time": "text",
    "timerange": "text",
    "daterange": "text",
    "address": "text",
}
COMPATIBLE = {
    "text": frozenset({"text", "textarea"}),
    "textarea": frozenset({"textarea"}),
    "numeric": frozenset({"numeric"}),
    "select": frozenset({"select", "radiobutton"}),
    "multiselect": frozenset({"multiselect"}),
    "date": frozenset({"date", "date_time"}),
}
ENUM_TYPES = frozenset({"select", "multiselect"})


@dataclass(frozen=True)
class MigrationField:
    """A field the migration itself writes on every record of ``entities``."""

    purpose: str
    name: str
    amo_type: str
    entities: tuple[str, ...]


MIGRATION_FIELDS = (
    MigrationField("pipedrive_id", "Pipedrive ID", "text", ("leads", "contacts", "companies")),
    MigrationField("merged_ids", "Pipedrive merged IDs", "text", ("contacts", "companies")),
    MigrationField("original_amount", "Original amount", "numeric", ("leads",)),
    MigrationField("original_currency", "Original currency", "text", ("leads",)),
    MigrationField("exchange_rate", "Exchange rate", "text", ("leads",)),
    MigrationField("rate_date", "Rate date", "date", ("leads",)),
)


class MappingError(MigrationError):
    """The mapping cannot be completed as configured; the message lists every reason."""

    def __init__(self, headline: str, items: Iterable[str]) -> None:
        self.items = tuple(items)
        super().__init__(headline + "".join(f"\n  - {item}" for item in self.items))


# -- the map.* tables ---------------------------------------------------------------------------

# The first columns of each table are what the load plan reads; the rest are for people.
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "account": (
        ("amo_account_id", "BIGINT"),
        ("subdomain", "VARCHAR"),
        ("currency", "VARCHAR"),
        ("current_user_id", "BIGINT"),
        ("default_user_id", "BIGINT"),
        ("name", "VARCHAR"),
        ("default_user_email", "VARCHAR"),
    ),
    "users": (
        ("pipedrive_user_id", "BIGINT"),
        ("pipedrive_email", "VARCHAR"),
        ("pipedrive_name", "VARCHAR"),
        ("amo_user_id", "BIGINT"),
        ("amo_email", "VARCHAR"),
        ("matched_by", "VARCHAR"),
        ("note", "VARCHAR"),
    ),
    "pipelines": (
        ("pipedrive_pipeline_id", "BIGINT"),
        ("pipedrive_name", "VARCHAR"),
        ("amo_pipeline_id", "BIGINT"),
        ("created", "BOOLEAN"),
        ("amo_name", "VARCHAR"),
        ("matched_by", "VARCHAR"),
    ),
    "statuses": (
        ("pipedrive_pipeline_id", "BIGINT"),
        ("pipedrive_stage_id", "BIGINT"),
        ("outcome", "VARCHAR"),
        ("amo_pipeline_id", "BIGINT"),
        ("amo_status_id", "BIGINT"),
        ("created", "BOOLEAN"),
        ("pipedrive_stage_name", "VARCHAR"),
        ("amo_status_name", "VARCHAR"),
    ),
    "loss_reasons": (
        ("lost_reason", "VARCHAR"),
        ("amo_loss_reason_id", "BIGINT"),
        ("created", "BOOLEAN"),
        ("amo_name", "VARCHAR"),
    ),
    "fields": (
        ("entity", "VARCHAR"),
        ("purpose", "VARCHAR"),
        ("pipedrive_key", "VARCHAR"),
        ("pipedrive_name", "VARCHAR"),
        ("pipedrive_type", "VARCHAR"),
        ("amo_field_id", "BIGINT"),
        ("amo_field_type", "VARCHAR"),
        ("amo_field_name", "VARCHAR"),
        ("enum_map", "JSON"),
        ("created", "BOOLEAN"),
    ),
    "task_types": (
        ("pipedrive_type", "VARCHAR"),
        ("amo_task_type_id", "BIGINT"),
        ("amo_task_type_name", "VARCHAR"),
        ("pipedrive_name", "VARCHAR"),
        ("matched_by", "VARCHAR"),
    ),
}

Row = dict[str, Any]


def write_table(
    con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Replace ``map.<table>`` with ``rows`` in one transaction (readers never see it empty)."""
    columns = TABLES[table]
    definition = ", ".join(f"{name} {kind}" for name, kind in columns)
    con.execute("begin transaction")
    try:
        con.execute(f"create or replace table map.{table} ({definition})")
        if rows:
            marks = ", ".join("?" * len(columns))
            con.executemany(
                f"insert into map.{table} values ({marks})",
                [[row[name] for name, _ in columns] for row in rows],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _clip(name: str, limit: int = NAME_MAX) -> str:
    return name[:limit].rstrip()


def _named(items: Iterable[Any], name: str) -> list[Any]:
    """The items whose ``name`` equals ``name`` once normalised, by id."""
    wanted = normalise(name)
    return sorted((item for item in items if normalise(item.name) == wanted), key=lambda i: i.id)


# -- what Pipedrive had (raw.*) -----------------------------------------------------------------

# The deals that need a place in amoCRM: not deleted, in a pipeline that exists and, when
# open, in a stage of that pipeline. The cleanse fails the others with the reason (see
# clean.deals.placement_error), so one deal in a missing stage never blocks the setup.
LIVE_DEALS = (
    "select * from raw.deals d "
    "where coalesce(d.status, '') <> 'deleted' and not coalesce(d.is_deleted, false) "
    "and d.pipeline_id in (select id from raw.pipelines) "
    "and (d.status in ('won', 'lost') or d.stage_id in "
    "(select id from raw.stages where pipeline_id = d.pipeline_id))"
)


@dataclass(frozen=True)
class SourceUser:
    """A Pipedrive user (``raw.users``)."""

    id: int
    name: str
    email: str | None


@dataclass(frozen=True)
class SourcePipeline:
    """A Pipedrive pipeline to map (``raw.pipelines``)."""

    id: int
    name: str
    order_nr: int


@dataclass(frozen=True)
class SourceStage:
    """A Pipedrive stage to map (``raw.stages``)."""

    id: int
    pipeline_id: int
    name: str
    order_nr: int


@dataclass(frozen=True)
class SourceField:
    """A Pipedrive custom field of ``entity`` (the amoCRM entity type it maps to)."""

    entity: str
    key: str
    name: str
    field_type: str
    options: tuple[tuple[str, str], ...]  # (option id as text, label)


@dataclass(frozen=True)
class SourceActivityType:
    """A Pipedrive activity type (``raw.activity_types``); activities name it by key."""

    key_string: str
    name: str


def read_users(con: duckdb.DuckDBPyConnection) -> list[SourceUser]:
    """Every Pipedrive user, active or not: their records keep an owner either way."""
    rows = con.execute("select id, name, email from raw.users order by id").fetchall()
    return [SourceUser(id, name or "", (email or "").strip() or None) for id, name, email in rows]


# The pipelines and stages that are mapped: those not deleted, plus deleted ones that a live
# deal still uses (a stage only within a mapped pipeline).
MAPPED_PIPELINES = f"""
    with live as ({LIVE_DEALS})
    select p.id, p.name, coalesce(p.order_nr, 0) as order_nr from raw.pipelines p
    where not coalesce(p.is_deleted, false)
       or p.id in (select pipeline_id from live)
       or p.id in (select s.pipeline_id from raw.stages s join live on live.stage_id = s.id)
"""


def read_pipelines(con: duckdb.DuckDBPyConnection) -> list[SourcePipeline]:
    """The pipelines to map (see ``MAPPED_PIPELINES``), by ``order_nr``."""
    rows = con.execute(f"select * from ({MAPPED_PIPELINES}) order by order_nr, id").fetchall()
    return [
        SourcePipeline(id, (name or "").strip() or f"Pipedrive pipeline {id}", order)
        for id, name, order in rows
    ]


def read_stages(con: duckdb.DuckDBPyConnection) -> list[SourceStage]:
    """The stages of the mapped pipelines: not deleted, or a live deal is in them."""
    rows = con.execute(
        f"""
        with live as ({LIVE_DEALS})
        select s.id, s.pipeline_id, s.name, coalesce(s.order_nr, 0) as order_nr from raw.stages s
        where s.pipeline_id in (select id from ({MAPPED_PIPELINES}))
          and (not coalesce(s.is_deleted, false) or s.id in (select stage_id from live))
        order by s.pipeline_id, order_nr, s.id
        """
    ).fetchall()
    return [
        SourceStage(id, pipeline_id, (name or "").strip() or f"Stage {id}", order)
        for id, pipeline_id, name, order in rows
    ]


def read_lost_reasons(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every distinct non-empty lost reason of the deals, trimmed (the plan's lookup key)."""
    rows = con.execute(
        "select distinct trim(lost_reason) from raw.deals "
        "where nullif(trim(lost_reason), '') is not null order by 1"
    ).fetchall()
    return [row[0] for row in rows]


def read_fields(con: duckdb.DuckDBPyConnection) -> list[SourceField]:
    """The custom fields (``edit_flag``) of deals, persons and organizations, by key."""
    fields = []
    for source, entity in ENTITIES.items():
        rows = con.execute(
            f"select key, name, field_type, options from raw.{source}_fields "
            "where coalesce(edit_flag, false) order by key"
        ).fetchall()
        for key, name, field_type, options in rows:
            choices = json.loads(options) if isinstance(options, str) else options
            fields.append(
                SourceField(
                    entity=entity,
                    key=key,
                    name=" ".join((name or "").split()) or key,
                    field_type=field_type or "",
                    options=tuple(
                        (str(option["id"]), " ".join(str(option.get("label") or "").split()))
                        for option in choices or []
                        if isinstance(option, dict) and option.get("id") is not None
                    ),
                )
            )
    return fields


def read_activity_types(con: duckdb.DuckDBPyConnection) -> list[SourceActivityType]:
    """Every activity type by ``key_string`` (active or not: old activities use old types)."""
    rows = con.execute(
        "select key_string, min(name) from raw.activity_types "
        "where nullif(trim(key_string), '') is not null group by 1 order by 1"
    ).fetchall()
    return [SourceActivityType(key, name or key) for key, name in rows]


# -- users --------------------------------------------------------------------------------------


def _active_by_email(amo_users: Iterable[User]) -> dict[str, User]:
    found: dict[str, User] = {}
    for user in sorted(amo_users, key=lambda u: u.id):
        if user.is_active and user.email:
            found.setdefault(normalise(user.email), user)
    return found


def default_user(
    amo_users: Sequence[User], current_user_id: int | None, default_user_email: str | None
) -> User:
    """Who owns the records of unmatched users: ``default_user_email`` if configured, else
    the account's current user (the token's owner)."""
    active = _active_by_email(amo_users)
    if default_user_email is not None:
        user = active.get(normalise(default_user_email))
        if user is None:
            raise MappingError(
                "[mapping] default_user_email names no active amoCRM user",
                [f"{default_user_email}; active users: {', '.join(sorted(active)) or 'none'}"],
            )
        return user
    user = next((u for u in amo_users if u.id == current_user_id and u.is_active), None)
    if user is None:
        raise MappingError(
            "the account's current user is not an active user of the account",
            [f"current_user_id {current_user_id}: set [mapping] default_user_email"],
        )
    return user


def user_rows(
    users: Sequence[SourceUser],
    amo_users: Sequence[User],
    overrides: Mapping[str, str],
    default: User,
) -> list[Row]:
    """One row per Pipedrive user: override, else e-mail, else the default user (with why)."""
    active = _active_by_email(amo_users)
    inactive = {normalise(u.email) for u in amo_users if u.email and not u.is_active}
    known = {normalise(u.email) for u in users if u.email}
    problems = [
        f"user_overrides: {source!r} is not the e-mail of a Pipedrive user"
        for source in sorted(overrides)
        if source not in known
    ] + [
        f"user_overrides: no active amoCRM user has the e-mail {target!r}"
        for target in sorted(set(overrides.values()))
        if target not in active
    ]
    if problems:
        raise MappingError("the user mapping is misconfigured", problems)
    rows = []
    for user in sorted(users, key=lambda u: u.id):
        email = normalise(user.email) if user.email else None
        note = None
        if email in overrides:
            target, matched_by = active[overrides[email]], "override"
        elif email in active:
            target, matched_by = active[email], "email"
        else:
            target, matched_by = default, "default"
            if email is None:
                note = "no e-mail in Pipedrive"
            elif email in inactive:
                note = "the amoCRM user with this e-mail is inactive"
            else:
                note = "no amoCRM user with this e-mail"
        rows.append(
            {
                "pipedrive_user_id": user.id,
                "pipedrive_email": user.email,
                "pipedrive_name": user.name,
                "amo_user_id": target.id,
                "amo_email": target.email,
                "matched_by": matched_by,
                "note": note,
            }
        )
    return rows


# -- pipelines ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewPipeline:
    """A pipeline to create, with its statuses (``{name, sort}``) in the stages' order."""

    name: str
    sort: int
    statuses: tuple[Mapping[str, Any], ...]
    sources: tuple[str, ...]  # the Pipedrive pipelines it is for


def pipeline_targets(
    pipelines: Sequence[SourcePipeline], overrides: Mapping[str, str]
) -> dict[int, tuple[str, str]]:
    """Pipedrive pipeline id → (the amoCRM pipeline name it maps to, ``name``|``override``)."""
    known = {normalise(p.name) for p in pipelines}
    unknown = [name for name in sorted(overrides) if name not in known]
    if unknown:
        raise MappingError(
            "pipeline_overrides names pipelines Pipedrive does not have",
            [
                f"{name!r} (Pipedrive has: {', '.join(sorted(p.name for p in pipelines))})"
                for name in unknown
            ],
        )
    targets = {}
    for pipeline in pipelines:
        override = overrides.get(normalise(pipeline.name))
        targets[pipeline.id] = (
            (_clip(override), "override") if override else (_clip(pipeline.name), "name")
        )
    return targets


def find_pipeline(amo_pipelines: Iterable[Pipeline], name: str) -> Pipeline | None:
    """The active (not archived) amoCRM pipeline of that name, the oldest if several."""
    return next(iter(_named((p for p in amo_pipelines if not p.is_archive), name)), None)


def _stage_names(stages: Iterable[SourceStage]) -> list[str]:
    """Distinct stage names (first spelling wins) in the given order."""
    names: dict[str, str] = {}
    for stage in stages:
        names.setdefault(normalise(_clip(stage.name)), _clip(stage.name))
    return list(names.values())


def pipelines_to_create(
    pipelines: Sequence[SourcePipeline],
    stages: Sequence[SourceStage],
    amo_pipelines: Sequence[Pipeline],
    overrides: Mapping[str, str],
) -> list[NewPipeline]:
    """The target pipelines amoCRM lacks, each with the stages of every Pipedrive pipeline
    mapped onto it (pipelines by ``order_nr``, then stages by ``order_nr``)."""
    targets = pipeline_targets(pipelines, overrides)
    missing: dict[str, list[SourcePipeline]] = {}
    names: dict[str, str] = {}
    for pipeline in sorted(pipelines, key=lambda p: (p.order_nr, p.id)):
        name = targets[pipeline.id][0]
        if find_pipeline(amo_pipelines, name) is None:
            missing.setdefault(normalise(name), []).append(pipeline)
            names.setdefault(normalise(name), name)
    next_sort = max((p.sort for p in amo_pipelines), default=0) + 1
    created = []
    for position, (key, sources) in enumerate(missing.items()):
        order = {p.id: n for n, p in enumerate(sources)}
        own = sorted(
            (s for s in stages if s.pipeline_id in order),
            key=lambda s: (order[s.pipeline_id], s.order_nr, s.id),
        )
        statuses = tuple(
            {"name": name, "sort": SORT_STEP * (n + 1)} for n, name in enumerate(_stage_names(own))
        )
        created.append(
            NewPipeline(names[key], next_sort + position, statuses, tuple(p.name for p in sources))
        )
    return created


def pipeline_rows(
    pipelines: Sequence[SourcePipeline],
    amo_pipelines: Sequence[Pipeline],
    overrides: Mapping[str, str],
    created_ids: frozenset[int],
) -> list[Row]:
    """One row per Pipedrive pipeline, from the account as it is after the creates."""
    targets = pipeline_targets(pipelines, overrides)
    rows, missing = [], []
    for pipeline in sorted(pipelines, key=lambda p: p.id):
        name, matched_by = targets[pipeline.id]
        found = find_pipeline(amo_pipelines, name)
        if found is None:
            missing.append(f"pipeline {name!r} (for Pipedrive pipeline {pipeline.name!r})")
            continue
        rows.append(
            {
                "pipedrive_pipeline_id": pipeline.id,
                "pipedrive_name": pipeline.name,
                "amo_pipeline_id": found.id,
                "created": found.id in created_ids,
                "amo_name": found.name,
                "matched_by": matched_by,
            }
        )
    if missing:
        raise MappingError("amoCRM still lacks pipelines after setup", missing)
    return rows


# -- statuses -----------------------------------------------------------------------------------


def working_statuses(pipeline: Pipeline) -> list[Status]:
    """The statuses a Pipedrive stage may map to: not the unsorted inbox, not won or lost."""
    return [s for s in pipeline.statuses if s.id not in (WON, LOST) and s.type != UNSORTED]


def _stages_by_pipeline(
    stages: Sequence[SourceStage], pipeline_map: Mapping[int, int]
) -> dict[int, list[SourceStage]]:
    """Stages grouped by the amoCRM pipeline they map into (in stage order)."""
    orphans = [s for s in stages if s.pipeline_id not in pipeline_map]
    if orphans:
        raise MappingError(
            "stages of pipelines that map.pipelines does not list (materialise map/pipelines)",
            [f"stage {s.id} {s.name!r} of pipeline {s.pipeline_id}" for s in orphans],
        )
    grouped: dict[int, list[SourceStage]] = {}
    for stage in sorted(stages, key=lambda s: (s.pipeline_id, s.order_nr, s.id)):
        grouped.setdefault(pipeline_map[stage.pipeline_id], []).append(stage)
    return grouped


def _pipeline(amo_pipelines: Sequence[Pipeline], pipeline_id: int) -> Pipeline:
    found = next((p for p in amo_pipelines if p.id == pipeline_id), None)
    if found is None:
        raise MappingError(
            "map.pipelines points at pipelines amoCRM does not have (materialise map/pipelines)",
            [f"pipeline {pipeline_id}"],
        )
    return found


def statuses_to_create(
    stages: Sequence[SourceStage],
    pipeline_map: Mapping[int, int],
    amo_pipelines: Sequence[Pipeline],
) -> dict[int, list[dict[str, Any]]]:
    """amoCRM pipeline id → the statuses (``{name, sort}``) it lacks, appended after its last
    working status in the stages' order."""
    missing: dict[int, list[dict[str, Any]]] = {}
    for amo_id, own in _stages_by_pipeline(stages, pipeline_map).items():
        pipeline = _pipeline(amo_pipelines, amo_id)
        present = working_statuses(pipeline)
        names = [name for name in _stage_names(own) if not _named(present, name)]
        last = max((s.sort for s in present), default=0)
        if names:
            missing[amo_id] = [
                {"name": name, "sort": last + SORT_STEP * (n + 1)} for n, name in enumerate(names)
            ]
    return missing


def status_rows(
    pipelines: Sequence[Mapping[str, Any]],
    stages: Sequence[SourceStage],
    amo_pipelines: Sequence[Pipeline],
    created_ids: frozenset[int],
) -> list[Row]:
    """One row per Pipedrive stage (outcome ``open``) plus ``won`` → 142 and ``lost`` → 143
    for every pipeline. ``pipelines`` are ``map.pipelines`` rows; a status counts as created
    when it is new since the statuses were read, or its pipeline was created by this setup."""
    pipeline_map = {p["pipedrive_pipeline_id"]: p["amo_pipeline_id"] for p in pipelines}
    new_pipelines = {p["amo_pipeline_id"] for p in pipelines if p["created"]}
    rows, missing = [], []
    for amo_id, own in _stages_by_pipeline(stages, pipeline_map).items():
        pipeline = _pipeline(amo_pipelines, amo_id)
        for stage in own:
            found = next(iter(_named(working_statuses(pipeline), _clip(stage.name))), None)
            if found is None:
                missing.append(f"status {stage.name!r} in pipeline {pipeline.name!r}")
                continue
            created = found.id in created_ids or amo_id in new_pipelines
            rows.append(_status_row(stage.pipeline_id, stage, "open", found, created))
    for pipeline_id, amo_id in sorted(pipeline_map.items()):
        pipeline = _pipeline(amo_pipelines, amo_id)
        closed = {s.id: s for s in pipeline.statuses if s.id in (WON, LOST)}
        for outcome, status_id in (("won", WON), ("lost", LOST)):
            if status_id not in closed:
                missing.append(f"status {status_id} ({outcome}) in pipeline {pipeline.name!r}")
                continue
            rows.append(_status_row(pipeline_id, None, outcome, closed[status_id], False))
    if missing:
        raise MappingError("amoCRM still lacks statuses after setup", missing)
    outcomes = ("open", "won", "lost")
    return sorted(
        rows,
        key=lambda r: (
            r["pipedrive_pipeline_id"],
            outcomes.index(r["outcome"]),
            r["pipedrive_stage_id"] or 0,
        ),
    )


def _status_row(
    pipeline_id: int, stage: SourceStage | None, outcome: str, status: Status, created: bool
) -> Row:
    return {
        "pipedrive_pipeline_id": pipeline_id,
        "pipedrive_stage_id": stage.id if stage else None,
        "outcome": outcome,
        "amo_pipeline_id": status.pipeline_id,
        "amo_status_id": status.id,
        "created": created,
        "pipedrive_stage_name": stage.name if stage else None,
        "amo_status_name": status.name,
    }


# -- loss reasons -------------------------------------------------------------------------------


def loss_reasons_to_create(texts: Sequence[str], amo_reasons: Sequence[LossReason]) -> list[str]:
    """The loss reason names amoCRM lacks (first spelling of each, in text order)."""
    names: dict[str, str] = {}
    for text in texts:
        name = _clip(text)
        if not _named(amo_reasons, name):
            names.setdefault(normalise(name), name)
    return list(names.values())


def loss_reason_rows(
    texts: Sequence[str], amo_reasons: Sequence[LossReason], created_ids: frozenset[int]
) -> list[Row]:
    """One row per distinct Pipedrive lost reason text."""
    rows, missing = [], []
    for text in sorted(texts):
        found = next(iter(_named(amo_reasons, _clip(text))), None)
        if found is None:
            missing.append(f"loss reason {text!r}")
            continue
        rows.append(
            {
                "lost_reason": text,
                "amo_loss_reason_id": found.id,
                "created": found.id in created_ids,
                "amo_name": found.name,
            }
        )
    if missing:
        raise MappingError("amoCRM still lacks loss reasons after setup", missing)
    return rows


# -- custom fields ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WantedField:
    """A field the migration needs on ``entity``: one of its own (``purpose``) or a
    Pipedrive custom field (``purpose = 'custom'``), with the type it is created as."""

    entity: str
    purpose: str
    name: str
    amo_type: str
    pipedrive_key: str | None = None
    pipedrive_name: str | None = None
    pipedrive_type: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def accepted_types(self) -> frozenset[str]:
        """Existing field types that can hold the values (migration fields: exactly theirs)."""
        if self.purpose != "custom":
            return frozenset({self.amo_type})
        return COMPATIBLE[self.amo_type]

    @property
    def labels(self) -> list[str]:
        """Distinct enum labels in option order (first spelling wins)."""
        labels: dict[str, str] = {}
        for _, label in self.options:
            labels.setdefault(normalise(label), label)
        return list(labels.values())

    @property
    def fallback_name(self) -> str:
        return _clip(self.name, NAME_MAX - len(FALLBACK_SUFFIX)) + FALLBACK_SUFFIX


def _amo_type(field: SourceField) -> str:
    kind = AMO_TYPE.get(field.field_type, "text")
    return "text" if kind in ENUM_TYPES and not field.options else kind


def wanted_fields(fields: Sequence[SourceField]) -> list[WantedField]:
    """The migration's own fields, then every Pipedrive custom field, per entity; names made
    unique within an entity."""
    wanted = [
        WantedField(entity, spec.purpose, spec.name, spec.amo_type)
        for entity in ENTITIES.values()
        for spec in MIGRATION_FIELDS
        if entity in spec.entities
    ]
    taken = {(w.entity, normalise(w.name)) for w in wanted}
    for field in sorted(fields, key=lambda f: (list(ENTITIES.values()).index(f.entity), f.key)):
        name = _clip(field.name)
        if (field.entity, normalise(name)) in taken:
            name = f"{_clip(field.name, NAME_MAX - 11)} ({field.key[:8]})"
        taken.add((field.entity, normalise(name)))
        kind = _amo_type(field)
        wanted.append(
            WantedField(
                entity=field.entity,
                purpose="custom",
                name=name,
                amo_type=kind,
                pipedrive_key=field.key,
                pipedrive_name=field.name,
                pipedrive_type=field.field_type,
                options=tuple((i, _clip(label or f"#{i}")) for i, label in field.options)
                if kind in ENUM_TYPES
                else (),
            )
        )
    return wanted


def fits(wanted: WantedField, field: CustomField) -> bool:
    """Can ``field`` hold ``wanted``'s values: an accepted type, and every option an enum."""
    if field.type not in wanted.accepted_types:
        return False
    enums = {normalise(enum.value) for enum in field.enums}
    return all(normalise(label) in enums for label in wanted.labels)


def resolve_field(wanted: WantedField, amo_fields: Sequence[CustomField]) -> CustomField | None:
    """The existing field for ``wanted``: its name, else its fallback name, if it fits."""
    for name in (wanted.name, wanted.fallback_name):
        for field in _named(amo_fields, name):
            if fits(wanted, field):
                return field
    return None


def field_payload(wanted: WantedField, name: str) -> dict[str, Any]:
    """The create body of one field (enums in option order)."""
    payload: dict[str, Any] = {"type": wanted.amo_type, "name": name}
    if wanted.amo_type in ENUM_TYPES:
        payload["enums"] = [
            {"value": label, "sort": SORT_STEP * (n + 1)} for n, label in enumerate(wanted.labels)
        ]
    return payload


def fields_to_create(
    wanted: Sequence[WantedField], amo_fields: Mapping[str, Sequence[CustomField]]
) -> dict[str, list[dict[str, Any]]]:
    """Entity → the create bodies of the fields it lacks. A field is created under its name
    when nothing is called that, else under its fallback name; when both are taken by fields
    that cannot hold it, the mapping cannot be completed (a person must rename or fix one)."""
    creates: dict[str, list[dict[str, Any]]] = {}
    blocked = []
    for want in wanted:
        existing = amo_fields.get(want.entity, ())
        if resolve_field(want, existing) is not None:
            continue
        name = next((n for n in (want.name, want.fallback_name) if not _named(existing, n)), None)
        if name is None:
            blocked.append(
                f"{want.entity}: {want.name!r} and {want.fallback_name!r} exist but cannot hold "
                f"{want.pipedrive_type or want.amo_type} values as {want.amo_type}"
                + (f" with options {want.labels}" if want.labels else "")
            )
            continue
        creates.setdefault(want.entity, []).append(field_payload(want, name))
    if blocked:
        raise MappingError("custom fields in the way: rename them in amoCRM or fix them", blocked)
    return creates


def enum_map(wanted: WantedField, field: CustomField) -> dict[str, int] | None:
    """Pipedrive option id (as text) → amoCRM enum id, by label; None for non-enum fields."""
    if wanted.amo_type not in ENUM_TYPES:
        return None
    by_label: dict[str, int] = {}
    for enum in sorted(field.enums, key=lambda e: (e.sort, e.id)):
        by_label.setdefault(normalise(enum.value), enum.id)
    return {
        option: by_label[normalise(label)]
        for option, label in wanted.options
        if normalise(label) in by_label
    }


def field_rows(
    wanted: Sequence[WantedField],
    amo_fields: Mapping[str, Sequence[CustomField]],
    created_ids: frozenset[int],
) -> list[Row]:
    """One row per wanted field, from the account as it is after the creates."""
    rows, missing = [], []
    for want in wanted:
        found = resolve_field(want, amo_fields.get(want.entity, ()))
        if found is None:
            missing.append(f"{want.entity}: {want.name!r} ({want.amo_type})")
            continue
        mapping = enum_map(want, found)
        rows.append(
            {
                "entity": want.entity,
                "purpose": want.purpose,
                "pipedrive_key": want.pipedrive_key,
                "pipedrive_name": want.pipedrive_name,
                "pipedrive_type": want.pipedrive_type,
                "amo_field_id": found.id,
                "amo_field_type": found.type,
                "amo_field_name": found.name,
                "enum_map": None if mapping is None else json.dumps(mapping),
                "created": found.id in created_ids,
            }
        )
    if missing:
        raise MappingError("amoCRM still lacks custom fields after setup", missing)
    order = list(ENTITIES.values())
    return sorted(
        rows,
        key=lambda r: (
            order.index(r["entity"]),
            r["purpose"] == "custom",
            r["purpose"],
            r["pipedrive_key"] or "",
        ),
    )


# -- task types ---------------------------------------------------------------------------------


def task_type_rows(
    types: Sequence[SourceActivityType], amo_types: Sequence[Mapping[str, Any]]
) -> list[Row]:
    """One row per Pipedrive activity type: a same-named amoCRM task type, else the default
    (meeting and lunch → 2, the rest → 1)."""
    by_name: dict[str, Mapping[str, Any]] = {}
    for task_type in sorted(amo_types, key=lambda t: t["id"]):
        by_name.setdefault(normalise(str(task_type.get("name") or "")), task_type)
    names = {int(t["id"]): str(t.get("name") or "") for t in amo_types}
    rows = []
    for source in sorted(types, key=lambda t: t.key_string):
        match = by_name.get(normalise(source.key_string)) or by_name.get(normalise(source.name))
        if match is not None:
            type_id, matched_by = int(match["id"]), "name"
        else:
            type_id = MEETING if normalise(source.key_string) in MEETING_TYPES else FOLLOW_UP
            matched_by = "default"
        rows.append(
            {
                "pipedrive_type": source.key_string,
                "amo_task_type_id": type_id,
                "amo_task_type_name": names.get(type_id)
                or ("MEETING" if type_id == MEETING else "FOLLOW_UP"),
                "pipedrive_name": source.name,
                "matched_by": matched_by,
            }
        )
    return rows


# -- consistency (the blocking checks) ----------------------------------------------------------
# Each function reads map.* and raw.* and compares them with the account as read just before
# (the caller reads amoCRM first, then opens DuckDB): an empty list means consistent.


def account_problems(
    con: duckdb.DuckDBPyConnection,
    account: Account,
    amo_users: Sequence[User],
    expected_currency: str,
) -> list[str]:
    """map.account describes this account, its default user is active, and the account keeps
    prices in the currency the deal amounts were converted to."""
    rows = read_rows(con, "select * from map.account")
    if len(rows) != 1:
        return [f"map.account has {len(rows)} rows, not 1"]
    row, problems = rows[0], []
    if row["amo_account_id"] != account.id:
        problems.append(f"map.account is for account {row['amo_account_id']}, not {account.id}")
    if row["default_user_id"] not in {u.id for u in amo_users if u.is_active}:
        problems.append(f"default user {row['default_user_id']} is not an active amoCRM user")
    if account.currency != expected_currency:
        problems.append(
            f"the amoCRM account's currency is {account.currency}, but deal amounts are "
            f"converted to {expected_currency} ([currency] account_currency)"
        )
    return problems


def user_problems(con: duckdb.DuckDBPyConnection, amo_users: Sequence[User]) -> list[str]:
    """Every Pipedrive user has a row, and it names an active amoCRM user."""
    active = {u.id for u in amo_users if u.is_active}
    unmapped = con.execute(
        "select u.id, u.email from raw.users u "
        "left join map.users m on m.pipedrive_user_id = u.id "
        "where m.pipedrive_user_id is null order by u.id"
    ).fetchall()
    problems = [f"Pipedrive user {id} ({email}) is not mapped" for id, email in unmapped]
    for row in read_rows(con, "select * from map.users order by pipedrive_user_id"):
        if row["amo_user_id"] not in active:
            problems.append(
                f"Pipedrive user {row['pipedrive_user_id']} maps to amoCRM user "
                f"{row['amo_user_id']}, which is not an active user of the account"
            )
    return problems


def pipeline_problems(
    con: duckdb.DuckDBPyConnection, amo_pipelines: Sequence[Pipeline]
) -> list[str]:
    """Every pipeline of a live deal has a row, and it names a pipeline amoCRM has."""
    existing = {p.id for p in amo_pipelines}
    unmapped = con.execute(
        f"with live as ({LIVE_DEALS}) select distinct live.pipeline_id from live "
        "left join map.pipelines m on m.pipedrive_pipeline_id = live.pipeline_id "
        "where m.pipedrive_pipeline_id is null order by 1"
    ).fetchall()
    problems = [f"pipeline {row[0]} of live deals is not mapped" for row in unmapped]
    for row in read_rows(con, "select * from map.pipelines order by pipedrive_pipeline_id"):
        if row["amo_pipeline_id"] not in existing:
            problems.append(
                f"Pipedrive pipeline {row['pipedrive_name']!r} maps to amoCRM pipeline "
                f"{row['amo_pipeline_id']}, which does not exist"
            )
    return problems


def status_problems(con: duckdb.DuckDBPyConnection, amo_pipelines: Sequence[Pipeline]) -> list[str]:
    """Every (pipeline, stage, outcome) a live deal has maps to a status that exists in the
    mapped pipeline; won is 142, lost is 143."""
    statuses = {(s.pipeline_id, s.id) for p in amo_pipelines for s in p.statuses}
    unmapped = con.execute(
        f"""
        with live as ({LIVE_DEALS}),
        wanted as (
            select pipeline_id, case when status in ('won', 'lost') then status else 'open' end as outcome,
                   case when status in ('won', 'lost') then null else stage_id end as stage_id,
                   count(*) as deals, min(id) as example
            from live group by all
        )
        select w.pipeline_id, w.stage_id, w.outcome, w.deals, w.example from wanted w
        left join map.statuses m on m.pipedrive_pipeline_id = w.pipeline_id
            and m.outcome = w.outcome and m.pipedrive_stage_id is not distinct from w.stage_id
        where m.outcome is null order by all
        """
    ).fetchall()
    problems = [
        f"{deals} live deal(s) (e.g. {example}) in pipeline {pipeline}, stage {stage}, "
        f"outcome {outcome} have no status mapping"
        for pipeline, stage, outcome, deals, example in unmapped
    ]
    expected = {"won": WON, "lost": LOST}
    for row in read_rows(con, "select * from map.statuses order by all"):
        where = (
            f"pipeline {row['pipedrive_pipeline_id']} stage {row['pipedrive_stage_id']} "
            f"({row['outcome']})"
        )
        if (row["amo_pipeline_id"], row["amo_status_id"]) not in statuses:
            problems.append(
                f"{where} maps to status {row['amo_status_id']}, which pipeline "
                f"{row['amo_pipeline_id']} does not have"
            )
        if row["outcome"] in expected and row["amo_status_id"] != expected[row["outcome"]]:
            problems.append(
                f"{where} maps to {row['amo_status_id']}, not {expected[row['outcome']]}"
            )
    return problems


def loss_reason_problems(
    con: duckdb.DuckDBPyConnection, amo_reasons: Sequence[LossReason]
) -> list[str]:
    """Every lost reason written on a deal has a row, and it names a loss reason amoCRM has."""
    existing = {r.id for r in amo_reasons}
    mapped = {
        r["lost_reason"]: r["amo_loss_reason_id"]
        for r in read_rows(con, "select * from map.loss_reasons")
    }
    problems = []
    for text in read_lost_reasons(con):
        if text not in mapped:
            problems.append(f"lost reason {text!r} is not mapped")
        elif mapped[text] not in existing:
            problems.append(f"lost reason {text!r} maps to {mapped[text]}, which does not exist")
    return problems


def field_problems(
    con: duckdb.DuckDBPyConnection, amo_fields: Mapping[str, Sequence[CustomField]]
) -> list[str]:
    """The migration's fields and every Pipedrive custom field map to an existing field that
    can hold their values, and every option of an enum maps to one of its enums."""
    rows = {
        (r["entity"], r["purpose"], r["pipedrive_key"]): r
        for r in read_rows(con, "select * from map.fields")
    }
    problems = []
    for want in wanted_fields(read_fields(con)):
        label = f"{want.entity}: {want.pipedrive_name or want.name!r} ({want.purpose})"
        row = rows.get((want.entity, want.purpose, want.pipedrive_key))
        if row is None:
            problems.append(f"{label} is not mapped")
            continue
        field = next(
            (f for f in amo_fields.get(want.entity, ()) if f.id == row["amo_field_id"]), None
        )
        if field is None:
            problems.append(f"{label} maps to field {row['amo_field_id']}, which does not exist")
        elif not fits(want, field):
            problems.append(f"{label} maps to {field.name!r} ({field.type}), which cannot hold it")
        elif want.options:
            enums = {enum.id for enum in field.enums}
            mapped = json.loads(row["enum_map"] or "{}")
            lost = [option for option, _ in want.options if mapped.get(option) not in enums]
            if lost:
                problems.append(f"{label}: options {lost} map to no enum of field {field.id}")
    return problems


def task_type_problems(
    con: duckdb.DuckDBPyConnection, amo_types: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Every activity type has a row, and it names a task type the account has."""
    existing = {FOLLOW_UP, MEETING} | {int(t["id"]) for t in amo_types}
    mapped = {
        r["pipedrive_type"]: r["amo_task_type_id"]
        for r in read_rows(con, "select * from map.task_types")
    }
    problems = []
    for source in read_activity_types(con):
        if source.key_string not in mapped:
            problems.append(f"activity type {source.key_string!r} is not mapped")
        elif mapped[source.key_string] not in existing:
            problems.append(
                f"activity type {source.key_string!r} maps to task type "
                f"{mapped[source.key_string]}, which the account does not have"
            )
    return problems
