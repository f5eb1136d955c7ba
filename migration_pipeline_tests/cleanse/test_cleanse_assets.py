"""The cleansed group materialised on a generated account: checks, duplicate quality against
the generator's truth, re-pointing, accounting, exports, report, determinism."""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq
import pytest

from migration_pipeline.cleanse import dedup, selection
from migration_pipeline.defs.cleanse.assets import cleanse_assets
from migration_pipeline_tests.cleanse.conftest import Cleansed, Extracted, materialize_cleanse

CLEAN_TABLES = sorted(
    "clean." + key.path[1]
    for asset in cleanse_assets
    for key in asset.keys
    if key.path[0] == "clean"
)


def test_group_materializes_with_passing_checks(cleansed_small: Cleansed):
    assert cleansed_small.result.success
    materialized = {
        event.asset_key for event in cleansed_small.result.get_asset_materialization_events()
    }
    assert materialized == {key for asset in cleanse_assets for key in asset.keys}
    evaluations = cleansed_small.result.get_asset_check_evaluations()
    assert len(evaluations) == 7
    assert all(evaluation.passed for evaluation in evaluations)


@pytest.mark.parametrize("entity", ["person", "organization"])
def test_duplicates_match_the_generators_truth(
    cleansed_small: Cleansed, small_account: Extracted, entity: str
):
    with duckdb.connect(str(cleansed_small.db), read_only=True) as con:
        predicted = [
            row[0]
            for row in con.execute(
                f"select list(id) from clean.{entity}_duplicates group by survivor_id"
            ).fetchall()
        ]
    quality = dedup.pairwise_quality(predicted, small_account.truth[f"{entity}s"])
    assert quality["true_pairs"] > 20  # the account really has duplicates to find
    assert quality["precision"] >= 0.98, quality
    assert quality["recall"] >= 0.95, quality


def test_namesakes_stay_apart(cleansed_small: Cleansed, small_account: Extracted):
    """Hard negatives: people sharing a common name, with other phones and e-mails."""
    with duckdb.connect(str(cleansed_small.db), read_only=True) as con:
        survivors = dict(con.execute("select id, survivor_id from clean.persons").fetchall())
    for group in small_account.truth["person_namesakes"]:
        assert len({survivors[pid] for pid in group}) == len(group), group


def test_no_reference_points_at_a_merged_away_record(cleansed_small: Cleansed):
    with duckdb.connect(str(cleansed_small.db), read_only=True) as con:
        for table in dedup.REFERENCES:
            assert not any(dedup.references_to_inactive(con, table).values()), table
        # not vacuous: raw deals and activities did name merged-away persons, now survivors
        moved = con.execute(
            """
            select count(*) from clean.activities a
            join clean.persons p on p.id = a.source_person_id
            where p.status = 'merged' and a.person_id = p.survivor_id
            """
        ).fetchall()[0][0]
        assert moved > 0


def test_survivors_carry_the_union_of_their_clusters_values(cleansed_small: Cleansed):
    with duckdb.connect(str(cleansed_small.db), read_only=True) as con:
        missing = con.execute(
            """
            select count(*) from clean.persons m
            join clean.phones ph on ph.person_id = m.id and ph.e164 is not null
            join clean.persons s on s.id = m.survivor_id
            where m.status = 'merged'
                and not list_contains(list_transform(s.phones, lambda p: p.value), ph.e164)
            """
        ).fetchall()[0][0]
        missing += con.execute(
            """
            select count(*) from clean.persons m
            join clean.emails e on e.person_id = m.id and e.email is not null
            join clean.persons s on s.id = m.survivor_id
            where m.status = 'merged' and not list_contains(
                list_transform(s.emails, lambda x: lower(x.value)), lower(e.email)
            )
            """
        ).fetchall()[0][0]
        labels = con.execute(
            """
            select count(*) from clean.persons m join clean.persons s on s.id = m.survivor_id
            where m.status = 'merged'
                and not list_has_all(s.label_ids, coalesce(
                    (select try_cast(label_ids as BIGINT[]) from raw.persons r where r.id = m.id),
                    []))
            """
        ).fetchall()[0][0]
    assert (missing, labels) == (0, 0)


def test_every_extracted_record_is_accounted_for(cleansed_small: Cleansed):
    with duckdb.connect(str(cleansed_small.db), read_only=True) as con:
        assert not any(selection.unaccounted(con).values())
        for entity, record_id in selection.RECORD_IDS.items():
            raw = con.execute(f"select count(distinct {record_id}) from raw.{entity}").fetchall()
            decided = con.execute(
                "select count(*) filter (where decision = 'migrate'), "
                "count(*) filter (where decision = 'archive'), "
                "count(*) filter (where decision = 'merged'), "
                "count(*) filter (where decision = 'failed') "
                "from clean.selection where entity = ?",
                [entity],
            ).fetchall()[0]
            assert sum(decided) == raw[0][0], entity
        merged = con.execute(
            "select count(*) from clean.selection s join clean.persons p "
            "on s.entity = 'persons' and s.record_id = p.id::VARCHAR "
            "where s.decision = 'merged' and s.merged_into <> p.survivor_id::VARCHAR"
        ).fetchall()[0][0]
        assert merged == 0


def test_what_does_not_migrate_is_exported(cleansed_small: Cleansed):
    directory = cleansed_small.data_dir / "exports" / "archive"
    with duckdb.connect(str(cleansed_small.db), read_only=True) as con:
        for entity in selection.ENTITIES:
            expected = con.execute(
                "select count(*) from clean.selection where entity = ? and decision <> 'migrate'",
                [entity],
            ).fetchall()[0][0]
            table = pq.read_table(directory / f"{entity}.parquet")
            assert table.num_rows == expected, entity
            assert table.column_names[:3] == ["decision", "reason", "merged_into"]
            header = (directory / f"{entity}.csv").read_text(encoding="utf-8").splitlines()[0]
            assert header.startswith("decision,reason,merged_into")


def test_pre_migration_report(cleansed_small: Cleansed):
    text = (cleansed_small.data_dir / "reports" / "pre_migration.md").read_text(encoding="utf-8")
    for section in ("phone numbers", "e-mail addresses", "duplicates", "selection",
                    "amoCRM requests (estimate)"):  # fmt: skip
        assert f"## {section}" in text
    assert "requests/s" in text
    [event] = [
        e
        for e in cleansed_small.result.get_asset_materialization_events()
        if e.asset_key.path == ["report", "pre_migration"]
    ]
    metadata = event.materialization.metadata
    assert metadata["report"].value == text
    assert metadata["amocrm_requests"].value > 6


def test_same_input_gives_identical_tables(
    cleansed_small: Cleansed, small_account: Extracted, tmp_path, monkeypatch
):
    again = materialize_cleanse(small_account.raw_db, tmp_path / "again", monkeypatch)
    assert again.result.success
    with (
        duckdb.connect(str(cleansed_small.db), read_only=True) as first,
        duckdb.connect(str(again.db), read_only=True) as second,
    ):
        for table in [*CLEAN_TABLES, "report.pre_migration"]:
            query = f"select * from {table} order by all"
            assert first.execute(query).fetchall() == second.execute(query).fetchall(), table
