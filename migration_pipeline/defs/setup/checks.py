"""Blocking checks of group ``amocrm_setup``: before any load runs, the mapping is complete
(every user, pipeline, stage, lost reason, custom field and activity type of the Pipedrive data
has a row) and consistent with the account as it is now (every id a row points at exists in
amoCRM, with a type that can hold the values). A failure stops the run before the plan.

Each check reads amoCRM first, then opens DuckDB read-only (never both at once); the
comparisons are in :mod:`migration_pipeline.setup.mapping`.
"""

from collections.abc import Sequence

import dagster as dg

from migration_pipeline.config import load_config
from migration_pipeline.db import Warehouse
from migration_pipeline.resources import AmoCrmResource
from migration_pipeline.setup import mapping

from .assets import mapped, raw, setup_errors

SHOWN = 50  # problems listed in the check's metadata (all are counted)


def _result(problems: Sequence[str]) -> dg.AssetCheckResult:
    listed = "\n".join(f"- {problem}" for problem in problems[:SHOWN])
    if len(problems) > SHOWN:
        listed += f"\n- … and {len(problems) - SHOWN} more"
    return dg.AssetCheckResult(
        passed=not problems,
        description=f"{len(problems)} problem(s)" if problems else "complete and consistent",
        metadata={"problems": len(problems), "details": dg.MetadataValue.md(listed or "none")},
    )


@dg.asset_check(asset=mapped("account")[0], blocking=True)
def account_consistent(amocrm: AmoCrmResource, warehouse: Warehouse) -> dg.AssetCheckResult:
    """map.account is this account, its default user is active, and the account's currency is
    the one deal amounts were converted to."""
    with setup_errors():
        expected = load_config().currency.account_currency
        with amocrm.client() as client:
            account, users = client.account(), client.users()
    with warehouse.connect(read_only=True) as con:
        return _result(mapping.account_problems(con, account, users, expected))


@dg.asset_check(asset=mapped("users")[0], blocking=True, additional_deps=raw("users"))
def every_user_mapped(amocrm: AmoCrmResource, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Every Pipedrive user maps to an active amoCRM user."""
    with amocrm.client() as client:
        users = client.users()
    with warehouse.connect(read_only=True) as con:
        return _result(mapping.user_problems(con, users))


@dg.asset_check(asset=mapped("pipelines")[0], blocking=True, additional_deps=raw("deals"))
def every_pipeline_mapped(amocrm: AmoCrmResource, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Every pipeline of a live deal maps to an amoCRM pipeline that exists."""
    with amocrm.client() as client:
        pipelines = client.pipelines()
    with warehouse.connect(read_only=True) as con:
        return _result(mapping.pipeline_problems(con, pipelines))


@dg.asset_check(asset=mapped("statuses")[0], blocking=True, additional_deps=raw("deals"))
def every_deal_status_mapped(amocrm: AmoCrmResource, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Every (pipeline, stage, outcome) of a live deal maps to a status of the mapped amoCRM
    pipeline that exists; won is 142 and lost is 143."""
    with amocrm.client() as client:
        pipelines = client.pipelines()
    with warehouse.connect(read_only=True) as con:
        return _result(mapping.status_problems(con, pipelines))


@dg.asset_check(asset=mapped("loss_reasons")[0], blocking=True, additional_deps=raw("deals"))
def every_lost_reason_mapped(amocrm: AmoCrmResource, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Every lost reason written on a deal maps to an amoCRM loss reason that exists."""
    with amocrm.client() as client:
        reasons = client.loss_reasons()
    with warehouse.connect(read_only=True) as con:
        return _result(mapping.loss_reason_problems(con, reasons))


@dg.asset_check(
    asset=mapped("fields")[0],
    blocking=True,
    additional_deps=raw("deal_fields", "person_fields", "organization_fields"),
)
def every_field_mapped(amocrm: AmoCrmResource, warehouse: Warehouse) -> dg.AssetCheckResult:
    """The migration's own fields exist on every entity type with their exact type, and every
    Pipedrive custom field maps to an existing field that can hold its values, each option of
    an enum to one of the field's enums."""
    with amocrm.client() as client:
        fields = {entity: client.custom_fields(entity) for entity in mapping.ENTITIES.values()}
    with warehouse.connect(read_only=True) as con:
        return _result(mapping.field_problems(con, fields))


@dg.asset_check(asset=mapped("task_types")[0], blocking=True, additional_deps=raw("activity_types"))
def every_activity_type_mapped(amocrm: AmoCrmResource, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Every Pipedrive activity type maps to a task type the account has."""
    with amocrm.client() as client:
        account = client.account(with_=("task_types",))
    types = (account.raw.get("_embedded") or {}).get("task_types") or []
    with warehouse.connect(read_only=True) as con:
        return _result(mapping.task_type_problems(con, types))


setup_checks = [
    account_consistent,
    every_user_mapped,
    every_pipeline_mapped,
    every_deal_status_mapped,
    every_lost_reason_mapped,
    every_field_mapped,
    every_activity_type_mapped,
]
