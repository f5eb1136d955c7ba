"""Read back from amoCRM everything the ledger says was created and compare it with the plan.

For every ``created`` row of ``ledger.entities`` the expected record is its plan payload with
the amoCRM ids the load resolved (contacts and company of a lead, company of a contact); the
actual record is what amoCRM answers for its id, listed at 250 a page through the same client
(and so the same account-wide rate limiter) the load used. Compared, field by field:

* leads: name, price, pipeline, status, responsible user, created/closed dates, loss reason,
  tags, custom fields (the Pipedrive id, original amount, currency, rate, date and every
  mapped field), linked contacts (and which is main) and company, and the number of tasks and
  notes on it;
* contacts: name, first and last name, responsible user, created date, tags, custom fields
  (phones and e-mails included), company; companies: the same without the person names.

Expected task and note counts are what the ledger recorded as created on the record, so a
task created twice, or one the ledger thinks exists but amoCRM lost, shows as a mismatch.
Custom field values are compared as sets of canonical texts per field (numbers as numbers,
options by enum id), since amoCRM renders values in its own types and order.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clients.amocrm import AmoCrmClient
from ..db import connect, read_rows

ENTITIES = {"lead": "leads", "contact": "contacts", "company": "companies"}
ENUM_TYPES = frozenset({"select", "multiselect", "radiobutton", "category"})
MISSING = "record"  # the field of a mismatch that is a record amoCRM does not have
IDS_PER_READ = 250  # one page of filter[id][] per request (the client chunks the URL further)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Mismatch:
    kind: str
    source_key: str
    amo_id: int
    field: str
    expected: str
    actual: str


@dataclass
class ReadBack:
    """What the read-back found, per kind: records checked, absent, and with a difference."""

    checked: Counter = field(default_factory=Counter)
    missing: Counter = field(default_factory=Counter)
    mismatches: list[Mismatch] = field(default_factory=list)
    requests: int = 0

    @property
    def mismatched(self) -> Counter:
        """Records found with at least one difference, per kind."""
        return Counter(
            kind
            for kind, _ in {(m.kind, m.source_key) for m in self.mismatches if m.field != MISSING}
        )

    def add(self, kind: str, key: str, amo_id: int, name: str, expected: Any, actual: Any) -> None:
        self.mismatches.append(Mismatch(kind, key, amo_id, name, _show(expected), _show(actual)))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _canonical(value: Any) -> str:
    """One value as text: numbers as numbers (``5``, ``5.0`` and ``"5"`` alike), the rest as
    sent."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return str(value)
    return str(int(number)) if number.is_integer() else repr(number)


def expected_fields(values: Iterable[Mapping[str, Any]] | None) -> dict[str, list[str]]:
    """Custom field values of a payload, by ``field_id`` (or ``field_code``), canonical."""
    out: dict[str, list[str]] = {}
    for entry in values or []:
        name = str(entry.get("field_id") or entry.get("field_code"))
        texts = [
            f"enum:{v['enum_id']}" if v.get("enum_id") is not None else _canonical(v.get("value"))
            for v in entry.get("values") or []
        ]
        out[name] = sorted(texts)
    return out


def actual_fields(values: Iterable[Mapping[str, Any]] | None) -> dict[str, list[str]]:
    """Custom field values as amoCRM renders them, keyed both ways a payload may name them."""
    out: dict[str, list[str]] = {}
    for entry in values or []:
        enum = entry.get("field_type") in ENUM_TYPES
        texts = sorted(
            f"enum:{v.get('enum_id')}" if enum else _canonical(v.get("value"))
            for v in entry.get("values") or []
        )
        out[str(entry.get("field_id"))] = texts
        if entry.get("field_code"):
            out[str(entry["field_code"])] = texts
    return out


def _tags(record: Mapping[str, Any]) -> list[str]:
    return sorted(str(t.get("name")) for t in (record.get("_embedded") or {}).get("tags") or [])


def _linked(record: Mapping[str, Any], to: str) -> list[dict[str, Any]]:
    return list((record.get("_embedded") or {}).get(to) or [])


SCALARS = {
    "lead": (
        "name",
        "price",
        "pipeline_id",
        "status_id",
        "responsible_user_id",
        "created_at",
        "closed_at",
        "loss_reason_id",
    ),
    "contact": ("name", "first_name", "last_name", "responsible_user_id", "created_at"),
    "company": ("name", "responsible_user_id", "created_at"),
}


def compare(
    kind: str, key: str, amo_id: int, expected: Mapping[str, Any], actual: Mapping[str, Any]
) -> list[Mismatch]:
    """Every difference between one payload (ids resolved) and amoCRM's record of it. A field
    the payload leaves out is not compared: amoCRM fills it (a default, the current time)."""
    found = ReadBack()
    for name in SCALARS[kind]:
        if name in expected and expected[name] is not None and expected[name] != actual.get(name):
            found.add(kind, key, amo_id, name, expected[name], actual.get(name))
    want, have = (
        expected_fields(expected.get("custom_fields_values")),
        actual_fields(actual.get("custom_fields_values")),
    )
    for name, values in want.items():
        if values != have.get(name, []):
            found.add(kind, key, amo_id, f"custom field {name}", values, have.get(name, []))
    want_tags = sorted(str(t["name"]) for t in (expected.get("_embedded") or {}).get("tags") or [])
    if want_tags != _tags(actual):
        found.add(kind, key, amo_id, "tags", want_tags, _tags(actual))
    embedded = expected.get("_embedded") or {}
    if "companies" in embedded:
        want_ids = sorted(int(c["id"]) for c in embedded["companies"])
        have_ids = sorted(int(c["id"]) for c in _linked(actual, "companies"))
        if want_ids != have_ids:
            found.add(kind, key, amo_id, "company", want_ids, have_ids)
    if "contacts" in embedded:
        # The main contact is compared only when the plan names one (the deal's own person):
        # otherwise amoCRM makes one of them main itself.
        named = any(c.get("is_main") for c in embedded["contacts"])
        want_contacts = sorted(
            (int(c["id"]), bool(c.get("is_main")) and named) for c in embedded["contacts"]
        )
        have_contacts = sorted(
            (int(c["id"]), bool(c.get("is_main")) and named) for c in _linked(actual, "contacts")
        )
        if want_contacts != have_contacts:
            found.add(kind, key, amo_id, "contacts (id, is main)", want_contacts, have_contacts)
    return found.mismatches


def _expected(db: Path) -> dict[str, dict[str, tuple[int, dict[str, Any]]]]:
    """kind → source key → (amoCRM id, the payload as the load sent it)."""
    with connect(db, read_only=True) as con:
        created = {
            (kind, key): amo_id
            for kind, key, amo_id in con.execute(
                "select kind, source_key, amo_id from ledger.entities where state = 'created'"
            ).fetchall()
        }
        plans = {
            kind: read_rows(con, f"select * from plan.{table}") for kind, table in ENTITIES.items()
        }
    out: dict[str, dict[str, tuple[int, dict[str, Any]]]] = defaultdict(dict)
    for kind, rows in plans.items():
        for row in rows:
            amo_id = created.get((kind, row["source_key"]))
            if amo_id is None:
                continue
            payload = json.loads(row["payload"])
            embedded = payload.setdefault("_embedded", {})
            if kind == "lead":
                # As the loader sent it: the contacts and company that exist, the main one
                # only if it is the deal's own person.
                embedded["contacts"] = [
                    {"id": created[("contact", c)], "is_main": c == row["main_contact_key"]}
                    for c in row["contact_keys"] or []
                    if ("contact", c) in created
                ]
            company = row.get("company_key")
            if kind in ("lead", "contact") and company and ("company", company) in created:
                embedded["companies"] = [{"id": created[("company", company)]}]
            elif kind in ("lead", "contact"):
                embedded["companies"] = []  # none planned, or its company failed: none linked
            out[kind][row["source_key"]] = (int(amo_id), payload)
    return out


def _counts_on_leads(db: Path, table: str) -> dict[str, int]:
    """Tasks or notes the ledger holds as created, per lead source key."""
    kind = table[:-1]
    with connect(db, read_only=True) as con:
        return dict(
            con.execute(
                f"""
                select p.entity_key, count(*) from plan.{table} p
                join ledger.entities l on l.kind = ? and l.source_key = p.source_key
                where l.state = 'created' and p.entity_type = 'leads'
                group by all
                """,
                [kind],
            ).fetchall()
        )


def read_back(client: AmoCrmClient, db: Path, progress: Progress = print) -> ReadBack:
    """Read back every created lead, contact and company (with the tasks and notes on the
    leads) and compare them with the plan; see the module docstring."""
    result = ReadBack()
    before = client.stats.requests
    expected = _expected(db)
    lead_ids: dict[int, str] = {}
    for kind, entity in ENTITIES.items():
        records = expected.get(kind, {})
        by_id = {amo_id: (key, payload) for key, (amo_id, payload) in records.items()}
        seen: set[int] = set()
        ids = sorted(by_id)
        for start in range(0, len(ids), IDS_PER_READ):
            chunk = ids[start : start + IDS_PER_READ]
            params: dict[str, Any] = {"filter[id][]": chunk}
            if kind == "lead":
                params["with"] = "contacts"
            for page in client.list(entity, params):
                for record in page:
                    amo_id = int(record["id"])
                    if amo_id not in by_id or amo_id in seen:
                        continue
                    seen.add(amo_id)
                    key, payload = by_id[amo_id]
                    result.mismatches += compare(kind, key, amo_id, payload, record)
            progress(f"read back {min(start + IDS_PER_READ, len(ids))} of {len(ids)} {entity}")
        result.checked[kind] = len(ids)
        for amo_id in sorted(set(by_id) - seen):
            key = by_id[amo_id][0]
            result.missing[kind] += 1
            result.add(kind, key, amo_id, MISSING, "exists", "not found in amoCRM")
        if kind == "lead":
            lead_ids = {amo_id: key for amo_id, (key, _) in by_id.items() if amo_id in seen}
    for table, fetch in (
        ("tasks", lambda ids: client.tasks("leads", ids)),
        ("notes", lambda ids: client.notes("leads", ids)),
    ):
        want = _counts_on_leads(db, table)
        have = Counter(int(r["entity_id"]) for r in fetch(sorted(lead_ids)))
        for amo_id, key in sorted(lead_ids.items()):
            if want.get(key, 0) != have.get(amo_id, 0):
                result.add("lead", key, amo_id, f"{table} on it", want.get(key, 0), have[amo_id])
        progress(f"read back {sum(have.values())} {table} on {len(lead_ids)} leads")
    result.requests = client.stats.requests - before
    return result
