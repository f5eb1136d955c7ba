"""Group ``amocrm_setup``: what the target account has, what the migration creates there, and
the mappings the load plan reads (``map.*``).

Each asset reads its Pipedrive side from DuckDB and closes the file, talks to amoCRM (reads,
creates what is missing, reads again), then reopens the file to write its table (design
invariant 5). The mapping rules, the type table and the task type defaults are in
:mod:`migration_pipeline.setup.mapping`; the ``[mapping]`` config in
:mod:`migration_pipeline.setup.config`. Everything is matched by name, so a re-run (or a retry
after a create whose answer was lost) finds what the previous attempt created.

No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation of an
asset function by identity, and a postponed (string) annotation fails that check.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg

from migration_pipeline.clients.amocrm import MAX_BATCH
from migration_pipeline.clients.errors import InDoubt
from migration_pipeline.config import ConfigError, load_config
from migration_pipeline.db import Warehouse, read_rows, table_metadata
from migration_pipeline.resources import AmoCrmResource
from migration_pipeline.setup import mapping
from migration_pipeline.setup.config import MappingConfig
from migration_pipeline.setup.mapping import MappingError

GROUP = "amocrm_setup"
KINDS = {"amocrm", "duckdb"}
IN_DOUBT_RETRIES = 3


def raw(*tables: str) -> list[dg.AssetKey]:
    return [dg.AssetKey(["raw", table]) for table in tables]


def mapped(*tables: str) -> list[dg.AssetKey]:
    return [dg.AssetKey(["map", table]) for table in tables]


@contextmanager
def setup_errors() -> Iterator[None]:
    """Our errors as the run view should show them. A config or mapping error fails the step
    with its message. A create in doubt retries the step: the retry re-reads the account and
    finds by name whatever did land, so nothing is created twice."""
    try:
        yield
    except (ConfigError, MappingError) as exc:
        raise dg.Failure(description=str(exc)) from None
    except InDoubt as exc:
        raise dg.RetryRequested(max_retries=IN_DOUBT_RETRIES, seconds_to_wait=1) from exc


def _config() -> MappingConfig:
    with setup_errors():
        return load_config().mapping


def _refuse_if_not_creating(config: MappingConfig, what: str, missing: Sequence[str]) -> None:
    if missing and not config.create_missing:
        raise MappingError(
            f"amoCRM lacks {len(missing)} {what} and [mapping] create_missing is false; "
            "create them in amoCRM (or allow creating them) and re-run. Nothing was sent",
            missing,
        )


def _write(
    warehouse: Warehouse, table: str, rows: Sequence[dict[str, Any]], **extra: Any
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        mapping.write_table(con, table, rows)
        metadata = table_metadata(con, f"map.{table}")
    return dg.MaterializeResult(metadata=metadata | extra)


@dg.asset(key=["map", "account"], group_name=GROUP, kinds=KINDS)
def map_account(
    context: dg.AssetExecutionContext, amocrm: AmoCrmResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row: the target amoCRM account (id, subdomain, its one currency) and the default
    user, who owns the records of Pipedrive users that have no amoCRM counterpart
    (``[mapping] default_user_email``, else the account's current user)."""
    config = _config()
    with setup_errors(), amocrm.client() as client:
        account = client.account()
        default = mapping.default_user(
            client.users(), account.current_user_id, config.default_user_email
        )
    context.log.info(
        "amoCRM account %s (%s, %s); default user %s",
        account.id,
        account.subdomain,
        account.currency,
        default.email,
    )
    row = {
        "amo_account_id": account.id,
        "subdomain": account.subdomain,
        "currency": account.currency,
        "current_user_id": account.current_user_id,
        "default_user_id": default.id,
        "name": account.name,
        "default_user_email": default.email,
    }
    return _write(warehouse, "account", [row])


@dg.asset(
    key=["map", "users"],
    group_name=GROUP,
    kinds=KINDS,
    deps=raw("users") + mapped("account"),
)
def map_users(
    context: dg.AssetExecutionContext, amocrm: AmoCrmResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per Pipedrive user: the amoCRM user who owns its records, matched by e-mail
    (trimmed, case-insensitive) or by ``[mapping] user_overrides``; users without a match go to
    the default user with ``matched_by = 'default'`` and a ``note`` saying why, so they can be
    reviewed. Users are never created."""
    config = _config()
    with warehouse.connect(read_only=True) as con:
        users = mapping.read_users(con)
        default_id = con.execute("select default_user_id from map.account").fetchall()[0][0]
    with setup_errors():
        with amocrm.client() as client:
            amo_users = client.users()
        default = next((u for u in amo_users if u.id == default_id), None)
        if default is None:
            raise MappingError("the default user is gone", ["re-materialise map/account"])
        rows = mapping.user_rows(users, amo_users, config.user_overrides, default)
    defaulted = [row for row in rows if row["matched_by"] == "default"]
    for row in defaulted:
        context.log.warning(
            "Pipedrive user %s (%s): %s; records go to %s",
            row["pipedrive_user_id"],
            row["pipedrive_email"],
            row["note"],
            row["amo_email"],
        )
    counts = {kind: sum(r["matched_by"] == kind for r in rows) for kind in ("email", "override")}
    return _write(
        warehouse,
        "users",
        rows,
        matched_by_email=counts["email"],
        matched_by_override=counts["override"],
        defaulted=len(defaulted),
        defaulted_users=", ".join(str(r["pipedrive_email"]) for r in defaulted) or "none",
    )


@dg.asset(
    key=["map", "pipelines"],
    group_name=GROUP,
    kinds=KINDS,
    deps=raw("pipelines", "stages", "deals"),
)
def map_pipelines(
    context: dg.AssetExecutionContext, amocrm: AmoCrmResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per Pipedrive pipeline (not deleted, or used by a live deal): the amoCRM
    pipeline of the same name or of its ``[mapping] pipeline_overrides`` name. A missing one is
    created with all its stages as statuses, in the stages' order (``created`` is true)."""
    config = _config()
    with warehouse.connect(read_only=True) as con:
        pipelines, stages = mapping.read_pipelines(con), mapping.read_stages(con)
    with setup_errors():
        with amocrm.client() as client:
            before = client.pipelines()
            todo = mapping.pipelines_to_create(pipelines, stages, before, config.pipeline_overrides)
            _refuse_if_not_creating(
                config,
                "pipelines",
                [f"pipeline {new.name!r} (for Pipedrive {', '.join(new.sources)})" for new in todo],
            )
            for new in todo:
                made = client.create_pipeline(new.name, sort=new.sort, statuses=new.statuses)
                context.log.info(
                    "created pipeline %r (%d) with %d statuses",
                    new.name,
                    made.id,
                    len(new.statuses),
                )
            after = client.pipelines() if todo else before
        created = frozenset({p.id for p in after} - {p.id for p in before})
        rows = mapping.pipeline_rows(pipelines, after, config.pipeline_overrides, created)
    return _write(warehouse, "pipelines", rows, pipelines_created=len(created))


@dg.asset(
    key=["map", "statuses"],
    group_name=GROUP,
    kinds=KINDS,
    deps=raw("stages", "deals") + mapped("pipelines"),
)
def map_statuses(
    context: dg.AssetExecutionContext, amocrm: AmoCrmResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per Pipedrive stage (outcome ``open``): the status of the same name in the
    mapped pipeline, created at the end of it when missing; plus, per pipeline, ``won`` → 142
    and ``lost`` → 143 (``pipedrive_stage_id`` null), which every amoCRM pipeline has. The
    plan finds a deal's status by (pipeline, stage or null, outcome)."""
    config = _config()
    with warehouse.connect(read_only=True) as con:
        stages = mapping.read_stages(con)
        pipelines = read_rows(con, "select * from map.pipelines")
    pipeline_map = {p["pipedrive_pipeline_id"]: p["amo_pipeline_id"] for p in pipelines}
    with setup_errors():
        with amocrm.client() as client:
            before = client.pipelines()
            todo = mapping.statuses_to_create(stages, pipeline_map, before)
            names = {p.id: p.name for p in before}
            _refuse_if_not_creating(
                config,
                "statuses",
                [f"status {s['name']!r} in {names[i]!r}" for i, new in todo.items() for s in new],
            )
            for pipeline_id, statuses in todo.items():
                client.create_statuses(pipeline_id, statuses)
                context.log.info(
                    "created %d statuses in pipeline %r: %s",
                    len(statuses),
                    names[pipeline_id],
                    ", ".join(s["name"] for s in statuses),
                )
            after = client.pipelines() if todo else before
        created = frozenset(
            {s.id for p in after for s in p.statuses} - {s.id for p in before for s in p.statuses}
        )
        rows = mapping.status_rows(pipelines, stages, after, created)
    return _write(warehouse, "statuses", rows, statuses_created=len(created))


@dg.asset(key=["map", "loss_reasons"], group_name=GROUP, kinds=KINDS, deps=raw("deals"))
def map_loss_reasons(
    context: dg.AssetExecutionContext, amocrm: AmoCrmResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per distinct lost reason written on a Pipedrive deal (trimmed): the amoCRM loss
    reason of that name, created when missing, so lost leads keep why they were lost."""
    config = _config()
    with warehouse.connect(read_only=True) as con:
        texts = mapping.read_lost_reasons(con)
    with setup_errors():
        with amocrm.client() as client:
            before = client.loss_reasons()
            todo = mapping.loss_reasons_to_create(texts, before)
            _refuse_if_not_creating(config, "loss reasons", [repr(name) for name in todo])
            for start in range(0, len(todo), MAX_BATCH):
                client.create_loss_reasons(
                    [{"name": name} for name in todo[start : start + MAX_BATCH]]
                )
            if todo:
                context.log.info("created %d loss reasons: %s", len(todo), ", ".join(todo))
            after = client.loss_reasons() if todo else before
        created = frozenset({r.id for r in after} - {r.id for r in before})
        rows = mapping.loss_reason_rows(texts, after, created)
    return _write(warehouse, "loss_reasons", rows, loss_reasons_created=len(created))


@dg.asset(
    key=["map", "fields"],
    group_name=GROUP,
    kinds=KINDS,
    deps=raw("deal_fields", "person_fields", "organization_fields"),
)
def map_fields(
    context: dg.AssetExecutionContext, amocrm: AmoCrmResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per amoCRM custom field the load writes: the migration's own (``Pipedrive ID``
    on leads, contacts and companies; original amount, currency, rate and rate date on leads;
    merged ids on contacts and companies) and one per Pipedrive custom field (deal → leads,
    person → contacts, organization → companies), matched by name and a compatible type or
    created; ``enum_map`` turns Pipedrive option ids into amoCRM enum ids."""
    config = _config()
    with warehouse.connect(read_only=True) as con:
        wanted = mapping.wanted_fields(mapping.read_fields(con))
    entities = tuple(mapping.ENTITIES.values())
    with setup_errors():
        with amocrm.client() as client:
            before = {entity: client.custom_fields(entity) for entity in entities}
            todo = mapping.fields_to_create(wanted, before)
            _refuse_if_not_creating(
                config,
                "custom fields",
                [f"{e}: {b['name']!r} ({b['type']})" for e, new in todo.items() for b in new],
            )
            for entity, bodies in todo.items():
                for start in range(0, len(bodies), MAX_BATCH):
                    client.create_custom_fields(entity, bodies[start : start + MAX_BATCH])
                context.log.info(
                    "created %d %s fields: %s",
                    len(bodies),
                    entity,
                    ", ".join(f"{b['name']} ({b['type']})" for b in bodies),
                )
            after = (
                {entity: client.custom_fields(entity) for entity in entities} if todo else before
            )
        created = frozenset(
            {f.id for fields in after.values() for f in fields}
            - {f.id for fields in before.values() for f in fields}
        )
        rows = mapping.field_rows(wanted, after, created)
    renamed = [
        r for r in rows if r["pipedrive_name"] and r["amo_field_name"] != r["pipedrive_name"]
    ]
    for row in renamed:
        context.log.warning(
            "%s field %r maps to amoCRM field %r",
            row["entity"],
            row["pipedrive_name"],
            row["amo_field_name"],
        )
    return _write(
        warehouse,
        "fields",
        rows,
        fields_created=len(created),
        custom_fields=sum(r["purpose"] == "custom" for r in rows),
        renamed_fields=len(renamed),
    )


@dg.asset(key=["map", "task_types"], group_name=GROUP, kinds=KINDS, deps=raw("activity_types"))
def map_task_types(
    context: dg.AssetExecutionContext, amocrm: AmoCrmResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per Pipedrive activity type (``key_string``): the amoCRM task type its tasks
    get, a same-named type of the account, else MEETING (2) for meeting and lunch and
    FOLLOW_UP (1) for every other type. Nothing is created."""
    with warehouse.connect(read_only=True) as con:
        types = mapping.read_activity_types(con)
    with setup_errors(), amocrm.client() as client:
        account = client.account(with_=("task_types",))
    amo_types = (account.raw.get("_embedded") or {}).get("task_types") or []
    rows = mapping.task_type_rows(types, amo_types)
    context.log.info(
        "task types: %s", ", ".join(f"{r['pipedrive_type']}→{r['amo_task_type_id']}" for r in rows)
    )
    return _write(
        warehouse, "task_types", rows, matched_by_name=sum(r["matched_by"] == "name" for r in rows)
    )


setup_assets = [
    map_account,
    map_users,
    map_pipelines,
    map_statuses,
    map_loss_reasons,
    map_fields,
    map_task_types,
]
