"""Group ``pipedrive_raw``: one asset per Pipedrive entity, one table per asset in ``raw``.

The raw tables are the input of every later stage and the customer's backup of the source
account: typed columns for what later stages read, plus the original record as JSON.
"""

from collections.abc import Iterator

import dagster as dg

from migration_pipeline.db import Warehouse, table_metadata
from migration_pipeline.extract.engine import extract
from migration_pipeline.extract.specs import SPECS, RawSpec
from migration_pipeline.resources import PipedriveResource
from migration_pipeline.sql import read_sql

GROUP = "pipedrive_raw"

# References that must resolve between raw tables: (table, column, target table, target key).
REFERENCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "deals": (
        ("person_id", "persons", "id"),
        ("org_id", "organizations", "id"),
        ("stage_id", "stages", "id"),
        ("pipeline_id", "pipelines", "id"),
        ("owner_id", "users", "id"),
    ),
    "persons": (("org_id", "organizations", "id"), ("owner_id", "users", "id")),
    "organizations": (("owner_id", "users", "id"),),
    "stages": (("pipeline_id", "pipelines", "id"),),
    "activities": (
        ("deal_id", "deals", "id"),
        ("person_id", "persons", "id"),
        ("org_id", "organizations", "id"),
        ("owner_id", "users", "id"),
    ),
    "notes": (
        ("deal_id", "deals", "id"),
        ("person_id", "persons", "id"),
        ("org_id", "organizations", "id"),
    ),
    "deal_participants": (("deal_id", "deals", "id"), ("person_id", "persons", "id")),
    "deal_followers": (("deal_id", "deals", "id"), ("user_id", "users", "id")),
    "mail_messages": (("deal_id", "deals", "id"),),
}


def _deps(spec: RawSpec) -> list[dg.AssetKey]:
    return [dg.AssetKey(["raw", "deals"])] if spec.per_deal is not None else []


def _check_specs(spec: RawSpec) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(["raw", spec.table])
    checks = [
        dg.AssetCheckSpec(
            "unique_key",
            asset=key,
            description=f"({', '.join(spec.key)}) is unique in raw.{spec.table}",
            blocking=True,
        )
    ]
    if spec.table in REFERENCES:
        targets = sorted({target for _, target, _ in REFERENCES[spec.table]} - {spec.table})
        checks.append(
            dg.AssetCheckSpec(
                "references_resolve",
                asset=key,
                additional_deps=[dg.AssetKey(["raw", target]) for target in targets],
                description=(
                    "every non-null reference points at an extracted record; breakages are "
                    "counted and listed (a warning: later stages decide what to do with them)"
                ),
            )
        )
    return checks


def unique_key_check(warehouse: Warehouse, spec: RawSpec) -> dg.AssetCheckResult:
    keys = ", ".join(f'"{name}"' for name in spec.key)
    with warehouse.connect(read_only=True) as con:
        duplicates = con.execute(
            f"select count(*) from (select {keys} from {spec.qualified} group by all having count(*) > 1)"
        ).fetchall()[0][0]
    return dg.AssetCheckResult(
        check_name="unique_key",
        passed=duplicates == 0,
        metadata={"duplicate_keys": int(duplicates)},
    )


def references_check(warehouse: Warehouse, spec: RawSpec) -> dg.AssetCheckResult:
    broken: dict[str, int] = {}
    samples: list[str] = []
    with warehouse.connect(read_only=True) as con:
        tables = {
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
        }
        for column, target, target_key in REFERENCES[spec.table]:
            if target not in tables:
                broken[f"{column} → {target} (not extracted)"] = -1
                continue
            rows = con.execute(
                f"""
                select s."{column}" from {spec.qualified} s
                left join raw.{target} t on t."{target_key}" = s."{column}"
                where s."{column}" is not null and t."{target_key}" is null
                order by 1
                """
            ).fetchall()
            broken[f"{column} → {target}"] = len(rows)
            samples.extend(f"{column}={row[0]}" for row in rows[:5])
    total = sum(count for count in broken.values() if count > 0)
    return dg.AssetCheckResult(
        check_name="references_resolve",
        passed=total == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "broken_references": int(total),
            **{f"broken {name}": count for name, count in broken.items()},
            "examples": ", ".join(samples[:20]) or "none",
        },
    )


def build_raw_asset(spec: RawSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=["raw", spec.table],
        group_name=GROUP,
        kinds={"pipedrive", "duckdb"},
        description=spec.description,
        deps=_deps(spec),
        check_specs=_check_specs(spec),
    )
    def _asset(
        context: dg.AssetExecutionContext, pipedrive: PipedriveResource, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with pipedrive.client() as client:
            result = extract(client, warehouse.file(), spec, progress=context.log.info)
            stats = client.stats
        with warehouse.connect(read_only=True) as con:
            metadata = table_metadata(con, spec.qualified)
        context.log.info(
            "raw.%s: %d rows, %d quarantined, %d requests, ~%d Pipedrive tokens",
            spec.table,
            result.rows,
            result.quarantined,
            stats.requests,
            stats.tokens_spent,
        )
        yield dg.MaterializeResult(
            metadata={
                **metadata,
                "quarantined": result.quarantined,
                "pages": result.pages,
                "resumed_from_checkpoint": result.resumed,
                "requests": stats.requests,
                "retries": stats.retries,
                "rate_limited_429": stats.rate_limited,
                "token_cost": stats.tokens_spent,
            }
        )
        yield unique_key_check(warehouse, spec)
        if spec.table in REFERENCES:
            yield references_check(warehouse, spec)

    return _asset


@dg.asset(
    key=["raw", "custom_field_values"],
    group_name=GROUP,
    kinds={"duckdb"},
    deps=[
        dg.AssetKey(["raw", table])
        for table in (
            "deals",
            "persons",
            "organizations",
            "deal_fields",
            "person_fields",
            "organization_fields",
        )
    ],
)
def raw_custom_field_values(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    """One row per custom-field value of a deal, person or organization, by field name: the raw
    tables keep Pipedrive's hash-keyed values; this table reads them with the field
    definitions (name, type, option labels)."""
    with warehouse.connect() as con:
        con.execute(read_sql("extract/custom_field_values.sql"))
        metadata = table_metadata(con, "raw.custom_field_values")
        unnamed = con.execute(
            "select count(*) from raw.custom_field_values where field_name is null"
        ).fetchall()[0][0]
    context.log.info("raw.custom_field_values: %d values", metadata["dagster/row_count"].value)
    return dg.MaterializeResult(metadata={**metadata, "values_without_a_definition": int(unnamed)})


raw_assets = [*(build_raw_asset(spec) for spec in SPECS), raw_custom_field_values]
