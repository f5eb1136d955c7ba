"""Oracle test: the SQL connected components against a plain-Python union-find."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pytest

from migration_pipeline.cleanse.dedup import connected_components


def union_find_labels(edges: list[tuple[int, int]]) -> dict[int, int]:
    """Every node on an edge → the smallest id of its component."""
    parent: dict[int, int] = {}

    def find(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return {node: find(node) for node in parent}


def sql_labels(edges: list[tuple[int, int]]) -> tuple[dict[int, int], int]:
    both = edges + [(b, a) for a, b in edges]
    con = duckdb.connect()
    con.register(
        "_edges",
        pa.table(
            {
                "a": pa.array([a for a, _ in both], pa.int64()),
                "b": pa.array([b for _, b in both], pa.int64()),
            }
        ),
    )
    con.execute("create temp table cc_edges as select * from _edges")
    steps = connected_components(con)
    labels = dict(con.execute("select node, label from cc_labels").fetchall())
    con.close()
    return labels, steps


def random_graph(rng: random.Random, nodes: int, edges: int) -> list[tuple[int, int]]:
    ids = rng.sample(range(1, nodes * 10), nodes)  # ids are not 1..n, and not in order
    out = []
    for _ in range(edges):
        a, b = rng.sample(ids, 2)
        out.append((a, b))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs(seed: int):
    rng = random.Random(seed)
    nodes = rng.choice((2, 5, 30, 200, 1000))
    edges = random_graph(rng, nodes, rng.randint(1, nodes * 2))
    labels, _ = sql_labels(edges)
    assert labels == union_find_labels(edges)


def test_a_long_chain_converges_in_few_steps():
    # 1-2-3-…-2000 in shuffled order: label propagation alone would need 2000 steps.
    rng = random.Random(1)
    edges = [(i, i + 1) for i in range(1, 2000)]
    rng.shuffle(edges)
    labels, steps = sql_labels(edges)
    assert set(labels.values()) == {1}
    assert steps <= 20


def test_no_edges_no_labels():
    assert sql_labels([]) == ({}, 1)
