"""Group ``load``: the plan (``plan.*``), then the partitioned, rate-limited, exactly-once load.

The plan registers one dynamic partition per batch of deals (``b0001``…), of leads-inbox
leads (``l0001``…) and of contacts no deal needs (``c0001``…). Each partition of ``ledger/entities`` pushes its batch
into amoCRM; a partition whose deals all loaded is green, otherwise it fails naming the
deals and why, and re-running it (a backfill of failed partitions in the UI, or
``migration-pipeline migrate``) finishes the job without creating anything twice.
"""

import time

import dagster as dg
from pydantic import Field

from migration_pipeline.db import Warehouse, table_metadata
from migration_pipeline.ledger import DuckDBLedger, RunRecord, record_run
from migration_pipeline.load.loader import PartitionResult, load_partition
from migration_pipeline.load.plan import REQUESTS_PER_SECOND, PlanSettings, build_plan
from migration_pipeline.resources import AmoCrmResource

GROUP = "load"
deal_batches = dg.DynamicPartitionsDefinition(name="deal_batches")

PLAN_TABLES = (
    "partitions",
    "deal_batches",
    "needs",
    "companies",
    "contacts",
    "leads",
    "tasks",
    "notes",
    "left_out_values",
)
UPSTREAM = [
    dg.AssetKey(key)
    for key in (
        ["clean", "selection"],
        ["clean", "deals"],
        ["clean", "leads"],
        ["clean", "persons"],
        ["clean", "organizations"],
        ["clean", "activities"],
        ["clean", "notes"],
        ["clean", "deal_participants"],
        ["map", "account"],
        ["map", "users"],
        ["map", "statuses"],
        ["map", "loss_reasons"],
        ["map", "fields"],
        ["map", "task_types"],
    )
]


class PlanConfig(dg.Config):
    """How the plan cuts the work. Membership never changes once planned."""

    deals_per_partition: int = Field(
        default=1000, ge=1, description="deals per load partition (the unit of a re-run)"
    )
    contacts_per_partition: int = Field(default=1000, ge=1, description="contacts per c-partition")
    sample_partitions: int = Field(
        default=0,
        ge=0,
        description="mark the first N partitions as the test migration to load first",
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["plan", table],
            group_name=GROUP,
            kinds={"duckdb"},
            deps=UPSTREAM,
            description=f"plan.{table}: what the load will send, readable before anything is sent.",
        )
        for table in PLAN_TABLES
    ],
)
def load_plan(context: dg.AssetExecutionContext, config: PlanConfig, warehouse: Warehouse):
    """Turn the cleansed, selected data into the exact payloads to send, in partitions."""
    settings = PlanSettings(
        config.deals_per_partition, config.contacts_per_partition, config.sample_partitions
    )
    with warehouse.connect() as con:
        counts = build_plan(con, settings)
        keys = [
            row[0]
            for row in con.execute(
                "select partition_key from plan.partitions order by 1"
            ).fetchall()
        ]
        estimate = con.execute("select sum(requests) from plan.partitions").fetchall()[0][0]
        metadata = {table: table_metadata(con, f"plan.{table}") for table in PLAN_TABLES}
    known = set(context.instance.get_dynamic_partitions(deal_batches.name))
    new = [key for key in keys if key not in known]
    if new:
        context.instance.add_dynamic_partitions(deal_batches.name, new)
    requests = int(estimate or 0)
    context.log.info(
        "plan: %s; %d partitions (%d new); about %d requests, %.0f s at %g requests/s",
        counts,
        len(keys),
        len(new),
        requests,
        requests / REQUESTS_PER_SECOND,
        REQUESTS_PER_SECOND,
    )
    for table in PLAN_TABLES:
        extra = {}
        if table == "partitions":
            extra = {
                "new_partitions": len(new),
                "estimated_requests": requests,
                "estimated_seconds_at_7_per_s": round(requests / REQUESTS_PER_SECOND, 1),
            }
        yield dg.MaterializeResult(asset_key=["plan", table], metadata={**metadata[table], **extra})


class LoadConfig(dg.Config):
    """How long a load waits on claims of other loaders."""

    lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="a claim older than this, whose loader never finished, is reconciled and taken over",
    )
    wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="how long to wait for entities another partition is creating",
    )


@dg.asset(
    key=["ledger", "entities"],
    group_name=GROUP,
    kinds={"amocrm", "duckdb"},
    partitions_def=deal_batches,
    pool="amocrm",
    deps=[dg.AssetKey(["plan", table]) for table in PLAN_TABLES],
)
def load(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    amocrm: AmoCrmResource,
    warehouse: Warehouse,
) -> dg.MaterializeResult:
    """One partition's deals with their companies, contacts, tasks and notes, created in amoCRM
    exactly once. One row of ``ledger.entities`` per created entity: its source key, amoCRM id
    and state. Reruns reuse what exists and reconcile what is in doubt."""
    key = context.partition_key
    ledger = DuckDBLedger(warehouse.file(), lease_seconds=config.lease_seconds)
    started = time.time()
    result: PartitionResult | None = None
    with amocrm.client() as client:
        try:
            result = load_partition(
                client,
                warehouse.file(),
                ledger,
                key,
                claimant=f"{context.run.run_id}:{key}",
                batch_size=amocrm.batch_size,
                progress=context.log.info,
                wait_seconds=config.wait_seconds,
            )
        finally:
            stats = client.stats
            record_run(
                warehouse.file(),
                RunRecord(
                    run_id=context.run.run_id,
                    partition_key=key,
                    started_at=started,
                    seconds=time.time() - started,
                    requests=stats.requests,
                    rate_limited=stats.rate_limited,
                    retries=stats.retries,
                    in_doubt=stats.in_doubt,
                    failures=None if result is None else len(result.failures),
                ),
            )
    counts = result.counts()
    metadata = {
        "requests": stats.requests,
        "rate_limited_429": stats.rate_limited,
        "retries": stats.retries,
        "in_doubt": stats.in_doubt,
        **{f"{kind} {what}": n for kind, by in counts.items() for what, n in by.items()},
    }
    if result.failures:
        lines = [f"{subject}: {'; '.join(reasons)}" for subject, reasons in result.failures.items()]
        raise dg.Failure(
            description=f"{len(lines)} deal(s) or record(s) of {key} did not fully load (the rest "
            "is loaded; re-run the partition to retry):\n" + "\n".join(lines[:50]),
            metadata={**metadata, "failures": len(lines)},
        )
    return dg.MaterializeResult(metadata=metadata)
