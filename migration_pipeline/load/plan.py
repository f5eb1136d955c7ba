"""The plan: the exact payloads the load will send, in partitions of deal batches.

Built from the cleansed, selected data (``clean.*``) and the target account's mappings
(``map.*``) into ``plan.*`` tables a user can read before anything is sent. Decisions:

* **Partitions.** Selected deals, by id, in batches of ``deals_per_partition`` (``b0001``…).
  Membership never changes once planned: a deal keeps the partition the first plan gave it,
  and deals that appear later go to new partitions after the last one. Selected persons and
  organizations that no migrating deal needs get partitions of their own (``c0001``…).
* **Shared dependents.** A company or contact used by several deals has one *creator*: the
  first partition that needs it. Every partition that needs it *ensures* it (``plan.needs``),
  so loading partitions in any order, or at once, still creates it once (the ledger decides).
* **What each entity becomes** (``design.md`` §1): organization → company, person → contact
  (E.164 phones, valid e-mails), deal → lead (price in the account currency; original amount,
  currency, rate and date in custom fields; owner, status, loss reason, dates, labels as tags;
  its person as main contact, participants as more contacts, its organization as company),
  activity → task (done ones completed, with the note as the result), note → note, mail →
  note (from, to, subject, date, body), followers → one note on the lead naming them.
* **Leads-inbox leads** become amoCRM leads too, in partitions of their own (``l0001``…), in
  the first stage of the first Pipedrive pipeline (the stage a lead converted in Pipedrive
  lands in), tagged ``Pipedrive leads inbox``. Their ``Pipedrive ID`` is ``lead:<uuid>``, so
  they never collide with deal ids; their activities and notes follow them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from ..clients.amocrm import MAX_BATCH
from ..db import read_rows
from .payloads import (
    NOTE_MAX,
    clip,
    custom_value,
    epoch,
    field_value,
    html_to_text,
    one_line,
    time_of_day,
    without_controls,
)

MAX_FIELD_VALUES = 40  # custom field values amoCRM accepts per entity in one call
REQUESTS_PER_SECOND = 7.0  # amoCRM's limit per account (reference §2), for the estimate
END_OF_DAY = 23 * 3600 + 59 * 60  # when a task with a due date but no time is due


@dataclass(frozen=True)
class PlanSettings:
    deals_per_partition: int = 1000
    contacts_per_partition: int = 1000
    sample_partitions: int = 0


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


def _selected(con: duckdb.DuckDBPyConnection, entity: str) -> set[str]:
    return {
        row[0]
        for row in con.execute(
            "select record_id::varchar from clean.selection where entity = ? and decision = 'migrate'",
            [entity],
        ).fetchall()
    }


class Context:
    """Everything the payload builders look up, read once."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        account = read_rows(con, "select * from map.account")[0]
        self.default_user = account["default_user_id"]
        self.users = {
            r["pipedrive_user_id"]: r["amo_user_id"]
            for r in read_rows(con, "select * from map.users")
        }
        self.statuses = {
            (r["pipedrive_pipeline_id"], r["pipedrive_stage_id"], r["outcome"]): (
                r["amo_pipeline_id"],
                r["amo_status_id"],
            )
            for r in read_rows(con, "select * from map.statuses")
        }
        self.loss_reasons = {
            r["lost_reason"]: r["amo_loss_reason_id"]
            for r in read_rows(con, "select * from map.loss_reasons")
        }
        self.task_types = {
            r["pipedrive_type"]: r["amo_task_type_id"]
            for r in read_rows(con, "select * from map.task_types")
        }
        self.fields: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.custom: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in read_rows(con, "select * from map.fields"):
            row["enum_map"] = _json(row["enum_map"])
            if row["purpose"] == "custom":
                self.custom[row["entity"]][row["pipedrive_key"]] = row
            else:
                self.fields[row["entity"]][row["purpose"]] = row
        self.names = {
            "users": {r["id"]: r["name"] for r in read_rows(con, "select id, name from raw.users")},
            "organizations": {
                r["id"]: r["name"] for r in read_rows(con, "select id, name from raw.organizations")
            },
            "persons": {
                r["id"]: r["name"] for r in read_rows(con, "select id, name from raw.persons")
            },
        }
        first_stage = con.execute(
            """
            select s.pipeline_id, s.id from raw.stages s join raw.pipelines p on p.id = s.pipeline_id
            where not coalesce(s.is_deleted, false) and not coalesce(p.is_deleted, false)
            order by p.order_nr, p.id, s.order_nr, s.id limit 1
            """
        ).fetchall()
        self.inbox_stage = first_stage[0] if first_stage else None
        self.left_out_values: list[dict[str, str]] = []
        self.deal_labels = self._labels(con, "deal_fields")
        self.person_labels = self._labels(con, "person_fields")
        self.org_labels = self._labels(con, "organization_fields")

    @staticmethod
    def _labels(con: duckdb.DuckDBPyConnection, table: str) -> dict[int, str]:
        rows = read_rows(
            con, f"select options from raw.{table} where key in ('label', 'label_ids')"
        )
        labels: dict[int, str] = {}
        for row in rows:
            for option in _json(row["options"]) or []:
                try:
                    labels[int(option["id"])] = option["label"]
                except (KeyError, TypeError, ValueError):
                    continue
        return labels

    def user(self, pipedrive_user_id: int | None) -> int:
        return int(self.users.get(pipedrive_user_id) or self.default_user)

    def common_fields(
        self, entity: str, pipedrive_id: str, custom: dict | None, extra: dict[str, Any]
    ) -> list[dict]:
        values = [
            field_value(
                self.fields[entity]["pipedrive_id"]["amo_field_id"], [{"value": pipedrive_id}]
            )
        ]
        for purpose, value in extra.items():
            field = self.fields[entity].get(purpose)
            if field is not None and value not in (None, "", []):
                values.append(field_value(field["amo_field_id"], [{"value": value}]))
        for key, value in (_json(custom) or {}).items():
            field = self.custom[entity].get(key)
            rendered = custom_value(value, field, self.names) if field else None
            if rendered:
                values.append(field_value(field["amo_field_id"], rendered))
            elif value not in (None, "", []):
                reason = (
                    f"not a valid {field['amo_field_type']} value for {field['amo_field_name']!r}"
                    if field
                    else "no such Pipedrive custom field (not in the field definitions)"
                )
                self.left_out(entity, pipedrive_id, key, value, reason)
        for extra_value in values[MAX_FIELD_VALUES:]:
            self.left_out(
                entity,
                pipedrive_id,
                str(extra_value.get("field_id")),
                extra_value.get("values"),
                f"more than {MAX_FIELD_VALUES} field values on one record",
            )
        return values[:MAX_FIELD_VALUES]

    def left_out(self, entity: str, key: str, field: str, value: Any, reason: str) -> None:
        """Record a value the payload cannot carry (``plan.left_out_values``): never silent."""
        self.left_out_values.append(
            {
                "entity": entity,
                "source_key": key,
                "field": field,
                "value": json.dumps(value, ensure_ascii=False, default=str),
                "reason": reason,
            }
        )


INBOX_TAG = "Pipedrive leads inbox"


def _tags(label_ids: Iterable[Any] | None, labels: dict[int, str]) -> list[dict[str, str]]:
    out = []
    for label in _json(label_ids) or []:
        try:
            name = labels.get(int(label))
        except (TypeError, ValueError):
            name = None
        if name:
            out.append({"name": name})
    return out


def company_payload(ctx: Context, org: dict[str, Any]) -> dict[str, Any]:
    merged = ",".join(str(i) for i in org["merged_ids"] or [])
    return {
        "name": one_line(org["name"], f"Pipedrive organization {org['id']}"),
        "responsible_user_id": ctx.user(org["owner_id"]),
        "created_at": epoch(org["add_time"]),
        "custom_fields_values": ctx.common_fields(
            "companies", str(org["id"]), org["custom_fields"], {"merged_ids": merged}
        ),
        "_embedded": {"tags": _tags(org["label_ids"], ctx.org_labels)},
    }


def contact_payload(ctx: Context, person: dict[str, Any]) -> dict[str, Any]:
    merged = ",".join(str(i) for i in person["merged_ids"] or [])
    values = ctx.common_fields(
        "contacts", str(person["id"]), person["custom_fields"], {"merged_ids": merged}
    )
    phones = [
        {"value": p["value"], "enum_code": p["type"] or "WORK"} for p in person["phones"] or []
    ]
    emails = [
        {"value": e["value"], "enum_code": e["type"] or "WORK"} for e in person["emails"] or []
    ]
    if phones:
        values.append({"field_code": "PHONE", "values": phones})
    if emails:
        values.append({"field_code": "EMAIL", "values": emails})
    payload = {
        "name": one_line(person["name"], f"Pipedrive person {person['id']}"),
        "responsible_user_id": ctx.user(person["owner_id"]),
        "created_at": epoch(person["add_time"]),
        "custom_fields_values": values,
        "_embedded": {"tags": _tags(person["label_ids"], ctx.person_labels)},
    }
    for part in ("first_name", "last_name"):
        if text := one_line(person.get(part), ""):
            payload[part] = text
    return payload


def lead_payload(ctx: Context, deal: dict[str, Any]) -> dict[str, Any]:
    outcome = deal["status"] if deal["status"] in ("won", "lost") else "open"
    stage = deal["stage_id"] if outcome == "open" else None
    pipeline_id, status_id = ctx.statuses[(deal["pipeline_id"], stage, outcome)]
    extra = {
        "original_amount": deal["value"],
        "original_currency": deal["currency"],
        "exchange_rate": None if deal["rate"] is None else f"{deal['rate']:g}",
        "rate_date": epoch(deal["rate_date"]),
    }
    payload: dict[str, Any] = {
        "name": one_line(deal["title"], f"Pipedrive deal {deal['id']}"),
        "price": int(deal["price"] or 0),
        "pipeline_id": pipeline_id,
        "status_id": status_id,
        "responsible_user_id": ctx.user(deal["owner_id"]),
        "created_at": epoch(deal["add_time"]),
        "custom_fields_values": ctx.common_fields(
            "leads", str(deal["id"]), deal["custom_fields"], extra
        ),
        "_embedded": {"tags": _tags(deal["label_ids"], ctx.deal_labels)},
    }
    closed = deal["close_time"] or deal["won_time"] or deal["lost_time"]
    if outcome != "open" and closed is not None:
        payload["closed_at"] = epoch(closed)
    if outcome == "lost" and deal["lost_reason"]:
        payload["loss_reason_id"] = ctx.loss_reasons.get(deal["lost_reason"].strip())
    return payload


def inbox_lead_payload(ctx: Context, lead: dict[str, Any]) -> dict[str, Any]:
    """A leads-inbox lead, as an open deal in the inbox stage (see the module docstring)."""
    if ctx.inbox_stage is None:
        raise ValueError("the account has no pipeline stage to put leads-inbox leads in")
    pipeline_id, stage_id = ctx.inbox_stage
    as_deal = {
        **lead,
        "id": f"lead:{lead['id']}",
        "status": "open",
        "pipeline_id": pipeline_id,
        "stage_id": stage_id,
        "custom_fields": None,
        "label_ids": None,
        "close_time": None,
        "won_time": None,
        "lost_time": None,
        "lost_reason": None,
    }
    payload = lead_payload(ctx, as_deal)
    payload["_embedded"]["tags"].append({"name": INBOX_TAG})
    return payload


def task_payload(ctx: Context, activity: dict[str, Any]) -> dict[str, Any]:
    due = activity["due_date"]
    if due is not None:
        at = time_of_day(activity["due_time"])  # no (readable) time: the end of the day
        complete_till = epoch(due) + (END_OF_DAY if at is None else at)
    else:
        complete_till = epoch(activity["add_time"])
    subject = one_line(activity["subject"], one_line(activity["type"], "Pipedrive activity"))
    payload: dict[str, Any] = {
        "text": clip(subject, NOTE_MAX),
        "complete_till": complete_till,
        "task_type_id": int(ctx.task_types.get(activity["type"], 1)),
        "responsible_user_id": ctx.user(activity["owner_id"]),
        "created_at": epoch(activity["add_time"]),
    }
    if activity["done"]:
        payload["is_completed"] = True
        payload["result"] = {"text": clip(html_to_text(activity["note"]) or "done", NOTE_MAX)}
    return payload


def note_payload(text: str, created_at: int | None, user: int) -> dict[str, Any]:
    return {
        "note_type": "common",
        "params": {"text": clip(without_controls(text) or "(empty)", NOTE_MAX)},
        "created_at": created_at,
        "responsible_user_id": user,
    }


def mail_text(mail: dict[str, Any]) -> str:
    def parties(value: Any) -> str:
        return ", ".join(
            f"{p.get('name') or ''} <{p.get('email_address') or ''}>".strip()
            for p in _json(value) or []
        )

    lines = [
        "E-mail from Pipedrive",
        f"From: {parties(mail['from'])}",
        f"To: {parties(mail['to'])}",
    ]
    if _json(mail["cc"]):
        lines.append(f"Cc: {parties(mail['cc'])}")
    lines += [
        f"Subject: {mail['subject'] or ''}",
        f"Date: {mail['message_time']}",
        "",
        html_to_text(mail["body"]),
    ]
    return "\n".join(lines)


def _partition_keys(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    prefix: str,
    items: list[Any],
    size: int,
) -> dict[Any, str]:
    """Stable assignment: earlier plans' members keep their partition; new ones fill new
    partitions after the last key."""
    assigned: dict[Any, str] = {}
    if _table_exists(con, "plan", table):
        assigned = {
            row[0]: row[1]
            for row in con.execute(f"select {column}, partition_key from plan.{table}").fetchall()
        }
    numbers = [int(key[1:]) for key in assigned.values()]
    next_number = max(numbers, default=0) + 1
    fresh = sorted(i for i in items if i not in assigned)
    for start in range(0, len(fresh), size):
        for item in fresh[start : start + size]:
            assigned[item] = f"{prefix}{next_number:04d}"
        next_number += 1
    return assigned


def _write(
    con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]], schema: pa.Schema
) -> None:
    columns = {name: [row[name] for row in rows] for name in schema.names}
    arrow = pa.table(columns, schema=schema)
    con.register("_plan_rows", arrow)
    con.execute(f"create or replace table plan.{table} as select * from _plan_rows order by all")
    con.unregister("_plan_rows")


PAYLOAD_SCHEMA = [
    ("source_key", pa.string()),
    ("partition_key", pa.string()),
    ("payload", pa.string()),
]


def build_plan(con: duckdb.DuckDBPyConnection, settings: PlanSettings) -> dict[str, int]:
    """Write every ``plan.*`` table; returns counts per kind."""
    ctx = Context(con)
    selected = {
        entity: _selected(con, entity)
        for entity in (
            "deals",
            "persons",
            "organizations",
            "activities",
            "notes",
            "deal_participants",
            "deal_followers",
            "mail_messages",
            "leads",
        )
    }
    deals = [
        d
        for d in read_rows(con, "select * from clean.deals order by id")
        if str(d["id"]) in selected["deals"]
    ]
    persons = {
        p["id"]: p
        for p in read_rows(con, "select * from clean.persons order by id")
        if str(p["id"]) in selected["persons"]
    }
    orgs = {
        o["id"]: o
        for o in read_rows(con, "select * from clean.organizations order by id")
        if str(o["id"]) in selected["organizations"]
    }
    inbox = [
        lead
        for lead in read_rows(con, "select * from clean.leads order by id")
        if lead["id"] in selected["leads"]
    ]

    deal_partition = _partition_keys(
        con, "deal_batches", "deal_id", "b", [d["id"] for d in deals], settings.deals_per_partition
    )
    lead_partition = _partition_keys(
        con,
        "lead_batches",
        "lead_id",
        "l",
        [lead["id"] for lead in inbox],
        settings.deals_per_partition,
    )
    participants: dict[int, list[int]] = defaultdict(list)
    for row in read_rows(con, "select * from clean.deal_participants order by deal_id, id"):
        if (
            str(row["id"]) in selected["deal_participants"]
            and row.get("duplicate_of") is None
            and row["person_id"] in persons
        ):
            participants[row["deal_id"]].append(row["person_id"])

    needs: dict[str, dict[str, set[int]]] = defaultdict(
        lambda: {"company": set(), "contact": set()}
    )
    lead_rows = []
    for deal in deals:
        key = deal_partition[deal["id"]]
        contacts = [
            p for p in dict.fromkeys([deal["person_id"], *participants[deal["id"]]]) if p in persons
        ]
        company = deal["org_id"] if deal["org_id"] in orgs else None
        needs[key]["contact"].update(contacts)
        if company is not None:
            needs[key]["company"].add(company)
        lead_rows.append(
            {
                "source_key": str(deal["id"]),
                "partition_key": key,
                "contact_keys": [str(p) for p in contacts],
                "main_contact_key": str(contacts[0])
                if contacts and contacts[0] == deal["person_id"]
                else None,
                "company_key": None if company is None else str(company),
                "payload": json.dumps(lead_payload(ctx, deal), ensure_ascii=False),
            }
        )

    for lead in inbox:
        key = lead_partition[lead["id"]]
        person = lead["person_id"] if lead["person_id"] in persons else None
        company = lead["org_id"] if lead["org_id"] in orgs else None
        bucket = needs[key]  # the partition exists even for a lead that needs neither
        if person is not None:
            bucket["contact"].add(person)
        if company is not None:
            bucket["company"].add(company)
        lead_rows.append(
            {
                "source_key": f"lead:{lead['id']}",
                "partition_key": key,
                "contact_keys": [] if person is None else [str(person)],
                "main_contact_key": None if person is None else str(person),
                "company_key": None if company is None else str(company),
                "payload": json.dumps(inbox_lead_payload(ctx, lead), ensure_ascii=False),
            }
        )

    needed_contacts = {p for n in needs.values() for p in n["contact"]}
    needed_orgs = {o for n in needs.values() for o in n["company"]}
    standalone = [p for p in persons if p not in needed_contacts]
    person_orgs = {person["org_id"] for person in persons.values()}
    standalone_orgs = [o for o in orgs if o not in needed_orgs and o not in person_orgs]
    loose = _partition_keys(
        con,
        "contact_batches",
        "member",
        "c",
        standalone + [-o for o in standalone_orgs],
        settings.contacts_per_partition,
    )
    for member, key in loose.items():
        if member > 0 and member in persons:
            needs[key]["contact"].add(member)
        elif member < 0 and -member in orgs:
            needs[key]["company"].add(-member)
    # A contact's company is needed wherever the contact is.
    for bucket in needs.values():
        bucket["company"].update(
            persons[p]["org_id"] for p in bucket["contact"] if persons[p]["org_id"] in orgs
        )

    creator: dict[tuple[str, int], str] = {}
    for key in sorted(needs):
        for kind, members in needs[key].items():
            for member in members:
                creator.setdefault((kind, member), key)

    company_rows = [
        {
            "source_key": str(o),
            "partition_key": creator[("company", o)],
            "payload": json.dumps(company_payload(ctx, orgs[o]), ensure_ascii=False),
        }
        for o in sorted(orgs)
        if ("company", o) in creator
    ]
    contact_rows = [
        {
            "source_key": str(p),
            "partition_key": creator[("contact", p)],
            "company_key": str(persons[p]["org_id"]) if persons[p]["org_id"] in orgs else None,
            "payload": json.dumps(contact_payload(ctx, persons[p]), ensure_ascii=False),
        }
        for p in sorted(persons)
        if ("contact", p) in creator
    ]

    def owner(entity_type: str, entity_id: int) -> tuple[str, str] | None:
        """(partition, entity key) of the amoCRM record a task or note hangs on."""
        if entity_type == "leads":
            return (
                (deal_partition[entity_id], str(entity_id)) if entity_id in deal_partition else None
            )
        if entity_type == "inbox":
            found = lead_partition.get(entity_id)
            return None if found is None else (found, f"lead:{entity_id}")
        kind = "contact" if entity_type == "contacts" else "company"
        found = creator.get((kind, entity_id))
        return None if found is None else (found, str(entity_id))

    def attach(record: dict[str, Any]) -> tuple[str, str, str] | None:
        for entity_type, column in (
            ("leads", "deal_id"),
            ("inbox", "lead_id"),
            ("contacts", "person_id"),
            ("companies", "org_id"),
        ):
            if record.get(column) is not None:
                found = owner(entity_type, record[column])
                if found:
                    return "leads" if entity_type == "inbox" else entity_type, *found
        return None

    task_rows, note_rows = [], []
    for activity in read_rows(con, "select * from clean.activities order by id"):
        if str(activity["id"]) not in selected["activities"] or (where := attach(activity)) is None:
            continue
        entity_type, key, entity_key = where
        task_rows.append(
            {
                "source_key": str(activity["id"]),
                "partition_key": key,
                "entity_type": entity_type,
                "entity_key": entity_key,
                "payload": json.dumps(task_payload(ctx, activity), ensure_ascii=False),
            }
        )
    for note in read_rows(con, "select * from clean.notes order by id"):
        if str(note["id"]) not in selected["notes"] or (where := attach(note)) is None:
            continue
        entity_type, key, entity_key = where
        payload = note_payload(
            html_to_text(note["content"]), epoch(note["add_time"]), ctx.user(note["user_id"])
        )
        note_rows.append(
            {
                "source_key": f"note:{note['id']}",
                "partition_key": key,
                "entity_type": entity_type,
                "entity_key": entity_key,
                "payload": json.dumps(payload, ensure_ascii=False),
            }
        )
    for mail in read_rows(con, "select * from raw.mail_messages order by id"):
        if (
            str(mail["id"]) not in selected["mail_messages"]
            or mail["deal_id"] not in deal_partition
        ):
            continue
        payload = note_payload(mail_text(mail), epoch(mail["message_time"]), ctx.default_user)
        note_rows.append(
            {
                "source_key": f"mail:{mail['id']}",
                "partition_key": deal_partition[mail["deal_id"]],
                "entity_type": "leads",
                "entity_key": str(mail["deal_id"]),
                "payload": json.dumps(payload, ensure_ascii=False),
            }
        )
    followers: dict[int, list[str]] = defaultdict(list)
    for row in read_rows(
        con, "select deal_id, user_id from raw.deal_followers order by deal_id, user_id"
    ):
        if f"{row['deal_id']}:{row['user_id']}" in selected["deal_followers"]:
            followers[row["deal_id"]].append(
                ctx.names["users"].get(row["user_id"], f"user #{row['user_id']}")
            )
    for deal_id, names in sorted(followers.items()):
        if deal_id in deal_partition:
            text = "Pipedrive followers (no amoCRM equivalent): " + ", ".join(names)
            note_rows.append(
                {
                    "source_key": f"followers:{deal_id}",
                    "partition_key": deal_partition[deal_id],
                    "entity_type": "leads",
                    "entity_key": str(deal_id),
                    "payload": json.dumps(
                        note_payload(text, None, ctx.default_user), ensure_ascii=False
                    ),
                }
            )

    need_rows = [
        {"partition_key": key, "kind": kind, "source_key": str(member)}
        for key, bucket in needs.items()
        for kind, members in bucket.items()
        for member in members
    ]
    partitions = sorted(needs)
    sample = set(partitions[: settings.sample_partitions])
    # Requests each partition needs, as the loader sends them: one stream of batches per kind
    # (links, tasks: one; notes: one per parent type), the last batch of each partly filled.
    streams: Counter[tuple[str, str]] = Counter()
    for kind, rows in (("companies", company_rows), ("leads", lead_rows), ("tasks", task_rows)):
        streams.update((row["partition_key"], kind) for row in rows)
    streams.update((row["partition_key"], "contacts") for row in contact_rows)
    streams.update((row["partition_key"], "links") for row in contact_rows if row["company_key"])
    streams.update((row["partition_key"], f"notes {row['entity_type']}") for row in note_rows)
    requests: Counter[str] = Counter()
    for (key, _), n in streams.items():
        requests[key] += -(-n // MAX_BATCH)
    partition_rows = [
        {
            "partition_key": key,
            "deals": sum(1 for k in deal_partition.values() if k == key),
            "inbox_leads": sum(1 for k in lead_partition.values() if k == key),
            "requests": requests[key],
            "seconds_at_limit": round(requests[key] / REQUESTS_PER_SECOND, 1),
            "sample": key in sample,
        }
        for key in partitions
    ]
    s = pa.string()
    _write(
        con,
        "deal_batches",
        [{"deal_id": d, "partition_key": k} for d, k in deal_partition.items()],
        pa.schema([("deal_id", pa.int64()), ("partition_key", s)]),
    )
    _write(
        con,
        "lead_batches",
        [{"lead_id": i, "partition_key": k} for i, k in lead_partition.items()],
        pa.schema([("lead_id", s), ("partition_key", s)]),
    )
    _write(
        con,
        "contact_batches",
        [{"member": m, "partition_key": k} for m, k in loose.items()],
        pa.schema([("member", pa.int64()), ("partition_key", s)]),
    )
    _write(
        con,
        "partitions",
        partition_rows,
        pa.schema(
            [
                ("partition_key", s),
                ("deals", pa.int64()),
                ("inbox_leads", pa.int64()),
                ("requests", pa.int64()),
                ("seconds_at_limit", pa.float64()),
                ("sample", pa.bool_()),
            ]
        ),
    )
    _write(
        con, "needs", need_rows, pa.schema([("partition_key", s), ("kind", s), ("source_key", s)])
    )
    _write(con, "companies", company_rows, pa.schema(PAYLOAD_SCHEMA))
    _write(
        con,
        "contacts",
        contact_rows,
        pa.schema([*PAYLOAD_SCHEMA[:2], ("company_key", s), PAYLOAD_SCHEMA[2]]),
    )
    _write(
        con,
        "leads",
        lead_rows,
        pa.schema(
            [
                *PAYLOAD_SCHEMA[:2],
                ("contact_keys", pa.list_(s)),
                ("main_contact_key", s),
                ("company_key", s),
                PAYLOAD_SCHEMA[2],
            ]
        ),
    )
    _write(
        con,
        "left_out_values",
        ctx.left_out_values,
        pa.schema([(name, s) for name in ("entity", "source_key", "field", "value", "reason")]),
    )
    extra = [("entity_type", s), ("entity_key", s)]
    _write(con, "tasks", task_rows, pa.schema([*PAYLOAD_SCHEMA[:2], *extra, PAYLOAD_SCHEMA[2]]))
    _write(con, "notes", note_rows, pa.schema([*PAYLOAD_SCHEMA[:2], *extra, PAYLOAD_SCHEMA[2]]))
    return {
        "partitions": len(partitions),
        "companies": len(company_rows),
        "contacts": len(contact_rows),
        "leads": len(lead_rows),
        "tasks": len(task_rows),
        "notes": len(note_rows),
    }
