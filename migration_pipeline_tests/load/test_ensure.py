"""``ensure`` + the DuckDB ledger: each entity created once whatever the account answers.

The account here is a scripted stand-in for amoCRM's create endpoint (the real client and the
fake amoCRM are exercised end to end in test_load_assets.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from migration_pipeline.clients.amocrm import InvalidItems, ItemError
from migration_pipeline.clients.errors import InDoubt, RateLimited
from migration_pipeline.ledger import DuckDBLedger
from migration_pipeline.load.ensure import Sender, ensure


class Account:
    """Creates entities; ``script`` says what the next sends do: ``ok``, ``lost`` (commit, then
    the answer is lost), ``timeout`` (nothing committed, outcome unknown), ``reject:<i>`` (400
    naming item i, nothing committed), ``429`` (refused)."""

    def __init__(self, script: Sequence[str] = ()) -> None:
        self.script = list(script)
        self.records: dict[str, int] = {}  # source key → id, as amoCRM's "Pipedrive ID" field
        self.copies: dict[str, int] = {}
        self.ids = itertools.count(1000)
        self.sends = 0

    def send(self, payloads: Sequence[Mapping[str, Any]]) -> list[int]:
        self.sends += 1
        step = self.script.pop(0) if self.script else "ok"
        if step.startswith("reject:"):
            index = int(step.split(":")[1])
            raise InvalidItems(
                "amoCRM",
                "POST /api/v4/contacts",
                400,
                "Request validation failed",
                errors=[ItemError(str(index), index, "NotSupportedChoice", "name", "bad")],
            )
        if step == "429":
            raise RateLimited("amoCRM", "POST /api/v4/contacts", 429, "too many requests")
        if step == "timeout":
            raise InDoubt("amoCRM", "POST /api/v4/contacts", None, "read timeout")
        ids = []
        for payload in payloads:
            key = payload["key"]
            self.copies[key] = self.copies.get(key, 0) + 1
            self.records[key] = next(self.ids)
            ids.append(self.records[key])
        if step == "lost":
            raise InDoubt("amoCRM", "POST /api/v4/contacts", None, "connection lost")
        return ids

    def lookup(self, keys: Sequence[str]) -> dict[str, int]:
        return {key: self.records[key] for key in keys if key in self.records}

    def sender(self, batch_size: int = 2) -> Sender:
        return Sender(send=self.send, lookup=self.lookup, batch_size=batch_size, workers=2)


def payloads(n: int) -> dict[str, dict[str, str]]:
    return {str(i): {"key": str(i)} for i in range(n)}


@pytest.fixture
def ledger(tmp_path: Path) -> DuckDBLedger:
    return DuckDBLedger(tmp_path / "m.duckdb", lease_seconds=0.2)


def run(account: Account, ledger: DuckDBLedger, n: int = 5, claimant: str = "run-1"):  # noqa: ANN201
    return ensure(
        "contact",
        payloads(n),
        sender=account.sender(),
        ledger=ledger,
        claimant=claimant,
        partition_key="b0001",
        poll_seconds=0.05,
        wait_seconds=5,
    )


def test_creates_each_once_and_a_rerun_sends_nothing(ledger: DuckDBLedger) -> None:
    account = Account()
    first = run(account, ledger)
    assert first.created == 5 and account.sends == 3
    second = run(account, ledger, claimant="run-2")
    assert second.reused == 5 and account.sends == 3
    assert second.ids == first.ids
    assert set(account.copies.values()) == {1}


def test_a_lost_answer_is_reconciled_not_resent(ledger: DuckDBLedger) -> None:
    account = Account(["lost", "lost", "ok"])
    outcome = run(account, ledger)
    assert set(outcome.ids) == set(payloads(5))
    assert outcome.reconciled == 4
    assert set(account.copies.values()) == {1}


def test_a_timeout_that_committed_nothing_is_resent_after_the_lookup(ledger: DuckDBLedger) -> None:
    account = Account(["timeout", "ok", "ok", "ok"])
    outcome = run(account, ledger)
    assert set(outcome.ids) == set(payloads(5)) and outcome.reconciled == 0
    assert set(account.copies.values()) == {1}


def test_a_validation_error_fails_only_the_offending_item(ledger: DuckDBLedger) -> None:
    account = Account(["reject:1"])
    outcome = run(account, ledger)
    assert list(outcome.failed) == ["1"]
    assert "NotSupportedChoice" in outcome.failed["1"]
    assert set(outcome.ids) == set(payloads(5)) - {"1"}
    assert set(account.copies.values()) == {1}


def test_an_error_that_sent_nothing_releases_the_claims(ledger: DuckDBLedger) -> None:
    account = Account(["429", "429"])
    with pytest.raises(RateLimited):
        run(account, ledger)
    assert run(account, ledger, claimant="run-2").created + len(account.records) >= 5
    assert set(account.copies.values()) == {1}


def test_a_loader_killed_mid_send_is_reconciled_after_its_lease(ledger: DuckDBLedger) -> None:
    account = Account()
    # A loader claimed keys 0-4, sent them (they landed) and died before recording anything.
    claim = ledger.claim("contact", list(payloads(5)), claimant="dead", partition_key="b0001")
    assert claim.mine == list(payloads(5))
    account.send([{"key": k} for k in payloads(5)])
    outcome = run(account, ledger, claimant="run-2")
    assert outcome.reconciled == 5 and outcome.created == 0
    assert set(account.copies.values()) == {1}


def test_a_lookup_that_fails_hands_its_claims_back_without_a_lease_wait(
    tmp_path: Path,
) -> None:
    ledger = DuckDBLedger(tmp_path / "m.duckdb", lease_seconds=3600)  # a wait would be fatal
    account = Account(["lost", "429", "429"])  # batch 1 lands unanswered, 2 and 3 refused
    working = account.lookup

    def unreachable(keys: Sequence[str]) -> dict[str, int]:
        raise RuntimeError("amoCRM unreachable during the look-up")

    with pytest.raises(RateLimited):
        run(account, ledger)
    account.lookup = unreachable  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        run(account, ledger, claimant="run-2")  # claims all, dies looking batch 1 up
    account.lookup = working  # type: ignore[method-assign]
    outcome = run(account, ledger, claimant="run-3")  # no claim of run-2 is waited for
    assert outcome.reconciled == 2 and outcome.created == 3
    assert set(account.copies.values()) == {1}
