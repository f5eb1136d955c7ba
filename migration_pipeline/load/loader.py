"""Load one partition of the plan into amoCRM: companies → contacts (linked to companies) →
leads (contacts and company linked at creation) → tasks → notes, each through ``ensure``.

The plan rows are read once and the file closed before the first request (invariant 5). What
did not load is reported against its deal when it has one in the partition (a contact or
company of its lead, the lead, a task or note on it), and under its own name otherwise (a
contact's link to its company, a contact or company no deal of the partition uses): every key
any ``ensure`` call leaves failed fails the partition, so nothing left undone looks done. What
could load stays loaded, and a re-run finishes the rest.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clients.amocrm import AmoCrmClient
from ..db import connect, read_rows
from ..ledger import Ledger
from .ensure import Outcome, Sender, ensure

Progress = Callable[[str], None]
KINDS = ("company", "contact", "contact_company", "lead", "task", "note")


@dataclass
class PartitionResult:
    partition_key: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    """What did not load, by subject (``deal 17``, ``contact 5``, ``contact_company 5>3``)."""

    @property
    def requests(self) -> int:
        return sum(outcome.requests for outcome in self.outcomes.values())

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            kind: {
                "created": o.created,
                "already there": o.reused,
                "reconciled": o.reconciled,
                "failed": len(o.failed),
            }
            for kind, o in self.outcomes.items()
        }


def _read_plan(db: Path, partition_key: str) -> dict[str, Any]:
    with connect(db, read_only=False) as con:

        def partition_rows(sql: str) -> list[dict[str, Any]]:
            return read_rows(con, sql, [partition_key])

        plan = {
            "companies": partition_rows(
                "select c.* from plan.companies c join plan.needs n on n.kind = 'company' "
                "and n.source_key = c.source_key where n.partition_key = ? order by c.source_key"
            ),
            "contacts": partition_rows(
                "select c.* from plan.contacts c join plan.needs n on n.kind = 'contact' "
                "and n.source_key = c.source_key where n.partition_key = ? order by c.source_key"
            ),
            "leads": partition_rows(
                "select * from plan.leads where partition_key = ? order by source_key"
            ),
            "tasks": partition_rows(
                "select * from plan.tasks where partition_key = ? order by source_key"
            ),
            "notes": partition_rows(
                "select * from plan.notes where partition_key = ? order by source_key"
            ),
        }
        plan["id_fields"] = {
            entity: amo_field_id
            for entity, amo_field_id in con.execute(
                "select entity, amo_field_id from map.fields where purpose = 'pipedrive_id'"
            ).fetchall()
        }
    return plan


def _by_field(
    client: AmoCrmClient, entity: str, field_id: int
) -> Callable[[Sequence[str]], dict[str, int]]:
    def lookup(keys: Sequence[str]) -> dict[str, int]:
        found = client.find_by_field(entity, field_id, list(keys))
        # Several records with one Pipedrive id would be duplicates: never made by us, but if
        # they exist we take the oldest and let verification report the rest.
        return {
            str(key): min(int(r["id"]) for r in records)
            for key, records in found.items()
            if records
        }

    return lookup


def _by_content(
    fetch: Callable[[list[tuple[str, int]]], list[dict[str, Any]]],
    planned: Mapping[str, Mapping[str, Any]],
    signature: Callable[[Mapping[str, Any]], tuple],
) -> Callable[[Sequence[str]], dict[str, int]]:
    """Tasks and notes carry no custom fields: an in-doubt one is recognised by its content on
    its parent (entity, text, due time), each existing record matched at most once."""

    def lookup(keys: Sequence[str]) -> dict[str, int]:
        parents = sorted(
            {(planned[k].get("entity_type", ""), int(planned[k]["entity_id"])) for k in keys}
        )
        existing: dict[tuple, list[int]] = defaultdict(list)
        for record in fetch(parents):
            existing[signature(record)].append(int(record["id"]))
        found = {}
        for key in keys:
            ids = existing.get(signature(planned[key]))
            if ids:
                found[key] = ids.pop(0)
        return found

    return lookup


def _task_signature(task: Mapping[str, Any]) -> tuple:
    return (task["entity_type"], int(task["entity_id"]), task["text"], int(task["complete_till"]))


def _note_signature(note: Mapping[str, Any]) -> tuple:
    return (int(note["entity_id"]), (note.get("params") or {}).get("text"))


def load_partition(
    client: AmoCrmClient,
    db: Path,
    ledger: Ledger,
    partition_key: str,
    *,
    claimant: str,
    batch_size: int = 250,
    workers: int = 3,
    progress: Progress = print,
    wait_seconds: float = 300.0,
) -> PartitionResult:
    plan = _read_plan(db, partition_key)
    result = PartitionResult(partition_key)
    ids = plan["id_fields"]

    def run(kind: str, payloads: Mapping[str, Mapping[str, Any]], sender: Sender) -> Outcome:
        outcome = ensure(
            kind,
            payloads,
            sender=sender,
            ledger=ledger,
            claimant=claimant,
            partition_key=partition_key,
            wait_seconds=wait_seconds,
        )
        result.outcomes.setdefault(kind, Outcome()).absorb(outcome)
        progress(
            f"{partition_key} {kind}: {outcome.created} created, {outcome.reused} already there, "
            f"{outcome.reconciled} reconciled, {len(outcome.failed)} failed ({outcome.requests} requests)"
        )
        return outcome

    def entity_sender(entity: str) -> Sender:
        return Sender(
            send=lambda items: [c.id for c in client.create(entity, items)],
            lookup=_by_field(client, entity, ids[entity]),
            batch_size=batch_size,
            workers=workers,
        )

    companies = run(
        "company",
        {r["source_key"]: json.loads(r["payload"]) for r in plan["companies"]},
        entity_sender("companies"),
    )
    contacts = run(
        "contact",
        {r["source_key"]: json.loads(r["payload"]) for r in plan["contacts"]},
        entity_sender("contacts"),
    )

    def link_contacts(items: Sequence[Mapping[str, Any]]) -> list[int]:
        client.link("contacts", items)
        return [int(item["entity_id"]) for item in items]

    links = {
        f"{r['source_key']}>{r['company_key']}": {
            "entity_id": contacts.ids[r["source_key"]],
            "to_entity_id": companies.ids[r["company_key"]],
            "to_entity_type": "companies",
        }
        for r in plan["contacts"]
        if r["company_key"]
        and r["source_key"] in contacts.ids
        and r["company_key"] in companies.ids
    }
    run(
        "contact_company",
        links,
        Sender(
            send=link_contacts,
            lookup=lambda keys: {},  # linking again is harmless: an in-doubt link is resent
            batch_size=batch_size,
            workers=workers,
        ),
    )

    problems: dict[str, list[str]] = defaultdict(list)  # deal source key → reasons
    told: set[tuple[str, str]] = set()  # failed (kind, key)s already in a deal's reasons
    leads: dict[str, dict[str, Any]] = {}
    for row in plan["leads"]:
        # A lead is created with its contacts and company linked, and never touched again:
        # one whose contact or company may yet exist (outcome unknown, held by another
        # loader) waits for the re-run that settles it, or the link would be lost. One whose
        # contact or company amoCRM rejected is created without it (the deal is reported).
        waiting = [
            (what, key)
            for what, key, outcome in [
                *(("contact", c, contacts) for c in row["contact_keys"] or []),
                *([("company", row["company_key"], companies)] if row["company_key"] else []),
            ]
            if key in outcome.unsettled and key not in outcome.ids
        ]
        if waiting:
            problems[row["source_key"]].append(
                f"lead not sent yet: {', '.join(f'{w} {k}' for w, k in waiting)} not settled; "
                "a re-run sends it linked"
            )
            told.update(waiting)
            continue
        payload = json.loads(row["payload"])
        embedded = payload.setdefault("_embedded", {})
        embedded["contacts"] = []
        for key in row["contact_keys"] or []:
            if key in contacts.ids:
                embedded["contacts"].append(
                    {"id": contacts.ids[key], "is_main": key == row["main_contact_key"]}
                )
            else:
                problems[row["source_key"]].append(
                    f"contact {key} not created: {contacts.failed.get(key, 'not planned')}"
                )
                told.add(("contact", key))
        if row["company_key"]:
            if row["company_key"] in companies.ids:
                embedded["companies"] = [{"id": companies.ids[row["company_key"]]}]
            else:
                problems[row["source_key"]].append(
                    f"company {row['company_key']} not created: {companies.failed.get(row['company_key'], 'not planned')}"
                )
                told.add(("company", row["company_key"]))
        leads[row["source_key"]] = payload
    lead_outcome = run("lead", leads, entity_sender("leads"))
    for key, error in lead_outcome.failed.items():
        problems[key].append(f"lead not created: {error}")
        told.add(("lead", key))

    def _fetch_tasks(parents: list[tuple[str, int]]) -> list[dict[str, Any]]:
        by_type: dict[str, list[int]] = defaultdict(list)
        for entity_type, entity_id in parents:
            by_type[entity_type].append(entity_id)
        return [task for t, ids in sorted(by_type.items()) for task in client.tasks(t, ids)]

    parents = {"leads": lead_outcome.ids, "contacts": contacts.ids, "companies": companies.ids}
    deal_of = {}
    for kind, rows in (("task", plan["tasks"]), ("note", plan["notes"])):
        grouped: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in rows:
            parent = parents[row["entity_type"]].get(row["entity_key"])
            if row["entity_type"] == "leads":
                deal_of[row["source_key"]] = row["entity_key"]
            if parent is None:
                if row["entity_type"] == "leads":
                    problems[row["entity_key"]].append(
                        f"{kind} {row['source_key']} not created: its lead was not created"
                    )
                continue
            payload = json.loads(row["payload"])
            payload["entity_id"] = parent
            if kind == "task":
                payload["entity_type"] = row["entity_type"]
            grouped[row["entity_type"]][row["source_key"]] = payload
        if kind == "task":
            # One endpoint takes tasks on leads, contacts and companies alike: one stream of
            # batches, so a partition's tasks fill whole batches.
            streams = {"all": {key: p for group in grouped.values() for key, p in group.items()}}
        else:
            streams = dict(sorted(grouped.items()))  # notes: one endpoint per parent type
        for stream, payloads in streams.items():
            if kind == "task":
                sender = Sender(
                    send=lambda items: [c.id for c in client.create_tasks(items)],
                    lookup=_by_content(_fetch_tasks, payloads, _task_signature),
                    batch_size=batch_size,
                    workers=workers,
                )
            else:
                sender = Sender(
                    send=lambda items, t=stream: [c.id for c in client.create_notes(t, items)],
                    lookup=_by_content(
                        lambda parents, t=stream: client.notes(t, [i for _, i in parents]),
                        payloads,
                        _note_signature,
                    ),
                    batch_size=batch_size,
                    workers=workers,
                )
            outcome = run(kind, payloads, sender)
            for key, error in outcome.failed.items():
                if key in deal_of:
                    problems[deal_of[key]].append(f"{kind} {key} not created: {error}")
                    told.add((kind, key))
    failures = {f"deal {deal}": reasons for deal, reasons in sorted(problems.items())}
    for kind, outcome in result.outcomes.items():
        for key, error in sorted(outcome.failed.items()):
            if (kind, key) not in told:
                failures[f"{kind} {key}"] = [f"not created: {error}"]
    result.failures = failures
    return result
