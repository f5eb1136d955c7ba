"""Duplicate rules on hand-made persons: what merges, what stays apart, who survives."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from migration_pipeline.cleanse import dedup
from migration_pipeline.cleanse.emails import build_emails
from migration_pipeline.cleanse.phones import build_phones
from migration_pipeline.config import DedupConfig, PhonesConfig
from migration_pipeline_tests.cleanse.rawdata import load_raw
from migration_pipeline_tests.cleanse.scenario import _person


def cleanse_contacts(
    db: Path, persons: list[dict], organizations: list[dict]
) -> duckdb.DuckDBPyConnection:
    load_raw(db, {"persons": persons, "organizations": organizations})
    con = duckdb.connect(str(db))
    con.execute("create schema if not exists clean")
    build_emails(con)
    build_phones(con, PhonesConfig(fallback_regions=("UA", "DE", "US")))
    for entity in (dedup.ORGANIZATION, dedup.PERSON):
        dedup.build_pairs(con, entity, DedupConfig())
        dedup.build_duplicates(con, entity)
        dedup.build_survivors(con, entity)
    return con


ORGS = [{"id": 1, "name": "Acme GmbH"}, {"id": 2, "name": "Other Ltd"}]


def survivors(con: duckdb.DuckDBPyConnection) -> dict[int, int]:
    return dict(con.execute("select id, survivor_id from clean.persons").fetchall())


@pytest.mark.parametrize(
    ("a", "b", "merged"),
    [
        # the same person: a shared phone or e-mail, or the same organization, with the name
        (_person(1, "Ivan Petrov", 1, ["+7 916 123-45-67"]), _person(2, "Petrov Ivan", None, ["89161234567"]), True),
        (_person(1, "Ivan Petrov", 1, [], ["i.petrov@acme.de"]), _person(2, "IVAN PETROV", 2, [], ["I.Petrov@ACME.de "]), True),
        (_person(1, "Иван Петров", 1), _person(2, "Ivan Petrov", 1), True),
        (_person(1, "Ivan Petrov", 1), _person(2, "I. Petrov", 1), True),
        (_person(1, "Ivan Petrov", 1), _person(2, "Ivan Petorv", 1), True),
        (_person(1, "Petrov Ivan Sergeevich", 1), _person(2, "Ivan Petrov", 1), True),
        (_person(1, "Ivan Petrov", 1, ["+7 916 123-45-67"]), _person(2, "Ivan", None, ["+79161234567"]), True),
        # two people: same common name, other phones and e-mails, other organizations
        (_person(1, "Ivan Petrov", 1, ["+7 916 123-45-67"], ["ivan@acme.de"]),
         _person(2, "Ivan Petrov", 2, ["+7 903 765-43-21"], ["petrov@other.com"]), False),
        # colleagues sharing a switchboard and an info@ mailbox
        (_person(1, "Anna Schmidt", 1, ["+49 30 1234567"], ["info@acme.de"]),
         _person(2, "Hans Weber", 1, ["+49 30 1234567"], ["info@acme.de"]), False),
        # husband and wife at one company
        (_person(1, "Ivan Petrov", 1), _person(2, "Ivan Petrova", 1), False),
        # Anna and Inna are not a typo
        (_person(1, "Anna Ivanova", 1), _person(2, "Inna Ivanova", 1), False),
    ],
)  # fmt: skip
def test_merge_decisions(tmp_path: Path, a: dict, b: dict, merged: bool):
    con = cleanse_contacts(tmp_path / "contacts.duckdb", [a, b], ORGS)
    found = survivors(con)
    assert (found[1] == found[2]) is merged, con.execute(
        "select score, decision, reason from clean.person_pairs"
    ).fetchall()


def test_an_initial_matching_two_different_people_merges_with_neither(tmp_path: Path):
    persons = [
        _person(1, "Makar Sheremeta", 1, ["+380 63 818 71 70"], ["sheremeta73@acme.de"]),
        _person(2, "Martin Sheremeta", 1, ["+380 63 110 87 47"], ["martin@acme.de"]),
        _person(3, "M. Sheremeta", 1),
    ]
    con = cleanse_contacts(tmp_path / "contacts.duckdb", persons, ORGS)
    assert len(set(survivors(con).values())) == 3
    reasons = dict(
        con.execute(
            "select id_l || '-' || id_r, reason from clean.person_pairs where decision = 'review'"
        ).fetchall()
    )
    assert "not merged: 3 also matches" in reasons["1-3"]
    assert "not merged: 3 also matches" in reasons["2-3"]


def test_survivor_is_the_most_complete_then_newest_then_lowest_id(tmp_path: Path):
    persons = [
        _person(1, "Ivan Petrov", 1, ["+7 916 123-45-67"], update_time="2026-01-01T00:00:00Z"),
        _person(2, "Ivan Petrov", 1, ["+7 916 123-45-67"], ["ivan@acme.de"],
                update_time="2025-01-01T00:00:00Z"),  # most complete: survives
        _person(3, "Anna Ivanova", 1, ["+7 903 111-22-33"], update_time="2025-01-01T00:00:00Z"),
        _person(4, "Anna Ivanova", 1, ["+7 903 111-22-33"], update_time="2026-01-01T00:00:00Z"),
        _person(5, "Oleg Sidorov", 1, ["+7 903 999-88-77"]),
        _person(6, "Oleg Sidorov", 1, ["+7 903 999-88-77"]),
    ]  # fmt: skip
    con = cleanse_contacts(tmp_path / "contacts.duckdb", persons, ORGS)
    assert survivors(con) == {1: 2, 2: 2, 3: 4, 4: 4, 5: 5, 6: 5}
    [(phones, emails, merged)] = con.execute(
        "select phones, emails, merged_ids from clean.persons where id = 2"
    ).fetchall()
    assert [p["value"] for p in phones] == ["+79161234567"]  # union, each value once
    assert [e["value"] for e in emails] == ["ivan@acme.de"]
    assert merged == [1]
