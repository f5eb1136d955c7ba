"""Make a set of planned entities exist in amoCRM exactly once.

``ensure`` is the one loop every entity kind goes through (companies, contacts, leads, tasks,
notes, links). For each batch it claims the keys in the ledger (intent before send), reconciles
in-doubt keys by looking them up in amoCRM, sends the rest in batches with several requests in
flight, and records each outcome:

* created → the amoCRM id goes to the ledger;
* a 400 naming items (validation) → those items are failed with amoCRM's words; the rest of
  the batch is looked up (whether amoCRM keeps the valid items of a rejected batch is
  unconfirmed) and sent again if absent;
* an unknown outcome (timeout, 5xx, a lost answer) → the batch is marked in doubt, looked up,
  and only what is not found is sent again;
* anything else (429s past the retries, a 403 ban, the network down) → the claims that were
  never sent are released and the error goes up: the partition fails and a re-run resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..clients.amocrm import InvalidItems
from ..clients.errors import InDoubt
from ..ledger import Ledger

log = logging.getLogger(__name__)

CLAIM_BATCHES = 64
"""Batches claimed at once: at 7 requests/s about 10 s of sending, far inside the lease (120 s
by default), and few enough claims that their writes cost under 1 % of the time."""

Send = Callable[[Sequence[Mapping[str, Any]]], Sequence[int]]
"""Create the payloads; returns the amoCRM ids in the payloads' order."""
Lookup = Callable[[Sequence[str]], Mapping[str, int]]
"""Find already-created entities by source key; returns the keys found with their ids."""


@dataclass
class Outcome:
    """The result of one ``ensure`` call. ``ids`` covers every key that exists in amoCRM now."""

    ids: dict[str, int] = field(default_factory=dict)
    created: int = 0
    reused: int = 0
    reconciled: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    unsettled: set[str] = field(default_factory=set)
    """The failed keys that may well exist or be created by a re-run (outcome still unknown,
    or held by another loader), as opposed to those amoCRM rejected."""
    requests: int = 0

    def absorb(self, other: Outcome) -> None:
        """Add ``other`` (another ``ensure`` call for the same kind) to this outcome."""
        self.ids.update(other.ids)
        self.failed.update(other.failed)
        self.unsettled.update(other.unsettled)
        self.created += other.created
        self.reused += other.reused
        self.reconciled += other.reconciled
        self.requests += other.requests


@dataclass(frozen=True)
class Sender:
    """How ``ensure`` talks to amoCRM for one kind."""

    send: Send
    lookup: Lookup
    batch_size: int
    workers: int = 3


def _describe(error: InvalidItems, index: int) -> str:
    parts = [f"{e.code} at {e.path}: {e.detail}" for e in error.errors if e.index == index]
    return "amoCRM rejected it: " + ("; ".join(parts) or error.detail)


def _attempt(sender: Sender, payloads: list[Mapping[str, Any]]) -> Sequence[int] | BaseException:
    """Send one batch; the outcome or the exception (the main thread decides what it means)."""
    try:
        return sender.send(payloads)
    except Exception as exc:  # noqa: BLE001 - handed back to the caller, never swallowed
        return exc


def _send_all(
    kind: str,
    keys: list[str],
    payloads: Mapping[str, Mapping[str, Any]],
    sender: Sender,
    ledger: Ledger,
    claimant: str,
    outcome: Outcome,
) -> list[str]:
    """Send ``keys`` in batches, several in flight; every ledger write happens here, in the
    calling thread (one DuckDB writer). Returns the keys left in doubt."""
    batches = [keys[i : i + sender.batch_size] for i in range(0, len(keys), sender.batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, sender.workers)) as pool:
        results = list(pool.map(lambda b: _attempt(sender, [payloads[k] for k in b]), batches))
    error: BaseException | None = None
    created: dict[str, int] = {}
    bad: dict[str, str] = {}
    doubtful: list[str] = []
    unsent: list[str] = []
    for batch, result in zip(batches, results, strict=True):
        outcome.requests += 1
        if isinstance(result, InvalidItems):
            rejected = {
                batch[i]: _describe(result, i) for i in sorted(result.indexes) if i < len(batch)
            }
            if not rejected:  # a 400 that names no item we sent: the whole batch fails
                rejected = {key: f"amoCRM rejected the batch: {result.detail}" for key in batch}
            bad.update(rejected)
            # Whether amoCRM keeps the valid items of a rejected batch is unconfirmed
            # (reference §5): look them up before sending them again.
            doubtful += [key for key in batch if key not in rejected]
        elif isinstance(result, InDoubt):
            doubtful += batch
        elif isinstance(result, BaseException):
            # Not applied (429s past the retries, a ban, the network down): give the claims
            # back and fail; a re-run resumes.
            unsent += batch
            error = error or result
        else:
            created.update(zip(batch, (int(i) for i in result), strict=True))
    # One ledger write per outcome, not per batch: each write opens the DuckDB file, and a
    # partition's last phase would otherwise end with dozens of them. A process killed before
    # these writes leaves claims whose lease runs out; the next loader reconciles them by
    # lookup, as for any unknown outcome.
    ledger.created(kind, created)
    ledger.failed(kind, bad)
    ledger.in_doubt(kind, doubtful)
    ledger.release(kind, unsent, claimant=claimant)
    outcome.ids.update(created)
    outcome.created += len(created)
    outcome.failed.update(bad)
    if error is not None:
        raise error
    return doubtful


def ensure(
    kind: str,
    payloads: Mapping[str, Mapping[str, Any]],
    *,
    sender: Sender,
    ledger: Ledger,
    claimant: str,
    partition_key: str,
    wait_seconds: float = 300.0,
    poll_seconds: float = 1.0,
    max_rounds: int = 5,
) -> Outcome:
    """Make every payload (keyed by source key) exist in amoCRM once. Keys held by another live
    loader are waited for up to ``wait_seconds``; keys still in doubt after ``max_rounds``
    rounds of look-up and resend are reported failed (still in doubt in the ledger, so a re-run
    reconciles them).

    Keys are claimed :data:`CLAIM_BATCHES` batches at a time, so a claim is sent within seconds
    of being taken, far inside the ledger's lease, however many entities a partition holds."""
    outcome = Outcome()
    keys = list(payloads)
    step = sender.batch_size * CLAIM_BATCHES
    for start in range(0, len(keys), step):
        todo = keys[start : start + step]
        deadline = time.monotonic() + wait_seconds
        rounds = 0
        while todo:
            claim = ledger.claim(kind, todo, claimant=claimant, partition_key=partition_key)
            outcome.ids.update(claim.done)
            outcome.reused += len(claim.done)
            send = list(claim.mine)
            if claim.in_doubt:
                outcome.requests += 1
                try:
                    found = dict(sender.lookup(claim.in_doubt))
                except Exception:
                    # Hand the claims back as they were, so the next run need not wait out
                    # the lease: the in-doubt ones stay in doubt (a release would let them be
                    # sent again unchecked), the never-sent ones are released.
                    ledger.in_doubt(kind, claim.in_doubt)
                    ledger.release(kind, claim.mine, claimant=claimant)
                    raise
                ledger.created(kind, found)
                outcome.ids.update(found)
                outcome.reconciled += len(found)
                send += [key for key in claim.in_doubt if key not in found]
            doubtful = _send_all(kind, send, payloads, sender, ledger, claimant, outcome)
            if doubtful:
                rounds += 1
                if rounds >= max_rounds:
                    log.warning(
                        "%s: %d still in doubt after %d rounds", kind, len(doubtful), rounds
                    )
                    outcome.failed.update(
                        {
                            key: "outcome unknown after repeated timeouts; re-run to reconcile"
                            for key in doubtful
                        }
                    )
                    outcome.unsettled.update(doubtful)
                    break
            todo = claim.busy + doubtful
            if claim.busy and not doubtful:
                if time.monotonic() > deadline:
                    outcome.failed.update(
                        {
                            key: "held by another loader that did not finish in time"
                            for key in claim.busy
                        }
                    )
                    outcome.unsettled.update(claim.busy)
                    break
                time.sleep(poll_seconds)
    return outcome
