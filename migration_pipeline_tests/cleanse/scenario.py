"""A hand-made account where every selection, re-pointing and currency rule has a case, with
the decision each record must get. Small enough to check by reading."""

from __future__ import annotations

from typing import Any

T = "2026-03-01T10:00:00Z"  # an ordinary update time
NEWEST = "2026-10-01T10:00:00Z"  # the newest update in the account: the reference date


def _person(pid: int, name: str, org: int | None, phones=(), emails=(), **extra) -> dict:
    first, _, last = name.partition(" ")
    return {
        "id": pid,
        "name": name,
        "first_name": first,
        "last_name": last or None,
        "owner_id": 1,
        "org_id": org,
        "phones": [{"value": v, "label": "work", "primary": i == 0} for i, v in enumerate(phones)],
        "emails": [{"value": v, "label": "work", "primary": i == 0} for i, v in enumerate(emails)],
        "is_deleted": False,
        "add_time": "2025-01-01T10:00:00Z",
        "update_time": T,
        "label_ids": [],
        "custom_fields": {},
        **extra,
    }


def _deal(did: int, status: str, value: float | None, currency: str | None, **extra) -> dict:
    return {
        "id": did,
        "title": f"Deal {did}",
        "owner_id": 1,
        "person_id": None,
        "org_id": None,
        "pipeline_id": 1,
        "stage_id": 1,
        "value": value,
        "currency": currency,
        "status": status,
        "is_deleted": status == "deleted",
        "is_archived": False,
        "add_time": "2025-01-01T10:00:00Z",
        "update_time": T,
        **extra,
    }


def _activity(aid: int, done: bool = False, marked: str | None = None, **links) -> dict:
    return {
        "id": aid,
        "subject": f"Activity {aid}",
        "type": "call",
        "owner_id": 1,
        "done": done,
        "marked_as_done_time": marked,
        "due_date": "2026-01-01",
        "is_deleted": False,
        "add_time": "2025-06-01T10:00:00Z",
        "update_time": T,
        **links,
    }


def _note(nid: int, **links) -> dict:
    return {"id": nid, "content": "<p>note</p>", "user_id": 1, "active_flag": True,
            "add_time": "2025-06-01 10:00:00", "update_time": "2026-01-01 10:00:00", **links}  # fmt: skip


ENTITIES: dict[str, list[dict[str, Any]]] = {
    "users": [{"id": 1, "name": "Owner", "email": "owner@company.test", "active_flag": True}],
    "pipelines": [{"id": 1, "name": "Продажи"}, {"id": 2, "name": "Партнёры"}],
    "stages": [
        {"id": 1, "pipeline_id": 1, "name": "Новая"},
        {"id": 2, "pipeline_id": 2, "name": "Пилот"},
    ],
    "organizations": [
        {
            "id": 1,
            "name": "ООО «Ромашка»",
            "website": "romashka.ru",
            "update_time": T,
            "address": {"value": "ул. Ленина, 5, Москва, Россия", "country": "Россия"},
            "label_ids": [7],
        },
        {
            "id": 2,
            "name": "Romashka LLC",
            "website": "https://www.romashka.ru",
            "update_time": T,
            "label_ids": [8],
        },
        {
            "id": 3,
            "name": "Вектор",
            "address": {"value": "Київ, Україна", "country": "Україна"},
            "update_time": T,
        },
        {
            "id": 4,
            "name": "Вектор",
            "update_time": T,
            "address": {"value": "Алматы, Казахстан", "country": "Казахстан"},
        },
        {"id": 5, "name": "Old Corp", "update_time": T},
        {"id": 6, "name": "Gone Org", "is_deleted": True, "update_time": T},
        {"id": 7, "name": "Unused Org", "update_time": NEWEST},
    ],  # fmt: skip
    "persons": [
        _person(10, "Иван Петров", 1, ["+7 916 123-45-67"], ["ivan@romashka.ru"], label_ids=[1]),
        _person(11, "Petrov Ivan", 2, ["8 (916) 123-45-67"], label_ids=[2]),
        _person(12, "Ivan Petrov", 3, ["+380 50 123 45 67"], ["ivan.petrov@gmail.com"]),
        _person(13, "Anna Smirnova", None, ["n/a"], ["Anna@@mail.ru"]),
        _person(14, "Пётр Сидоров", 5, ["8 (903) 765-43-21"]),
        _person(15, "Gone Person", None, is_deleted=True),
    ],
    "deals": [
        _deal(100, "open", 1000.50, "USD", person_id=11, org_id=2),
        _deal(101, "won", 2.5, "RUB", person_id=12, org_id=3, won_time="2026-06-01T10:00:00Z"),
        _deal(102, "won", 50, "EUR", person_id=12, won_time="2023-01-05T10:00:00Z"),
        _deal(103, "lost", 10, "EUR", lost_time="2026-09-01T10:00:00Z"),
        _deal(104, "deleted", 10, "EUR"),
        _deal(105, "open", 100, "XYZ"),
        _deal(106, "open", 10, "EUR", is_archived=True, archive_time="2026-09-01T10:00:00Z"),
        _deal(107, "open", None, None, person_id=999),
        _deal(108, "open", 10, "RUB", stage_id=999),
        _deal(109, "open", 10, "RUB", pipeline_id=999),
        _deal(110, "open", 10, "RUB", stage_id=2),
        _deal(111, "lost", 10, "RUB", stage_id=999, lost_time="2026-09-01T10:00:00Z"),
        _deal(112, "open", 10, "RUB", owner_id=77),
    ],
    "leads": [
        {
            "id": "lead-1",
            "title": "Lead 1",
            "person_id": 11,
            "is_archived": False,
            "value": {"amount": 10, "currency": "EUR"},
            "update_time": T,
        },
        {
            "id": "lead-2",
            "title": "Lead 2",
            "person_id": 13,
            "is_archived": True,
            "value": {"amount": -2.5, "currency": "RUB"},
            "update_time": T,
        },
    ],  # fmt: skip
    "activities": [
        _activity(1000, deal_id=100),
        _activity(1001, True, "2026-09-01T10:00:00Z", deal_id=100),
        _activity(1002, True, "2024-01-01T10:00:00Z", deal_id=100),
        _activity(1003, deal_id=102),
        _activity(1004, deal_id=105),
        _activity(1005, person_id=11),
        _activity(1006, deal_id=555),
        _activity(1007, deal_id=100, is_deleted=True),
        _activity(1008),
    ],
    "notes": [
        _note(2000, deal_id=100),
        _note(2001, deal_id=104),
        _note(2002, person_id=13),
        _note(2003, org_id=2),
        _note(2004, deal_id=100, active_flag=False),
    ],
    "deal_participants": [
        {"id": 3000, "deal_id": 100, "person_id": 10, "active_flag": True},
        {"id": 3001, "deal_id": 100, "person_id": 11, "active_flag": True},
        {"id": 3002, "deal_id": 102, "person_id": 12, "active_flag": True},
        {"id": 3003, "deal_id": 101, "person_id": 14, "active_flag": True},
    ],
    "deal_followers": [{"deal_id": 100, "user_id": 1}, {"deal_id": 102, "user_id": 1}],
    "mail_messages": [
        {"id": 4000, "deal_id": 100, "subject": "Hello"},
        {"id": 4001, "deal_id": 105, "subject": "Offer"},
    ],
}

# (entity, record id) → (decision, reason or a part of it, merged_into) under the defaults.
EXPECTED: dict[tuple[str, str], tuple[str, str, str | None]] = {
    ("deals", "100"): ("migrate", "open deal", None),
    ("deals", "101"): ("migrate", "won on 2026-06-01, within 24 months of 2026-10-01", None),
    ("deals", "102"): ("archive", "won on 2023-01-05, more than 24 months before", None),
    ("deals", "103"): ("migrate", "lost on 2026-09-01, within 12 months", None),
    ("deals", "104"): ("archive", "deleted in Pipedrive", None),
    ("deals", "105"): ("failed", "unknown currency XYZ: add a rate to the config", None),
    ("deals", "106"): ("archive", "archived in Pipedrive: policy none", None),
    ("deals", "107"): ("migrate", "open deal", None),
    ("deals", "108"): ("failed", "stage 999 not found", None),
    ("deals", "109"): ("failed", "pipeline 999 not found", None),
    ("deals", "110"): (
        "failed",
        "stage 2 belongs to pipeline 2, not to the deal's pipeline 1",
        None,
    ),
    ("deals", "111"): ("migrate", "lost on 2026-09-01", None),  # closed: its stage is not used
    ("deals", "112"): ("migrate", "open deal", None),  # the default user owns it
    ("leads", "lead-1"): ("migrate", "open lead", None),
    ("leads", "lead-2"): ("archive", "archived in Pipedrive: policy none", None),
    ("persons", "10"): ("migrate", "contact of deal 100", None),
    ("persons", "11"): ("merged", "merged into person 10", "10"),
    ("persons", "12"): ("migrate", "contact of deal 101", None),
    ("persons", "13"): ("archive", "nothing migrating needs it (persons policy: needed)", None),
    ("persons", "14"): ("migrate", "participant of deal 101", None),
    ("persons", "15"): ("archive", "deleted in Pipedrive", None),
    ("organizations", "1"): ("migrate", "organization of deal 100", None),
    ("organizations", "2"): ("merged", "merged into organization 1", "1"),
    ("organizations", "3"): ("migrate", "organization of deal 101", None),
    ("organizations", "4"): ("archive", "nothing migrating needs it", None),
    ("organizations", "5"): ("migrate", "organization of person 14", None),
    ("organizations", "6"): ("archive", "deleted in Pipedrive", None),
    ("organizations", "7"): ("archive", "nothing migrating needs it", None),
    ("activities", "1000"): ("migrate", "open activity of migrating deal 100", None),
    ("activities", "1001"): ("migrate", "done on 2026-09-01, within 12 months", None),
    ("activities", "1002"): ("archive", "done on 2024-01-01, more than 12 months before", None),
    ("activities", "1003"): ("archive", "deal 102 does not migrate", None),
    ("activities", "1004"): ("failed", "deal 105 failed: unknown currency XYZ", None),
    ("activities", "1005"): ("migrate", "open activity of migrating person 10", None),
    ("activities", "1006"): ("archive", "deal 555 not found", None),
    ("activities", "1007"): ("archive", "deleted in Pipedrive", None),
    ("activities", "1008"): ("archive", "not linked to a deal, lead, person or organization", None),
    ("notes", "2000"): ("migrate", "note of migrating deal 100", None),
    ("notes", "2001"): ("archive", "deal 104 does not migrate (deleted in Pipedrive)", None),
    ("notes", "2002"): ("archive", "person 13 does not migrate", None),
    ("notes", "2003"): ("migrate", "note of migrating organization 1", None),
    ("notes", "2004"): ("archive", "deleted in Pipedrive", None),
    ("deal_participants", "3000"): ("migrate", "participant of migrating deal 100", None),
    ("deal_participants", "3001"): ("merged", "same contact as participant 3000", "3000"),
    ("deal_participants", "3002"): ("archive", "deal 102 does not migrate", None),
    ("deal_participants", "3003"): ("migrate", "participant of migrating deal 101", None),
    ("deal_followers", "100:1"): ("migrate", "follower of migrating deal 100", None),
    ("deal_followers", "102:1"): ("archive", "deal 102 does not migrate", None),
    ("mail_messages", "4000"): ("migrate", "e-mail of migrating deal 100", None),
    ("mail_messages", "4001"): ("failed", "deal 105 failed", None),
}
