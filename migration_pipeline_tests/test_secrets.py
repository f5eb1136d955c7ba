"""No secrets at rest (design §2, invariant 7): with recognisable tokens configured, a
migration under faults (retries, answers in doubt, failing partitions with exceptions) leaves
neither token anywhere a user or an attacker could read it: the files of the Dagster instance
(event log, compute logs), the DuckDB file and its tables, the data directory (exports, the
sandbox's state, the limiter), the captured output and logs, and the failures' texts.

The fakes accept only the configured tokens (a request with any other one gets 401), so a
migration that creates entities proves the tokens were in use all along.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest

from migration_pipeline.cli import main
from migration_pipeline.instance import get_instance
from migration_pipeline_tests.conftest import World
from migration_pipeline_tests.pipeline import FAST, run_job

FAULTS = (
    "amocrm.429=0.05,amocrm.5xx=0.1,amocrm.timeout=0.05,amocrm.lost=0.15,pipedrive.5xx=0.05,seed=5"
)


def canary(prefix: str) -> str:
    """A token no run could produce by chance, with characters that URL encoding changes."""
    return f"{prefix}-SECRET-canary-{secrets.token_hex(6)}/+="


def forms(token: str) -> dict[str, bytes]:
    """Every spelling of ``token`` to look for: as is, URL-encoded as a query value and as a
    path, and its random part alone (a token cut short, or encoded some other way, still
    shows that)."""
    return {
        "raw": token.encode(),
        "url-encoded": quote(token, safe="").encode(),
        "path-encoded": quote(token).encode(),
        "random part": token.split("-canary-")[1][:12].encode(),
    }


def leaks_in(data: bytes, tokens: dict[str, str]) -> list[str]:
    return [
        f"{name} ({form})"
        for name, token in tokens.items()
        for form, needle in forms(token).items()
        if needle in data
    ]


def leaks_in_files(root: Path, tokens: dict[str, str]) -> dict[str, list[str]]:
    """Every file under ``root``, byte for byte (SQLite, WAL and journal files included)."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        hits = leaks_in(path.read_bytes(), tokens)
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def leaks_in_tables(db: Path, tokens: dict[str, str]) -> dict[str, list[str]]:
    """Every row of every table, as text: DuckDB compresses strings on disk, so a token in a
    table need not show in the file's bytes."""
    found = {}
    with duckdb.connect(str(db), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
        for schema, table in tables:
            name = f'"{schema}"."{table}"'
            for label, token in tokens.items():
                for form, needle in forms(token).items():
                    (count,) = con.execute(
                        f"select count(*) from {name} as r where contains(cast(r as varchar), ?)",
                        [needle.decode()],
                    ).fetchall()[0]
                    if count:
                        found.setdefault(name, []).append(f"{label} ({form}) in {count} rows")
    return found


def failure_texts(result) -> list[str]:  # noqa: ANN001
    """All a failed run tells: the error with its stack and causes, the failure description
    and metadata, as stored in the event log and shown in the UI."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            data = event.step_failure_data
            texts.append(data.error.to_string())
            if data.user_failure_data:
                texts.append(data.user_failure_data.description or "")
                texts += [str(v.value) for v in data.user_failure_data.metadata.values()]
    return texts


def test_the_scan_finds_planted_tokens(tmp_path: Path) -> None:
    """The scan itself works: a token planted URL-encoded in a file, and in a DuckDB table
    whose strings the file stores compressed, is found."""
    tokens = {"AMOCRM_ACCESS_TOKEN": canary("amo")}
    (tmp_path / "log.txt").write_bytes(
        b"GET /?t=" + forms(tokens["AMOCRM_ACCESS_TOKEN"])["url-encoded"]
    )
    db = tmp_path / "planted.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(
            "create table t as select 'Bearer ' || ? as header from range(100000)",
            [tokens["AMOCRM_ACCESS_TOKEN"]],
        )
    assert "AMOCRM_ACCESS_TOKEN (url-encoded)" in leaks_in_files(tmp_path, tokens)["log.txt"]
    assert (
        leaks_in_tables(db, tokens)['"main"."t"'][0] == "AMOCRM_ACCESS_TOKEN (raw) in 100000 rows"
    )


def test_tokens_appear_nowhere_after_a_migration_with_faults_and_failures(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    tokens = {"PIPEDRIVE_API_TOKEN": canary("pd"), "AMOCRM_ACCESS_TOKEN": canary("amo")}
    for name, token in tokens.items():
        monkeypatch.setenv(name, token)
    settings = world.configure(faults=FAULTS)
    assert (settings.pipedrive_token, settings.amocrm_token) == tuple(tokens.values())
    caplog.set_level(logging.DEBUG)

    # The README's command on a sample (the stages and the first partition) under faults,
    # its load in this process so that the captured logs hold it too.
    main(["migrate", "--sample", "1", "--parallel", "1"])
    instance = get_instance()
    keys = sorted(instance.get_dynamic_partitions("deal_batches"))
    with duckdb.connect(str(world.duckdb), read_only=True) as con:
        rest = [
            k
            for (k,) in con.execute(
                "select partition_key from plan.partitions where not sample"
            ).fetchall()
        ]
    assert rest, f"the sample left nothing to fail: {keys}"
    failures: list[str] = []
    # A partition that fails three ways: every request timing out (in doubt, then the
    # look-ups give up), a 403 ban, and a lead amoCRM rejects (a Failure naming the deal).
    # A run that fails during its look-ups leaves its claims behind; a 1 s lease instead of
    # the default 120 s lets the next run take them over without waiting two minutes.
    short_lease = {"ledger__entities": {"config": {"lease_seconds": 1.0}}}
    for faults in ("amocrm.timeout=1.0", "amocrm.ban=1.0"):
        result = run_job(
            instance,
            "load",
            partition_key=rest[0],
            resources={"amocrm": {**FAST, "sandbox_faults": faults}},
            ops=short_lease,
        )
        assert not result.success
        failures += failure_texts(result)
    with duckdb.connect(str(world.duckdb)) as con:
        deal, payload = con.execute(
            "select source_key, payload from plan.leads where partition_key = ? order by 1 limit 1",
            [rest[0]],
        ).fetchall()[0]
        con.execute(
            "update plan.leads set payload = ? where source_key = ?",
            [json.dumps({**json.loads(payload), "price": 10**12}), deal],
        )
    result = run_job(
        instance, "load", partition_key=rest[0], resources={"amocrm": FAST}, ops=short_lease
    )
    assert not result.success
    failures += failure_texts(result)
    instance.dispose()
    assert any("blocked the account" in text for text in failures)
    assert any(f"deal {deal}" in text for text in failures)
    assert world.amocrm.entity_counts()["leads"] > 0  # the fakes took the canaries
    injected = world.amocrm.faults_injected()
    assert injected.get("lost", 0) + injected.get("timeout", 0) > 0

    captured = capfd.readouterr()
    texts = {
        "stdout": captured.out,
        "stderr": captured.err,
        "log records": caplog.text + "\n".join(str(r.args) for r in caplog.records),
        "failures": "\n".join(failures),
    }
    leaks = {name: leaks_in(text.encode(), tokens) for name, text in texts.items()}
    leaks |= leaks_in_files(Path(instance.root_directory), tokens)
    leaks |= leaks_in_files(world.data_dir, tokens)
    leaks |= leaks_in_tables(world.duckdb, tokens)
    assert {where: hits for where, hits in leaks.items() if hits} == {}
