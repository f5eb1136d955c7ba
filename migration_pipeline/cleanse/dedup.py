"""Duplicate persons and organizations: blocking, scoring, clustering, survivors.

The method is Splink's, written as our own SQL (``sql/cleanse/``) so every step is a table:

1. **Features** per record (``<entity>_features.sql``): names, phones, e-mails, domains,
   addresses, website. Names, addresses and websites are keyed in Python once per distinct
   value (:mod:`.names`).
2. **Blocking** (``<entity>_block_keys.sql`` → ``candidate_pairs.sql``): only records sharing
   a key (an e-mail, an E.164 phone, a name key, a domain…) are compared, so the work grows
   with the number of duplicates, not with n². Oversized blocks are skipped and counted.
3. **Scoring** (``<entity>_pairs.sql``): each comparison has ordered levels worth fixed
   points (the table of points is at the top of each file); a pair's score is their sum, and
   ``reason`` lists every level. **Deciding** (``pairs.sql`` → ``clean.<entity>_pairs``):
   ``merge_score`` and ``review_score`` from the config split pairs into merge / review /
   distinct, and a merge that would chain two records found distinct goes to review.
4. **Clusters** (``cc_*.sql``): connected components of the merge pairs, by iterated
   smallest-label propagation with pointer jumping, until nothing changes.
5. **Survivors** (``<entity>_profile.sql`` → ``duplicates.sql`` →
   ``clean.<entity>_duplicates``): most complete, then most recently updated, then most
   linked, then lowest id.
6. **Review** (``review.sql`` → ``clean.<entity>_review``): borderline pairs not merged.

Deleted records take no part: they never migrate, and must not become a survivor.
"""

from __future__ import annotations

import duckdb

from ..config import DedupConfig
from ..sql import read_sql
from .names import (
    NAME_SCHEMA,
    WEBSITE_SCHEMA,
    address_keys,
    organization_name_keys,
    person_name_keys,
    websites,
)
from .phones import REGION_SCHEMA, address_regions
from .values import map_distinct, workers

PERSON = "person"
ORGANIZATION = "organization"
ENTITIES = (PERSON, ORGANIZATION)

REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "persons": (("org_id", "organizations"),),
    "deals": (("person_id", "persons"), ("org_id", "organizations")),
    "leads": (("person_id", "persons"), ("org_id", "organizations")),
    "activities": (("person_id", "persons"), ("org_id", "organizations")),
    "notes": (("person_id", "persons"), ("org_id", "organizations")),
    "deal_participants": (("person_id", "persons"),),
}
"""Re-pointed clean tables → (column, clean table it references). Every such reference must
name an ``active`` record (a survivor or a record without duplicates): see
:func:`references_to_inactive`."""

MAX_CC_STEPS = 100  # pointer jumping converges in O(log diameter); this only guards a bug


def _key_features(con: duckdb.DuckDBPyConnection, entity: str) -> None:
    """Map the distinct names (and for organizations addresses, websites and countries) of the
    features table to keys, as temporary tables the block-key and pair SQL join."""
    if entity == PERSON:
        map_distinct(
            con,
            "select distinct display_name from person_features "
            "where display_name is not null order by all",
            person_name_keys,
            NAME_SCHEMA,
            "person_names",
        )
        return
    mappings = (
        ("display_name", organization_name_keys, NAME_SCHEMA, "organization_names"),
        ("address", address_keys, NAME_SCHEMA, "organization_addresses"),
        ("website", websites, WEBSITE_SCHEMA, "organization_sites"),
        (
            "country_text, country_from_field",
            address_regions,
            REGION_SCHEMA,
            "organization_countries",
        ),
    )
    with workers() as shared:
        for columns, mapper, schema, table in mappings:
            first = columns.split(",")[0]
            map_distinct(
                con,
                f"select distinct {columns} from organization_features "
                f"where {first} is not null order by all",
                mapper,
                schema,
                table,
                shared,
            )


def build_pairs(con: duckdb.DuckDBPyConnection, entity: str, config: DedupConfig) -> dict[str, int]:
    """Create ``clean.<entity>_pairs``: every candidate pair, scored, with its decision.
    Returns counts for the asset's metadata (candidates, and keys skipped as oversized)."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}")
    features_parameters = [config.tax_id_field_pattern] if entity == ORGANIZATION else []
    con.execute(read_sql(f"cleanse/{entity}_features.sql"), features_parameters)
    _key_features(con, entity)
    con.execute(read_sql(f"cleanse/{entity}_block_keys.sql"))
    con.execute(read_sql("cleanse/candidate_pairs.sql", entity=entity), [config.max_block_size])
    con.execute(read_sql("cleanse/macros.sql"))
    con.execute(read_sql(f"cleanse/{entity}_pairs.sql"))
    con.execute(
        read_sql("cleanse/pairs.sql", entity=entity), [config.merge_score, config.review_score]
    )
    skipped = con.execute(
        f"""
        select count(*) from (
            select rule, key from {entity}_block_keys
            where key is not null and key <> ''
            group by all having count(distinct id) > ?
        )
        """,
        [config.max_block_size],
    ).fetchall()[0][0]
    candidates = con.execute(f"select count(*) from {entity}_candidates").fetchall()[0][0]
    return {"candidate_pairs": int(candidates), "oversized_blocks_skipped": int(skipped)}


def connected_components(con: duckdb.DuckDBPyConnection) -> int:
    """Label every node of the temporary edge table ``cc_edges(a, b)`` (both directions) with
    the smallest id of its connected component, in the temporary table ``cc_labels(node,
    label)``. Returns the number of steps it took."""
    con.execute(read_sql("cleanse/cc_labels.sql"))
    for step in range(1, MAX_CC_STEPS + 1):
        con.execute(read_sql("cleanse/cc_step.sql"))
        changed = con.execute(
            "select count(*) from cc_next n join cc_labels l using (node) where n.label <> l.label"
        ).fetchall()[0][0]
        con.execute("drop table cc_labels")
        con.execute("alter table cc_next rename to cc_labels")
        if changed == 0:
            return step
    raise RuntimeError(f"connected components did not converge in {MAX_CC_STEPS} steps")


def build_duplicates(con: duckdb.DuckDBPyConnection, entity: str) -> dict[str, int]:
    """Create ``clean.<entity>_duplicates`` from the merge pairs: clusters and survivors."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}")
    con.execute(read_sql("cleanse/cc_edges.sql", entity=entity))
    steps = connected_components(con)
    con.execute(read_sql(f"cleanse/{entity}_profile.sql"))
    con.execute(read_sql("cleanse/duplicates.sql", entity=entity))
    clusters, merged = con.execute(
        f"select count(*) filter (where is_survivor), count(*) filter (where not is_survivor) "
        f"from clean.{entity}_duplicates"
    ).fetchall()[0]
    return {"clusters": int(clusters), "merged_away": int(merged), "cc_steps": steps}


def build_review(con: duckdb.DuckDBPyConnection, entity: str) -> None:
    """Create ``clean.<entity>_review``: borderline pairs left unmerged, for a human."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}")
    con.execute(read_sql("cleanse/review.sql", entity=entity))


def build_survivors(con: duckdb.DuckDBPyConnection, entity: str) -> None:
    """Create ``clean.persons`` or ``clean.organizations``: every record with its status and
    survivor; survivors carry the union of their cluster's values."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}")
    con.execute(read_sql(f"cleanse/{entity}s.sql"))


def build_repointed(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Create ``clean.<table>`` (one of :data:`REFERENCES` but persons) with its person and
    organization references re-pointed to survivors."""
    if table not in REFERENCES or table == "persons":
        raise ValueError(f"{table!r} is not a re-pointed table")
    con.execute(read_sql("cleanse/reference_macros.sql"))
    con.execute(read_sql(f"cleanse/{table}.sql"))


def references_to_inactive(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    """For each reference column of ``clean.<table>``: how many rows point at a record that is
    merged away, deleted or missing (all must be 0 after re-pointing)."""
    counts = {}
    for column, target in REFERENCES[table]:
        counts[f"{column} → {target}"] = con.execute(
            f"""
            select count(*) from clean.{table} t
            left join clean.{target} r on r.id = t.{column}
            where t.{column} is not null and (r.id is null or r.status <> 'active')
            """
        ).fetchall()[0][0]
    return counts


def pairwise_quality(predicted: list[list[int]], truth: list[list[int]]) -> dict[str, float | int]:
    """Pairwise precision and recall of ``predicted`` clusters against ``truth`` clusters: a
    pair is every two records put in one cluster (the measure Splink and the literature use).
    No predicted pairs gives precision 1.0; no true pairs gives recall 1.0."""

    def pairs(clusters: list[list[int]]) -> set[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for cluster in clusters:
            members = sorted(set(cluster))
            out.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
        return out

    found, expected = pairs(predicted), pairs(truth)
    hits = len(found & expected)
    return {
        "precision": hits / len(found) if found else 1.0,
        "recall": hits / len(expected) if expected else 1.0,
        "true_pairs": len(expected),
        "found_pairs": len(found),
        "correct_pairs": hits,
    }
