"""Group ``pipedrive_raw`` materialised with ``dg.materialize`` against the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

from migration_pipeline.clients.errors import Unavailable
from migration_pipeline.clients.pipedrive import PipedriveClient, make_http_client
from migration_pipeline.defs.extract.assets import raw_assets
from migration_pipeline.extract.engine import extract
from migration_pipeline.extract.specs import SPEC_BY_TABLE, SPECS
from migration_pipeline.resources import PipedriveResource, Warehouse
from migration_pipeline.sandbox import PIPEDRIVE_SANDBOX_TOKEN, PIPEDRIVE_URL, pipedrive_transport
from migration_pipeline.sandbox.dataset import read_entity, write_entity
from migration_pipeline_tests.conftest import World
from migration_pipeline_tests.sandbox.pipedrive_fixtures import write_dataset

# raw table → the dataset file(s) its rows come from
SOURCE_FILES = {
    "users": "users",
    "currencies": "currencies",
    "activity_types": "activity_types",
    "pipelines": "pipelines",
    "stages": "stages",
    "deal_fields": "deal_fields",
    "person_fields": "person_fields",
    "organization_fields": "organization_fields",
    "activity_fields": "activity_fields",
    "product_fields": "product_fields",
    "deals": "deals",
    "organizations": "organizations",
    "persons": "persons",
    "activities": "activities",
    "products": "products",
    "notes": "notes",
    "leads": "leads",
    "deal_participants": "deal_participants",
    "deal_followers": "deal_followers",
    "mail_messages": "deal_mail_messages",
}


class FailsAfter(httpx.BaseTransport):
    """Passes ``requests`` requests through, then the network is down."""

    def __init__(self, inner: httpx.BaseTransport, *, requests: int) -> None:
        self.inner, self.left = inner, requests

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.left <= 0:
            raise httpx.ConnectError("network is down", request=request)
        self.left -= 1
        return self.inner.handle_request(request)


def materialize_raw(
    world: World,
    *,
    faults: str | None = None,
    raise_on_error: bool = True,
    tables: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    assets = [a for a in raw_assets if tables is None or a.key.path[1] in tables]
    with dg.instance_for_test() as instance:
        return dg.materialize(
            assets,
            instance=instance,
            resources={
                "pipedrive": PipedriveResource(sandbox_faults=faults, retry_backoff_seconds=0.01),
                "warehouse": Warehouse(path=str(world.duckdb)),
            },
            raise_on_error=raise_on_error,
        )


def metadata_of(result: dg.ExecuteInProcessResult, table: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == dg.AssetKey(["raw", table]):
            return {name: value.value for name, value in materialization.metadata.items()}
    raise AssertionError(f"raw.{table} was not materialised")


def expected_keys(dataset: Path, table: str) -> set[tuple]:
    spec = {s.table: s for s in SPECS}[table]
    records = read_entity(dataset, SOURCE_FILES[table])
    if table == "deal_followers":
        return {(r["deal_id"], r["user_id"]) for r in records}
    if spec.key == ("key",):
        return {(r["key"],) for r in records}
    return {(r["id"],) for r in records}


def extracted_keys(db: Path, table: str) -> set[tuple]:
    spec = {s.table: s for s in SPECS}[table]
    columns = ", ".join(f'"{c}"' for c in spec.key)
    with duckdb.connect(str(db), read_only=True) as con:
        return set(con.execute(f"select {columns} from raw.{table}").fetchall())


@pytest.fixture
def fixture_dataset(tmp_path: Path, world: World) -> Path:
    dataset = write_dataset(tmp_path / "dataset")
    world.configure(from_dir=dataset)
    return dataset


def test_every_entity_is_extracted_exactly(world: World, fixture_dataset: Path) -> None:
    result = materialize_raw(world)
    assert result.success
    for table in SOURCE_FILES:
        assert extracted_keys(world.duckdb, table) == expected_keys(fixture_dataset, table), table
    checks = {
        (c.asset_key.path[1], c.check_name): c.passed for c in result.get_asset_check_evaluations()
    }
    assert all(passed for (table, name), passed in checks.items() if name == "unique_key")


def test_the_raw_copy_keeps_each_original_record(world: World, fixture_dataset: Path) -> None:
    materialize_raw(world, tables=["deals", "persons"])
    originals = {r["id"]: r for r in read_entity(fixture_dataset, "deals")}
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        rows = con.execute("select id, record::varchar, source from raw.deals").fetchall()
    counts = {"participants_count", "followers_count", "email_messages_count"}
    for deal_id, record, source in rows:
        served = json.loads(record)
        assert counts <= served.keys()  # what include_fields asked for
        assert {k: v for k, v in served.items() if k not in counts} == originals[deal_id]
        assert source == ("archived" if originals[deal_id]["is_archived"] else "list")


def test_per_deal_calls_only_for_deals_with_sub_resources(
    world: World, fixture_dataset: Path
) -> None:
    result = materialize_raw(world, tables=["deals", "deal_participants"])
    deals_with_participants = {
        r["deal_id"] for r in read_entity(fixture_dataset, "deal_participants")
    }
    assert metadata_of(result, "deal_participants")["requests"] == len(deals_with_participants)


def test_extraction_survives_faults_with_the_same_result(
    world: World, fixture_dataset: Path
) -> None:
    faults = "429=0.03,5xx=0.1,timeout=0.05,html=0.05,truncate=0.05,seed=11"
    result = materialize_raw(world, faults=faults)
    assert result.success
    for table in SOURCE_FILES:
        assert extracted_keys(world.duckdb, table) == expected_keys(fixture_dataset, table), table
    assert sum(world.pipedrive.faults_injected().values()) > 0


def test_an_interrupted_extraction_resumes_from_its_checkpoint(
    world: World, tmp_path: Path
) -> None:
    dataset = tmp_path / "many"
    notes = [
        {
            "id": i,
            "content": f"note {i}",
            "deal_id": None,
            "add_time": "2026-01-01 00:00:00",
            "update_time": "2026-01-01 00:00:00",
        }
        for i in range(1, 1201)
    ]
    write_entity(dataset, "notes", notes)
    world.configure(from_dir=dataset)
    spec = SPEC_BY_TABLE["notes"]

    def client(transport: httpx.BaseTransport) -> PipedriveClient:
        http = make_http_client(PIPEDRIVE_URL, PIPEDRIVE_SANDBOX_TOKEN, transport=transport)
        return PipedriveClient(http, page_size=100, max_retries=0)

    # The network goes down after four pages: the run dies mid-extraction.
    with pytest.raises(Unavailable):
        extract(
            client(FailsAfter(pipedrive_transport(world.settings), requests=4)), world.duckdb, spec
        )
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        staged = con.execute("select count(*) from raw._staging_notes").fetchall()[0][0]
        assert staged == 400
        assert (
            con.execute(
                "select count(*) from information_schema.tables where table_name = 'notes'"
            ).fetchall()[0][0]
            == 0
        )
    resumed = client(pipedrive_transport(world.settings))
    result = extract(resumed, world.duckdb, spec)
    assert result.resumed
    assert resumed.stats.requests == 8  # pages 5..12, not the first four again
    assert extracted_keys(world.duckdb, "notes") == {(i,) for i in range(1, 1201)}


def test_bad_records_are_quarantined_with_their_reason(world: World, tmp_path: Path) -> None:
    dataset = tmp_path / "bad"
    write_entity(
        dataset,
        "persons",
        [
            {"id": 1, "name": "Good Person", "org_id": None, "add_time": "2026-01-01T00:00:00Z"},
            {"name": "No id at all"},
            {"id": "abc", "name": "Id is not a number"},
            {"id": 2, "name": "Bad org id", "org_id": "acme", "add_time": "yesterday"},
        ],
    )
    world.configure(from_dir=dataset)
    result = materialize_raw(world, tables=["persons"])
    assert result.success
    assert metadata_of(result, "persons")["quarantined"] == 2
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        assert con.execute("select id from raw.persons order by id").fetchall() == [(1,), (2,)]
        problems = con.execute("select _problems from raw.persons where id = 2").fetchall()[0][0]
        reasons = con.execute("select reason from raw.quarantine where tbl = 'persons'").fetchall()
    assert sorted(problems) == [
        "add_time: expected timestamptz, got yesterday",
        "org_id: expected bigint, got acme",
    ]
    assert reasons == [("missing or invalid key (id)",)] * 2


def test_a_bad_dataset_line_fails_the_asset_naming_file_and_line(
    world: World, tmp_path: Path
) -> None:
    dataset = tmp_path / "broken"
    dataset.mkdir()
    (dataset / "persons.jsonl").write_text(
        '{"id": 1, "name": "ok"}\n{"id": 2, "name": \n', encoding="utf-8"
    )
    world.configure(from_dir=dataset)
    result = materialize_raw(world, tables=["persons"], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "persons.jsonl:2" in failure.step_failure_data.error.message + str(
        failure.step_failure_data.error.cause
    )


def test_a_generated_account_is_extracted_exactly(world: World) -> None:
    """Every entity of the tiny generated account, key for key (deleted and archived deals too)."""
    result = materialize_raw(world)
    assert result.success
    dataset = world.settings.dataset_dir()
    for table in SOURCE_FILES:
        assert extracted_keys(world.duckdb, table) == expected_keys(dataset, table), table


def test_custom_fields_are_readable_by_name(world: World) -> None:
    materialize_raw(world)
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        rows = con.execute(
            "select field_type, count(*), count(field_name), count(value_text) "
            "from raw.custom_field_values group by all order by all"
        ).fetchall()
        money = con.execute(
            "select value_text from raw.custom_field_values where field_type = 'monetary' limit 1"
        ).fetchall()[0][0]
    types = {row[0] for row in rows}
    assert {"enum", "set", "monetary", "date", "address", "varchar"} <= types
    assert all(total == named == text for _, total, named, text in rows)  # every value named
    assert money.split(" ")[-1].isalpha()  # the amount with its currency
