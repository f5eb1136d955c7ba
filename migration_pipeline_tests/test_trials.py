"""Randomized fault trials (:mod:`migration_pipeline.trials`) on four fixed seeds: small
migrations under 429 bursts, 5xx, timeouts, answers lost after the commit, 403 bans, a run
SIGKILLed mid-partition and another process holding the DuckDB file, each re-run until done
and then checked: nothing created twice, nothing missing, no partition left failed.

``benchmarks/bench_trials.py`` runs a hundred seeds; the first three were chosen so that every
fault kind really happens (not only is drawn) at least once, the kill and the DuckDB holder
included, and each plans few partitions; the fourth is a bug the runner found.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx

from migration_pipeline.sandbox import AMOCRM_URL, amocrm_transport
from migration_pipeline.trials import FAULT_KINDS, TrialWorld, check_trial, choose_faults, run_trial

# seed → the faults its trial must show happening (its plan draws more).
SEEDS = {
    541: {"429", "kill", "duckdb_lock"},
    290: {"5xx", "timeout", "lost", "duckdb_lock"},
    60: {"429", "kill", "ban"},
    # Found by the runner: companies left in doubt by repeated timeouts, their leads created
    # without them and never linked on the re-run (the read-back caught it).
    1014: {"5xx", "timeout", "lost"},
}


def test_the_seeds_cover_every_fault_kind() -> None:
    assert set().union(*SEEDS.values()) == set(FAULT_KINDS)
    for seed, kinds in SEEDS.items():
        assert kinds <= set(choose_faults(seed).kinds)


def tamper(world: TrialWorld) -> None:
    """Break what a trial checks, behind the loader's back: a second contact with a planned
    contact's Pipedrive id in amoCRM, and a planned note the ledger no longer has."""
    with duckdb.connect(str(world.duckdb)) as con:
        (key,) = con.execute("select min(source_key) from plan.contacts").fetchone()
        (field_id,) = con.execute(
            "select amo_field_id from map.fields "
            "where purpose = 'pipedrive_id' and entity = 'contacts'"
        ).fetchone()
        con.execute(
            "delete from ledger.entities where kind = 'note' and source_key = "
            "(select min(source_key) from plan.notes)"
        )
    settings = world.settings()
    contact = {
        "name": "a second copy",
        "custom_fields_values": [{"field_id": field_id, "values": [{"value": key}]}],
    }
    with httpx.Client(base_url=AMOCRM_URL, transport=amocrm_transport(settings)) as http:
        response = http.post(
            "/api/v4/contacts",
            content=json.dumps([contact]),
            headers={"authorization": f"Bearer {settings.amocrm_token}"},
        )
    assert response.status_code == 200, response.text


def test_trials_under_random_faults_create_everything_exactly_once(tmp_path: Path) -> None:
    # At once: a trial mostly waits on its child processes (and on the faults' pauses).
    with ThreadPoolExecutor(len(SEEDS)) as pool:
        results = list(pool.map(lambda seed: run_trial(seed, tmp_path), SEEDS))
    assert {r.seed: r.problems for r in results if r.problems} == {}
    for result in results:
        happened = set(result.occurred)
        assert SEEDS[result.seed] <= happened, f"seed {result.seed}: only {result.occurred}"
        assert all(run.outcome != "lost" for run in result.runs), result.runs

    # The checks are not vacuous: a passing world, tampered with, fails them.
    world = TrialWorld(results[0].root, results[0].seed)
    tamper(world)
    problems = check_trial(world)
    assert any(p.startswith("duplicates: contacts") for p in problems), problems
    assert any(p.startswith("missing: 1 planned note") for p in problems), problems
