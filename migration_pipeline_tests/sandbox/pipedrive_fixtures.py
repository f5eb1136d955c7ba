"""A tiny hand-made Pipedrive account for the fake's contract tests, and helpers to serve it.

Small enough to read: every number a test asserts can be checked against the records below.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from migration_pipeline.sandbox import PIPEDRIVE_URL, SandboxSettings
from migration_pipeline.sandbox.dataset import write_entity
from migration_pipeline.sandbox.pipedrive import PipedriveFake
from migration_pipeline.sandbox.transport import SandboxTransport

TOKEN = "test-token-5f0c1d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"
MONEY_KEY = "a" * 40  # custom monetary deal field
STAGE_KEY = "b" * 40  # custom enum deal field
PERSON_ENUM_KEY = "c" * 40
PERSON_SET_KEY = "d" * 40
PERSON_MONEY_KEY = "e" * 40


class FakeClock:
    """A clock the tests move by hand (epoch seconds; starts 2026-10-01 12:00:00 UTC)."""

    def __init__(self, now: float = 1_790_856_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def deal(
    deal_id: int, status: str, update_time: str, *, archived: bool = False, **extra: Any
) -> dict[str, Any]:
    deleted = status == "deleted"
    return {
        "id": deal_id,
        "title": f"Deal {deal_id}",
        "owner_id": 1 + deal_id % 2,
        "person_id": 1,
        "org_id": 1,
        "pipeline_id": 1,
        "stage_id": 1 + deal_id % 2,
        "value": 100.0 * deal_id,
        "currency": "USD",
        "add_time": f"2026-01-{deal_id:02d}T08:00:00Z",
        "update_time": update_time,
        "status": status,
        "is_deleted": deleted,
        "is_archived": archived,
        "custom_fields": {MONEY_KEY: {"value": deal_id, "currency": "EUR"}, STAGE_KEY: 1},
        **extra,
    }


# update_time ties (deals 1 and 8, 3 and 6) and an order unlike the ids, to test sort stability.
DEALS = [
    deal(1, "open", "2026-03-01T10:00:00Z"),
    deal(2, "won", "2026-02-01T10:00:00Z"),
    deal(3, "lost", "2026-04-01T10:00:00Z"),
    deal(4, "open", "2026-01-15T10:00:00Z", archived=True),
    deal(5, "deleted", "2026-05-01T10:00:00Z"),
    deal(6, "open", "2026-04-01T10:00:00.000Z"),
    deal(7, "won", "2026-02-20T10:00:00Z", archived=True),
    deal(8, "open", "2026-03-01T10:00:00Z"),
    deal(9, "lost", "2026-06-01T10:00:00Z"),
    deal(10, "deleted", "2026-06-15T10:00:00Z", archived=True),
    deal(11, "won", "2026-01-05T10:00:00Z"),
]

PERSONS = [
    {
        "id": 1,
        "name": "Anna Smith",
        "first_name": "Anna",
        "last_name": "Smith",
        "owner_id": 1,
        "org_id": 1,
        "add_time": "2025-12-01T09:00:00Z",
        "update_time": "2026-03-01T00:00:00Z",
        "emails": [{"value": "anna@example.com", "primary": True, "label": "work"}],
        "phones": [{"value": "+44 20 7946 0000", "primary": True, "label": "work"}],
        "is_deleted": False,
        "visible_to": 3,
        "label_ids": [],
        "custom_fields": {
            PERSON_ENUM_KEY: 7,
            PERSON_SET_KEY: [7, 8],
            PERSON_MONEY_KEY: {"value": 5, "currency": "EUR"},
        },
    },
    *(
        {
            "id": person_id,
            "name": f"Person {person_id}",
            "owner_id": 2,
            "org_id": 2 if person_id % 2 else None,
            "add_time": f"2025-12-{person_id:02d}T09:00:00Z",
            "update_time": update_time,
            "emails": [] if person_id == 3 else [{"value": f"p{person_id}@example.com"}],
            "phones": [],
            "is_deleted": person_id == 5,
            "visible_to": 3,
            "custom_fields": {},
        }
        for person_id, update_time in (
            (2, "2026-03-01T00:00:00Z"),
            (3, "2026-01-01T00:00:00Z"),
            (4, "2026-03-01T00:00:01Z"),
            (5, "2026-02-28T23:59:59Z"),
            (6, "2026-05-01T00:00:00Z"),
        )
    ),
]

ORGANIZATIONS = [
    {
        "id": org_id,
        "name": f"Org {org_id}",
        "owner_id": 1,
        "add_time": "2025-11-01T09:00:00Z",
        "update_time": f"2026-0{org_id}-01T00:00:00Z",
        "is_deleted": False,
        "address": {"value": f"{org_id} Main Street", "country": "UK"},
        "custom_fields": {},
    }
    for org_id in (1, 2, 3)
]

ACTIVITIES = [
    {"id": 1, "subject": "Call", "deal_id": 1, "done": True, "is_deleted": False},
    {"id": 2, "subject": "Meet", "deal_id": 1, "done": False, "is_deleted": False},
    {"id": 3, "subject": "Gone", "deal_id": 1, "done": True, "is_deleted": True},
    {"id": 4, "subject": "Mail", "deal_id": 2, "done": False, "is_deleted": False},
]

NOTES = [
    {
        "id": note_id,
        "content": f"<p>Note {note_id}</p>",
        "deal_id": deal_id,
        "person_id": person_id,
        "org_id": None,
        "user_id": 1,
        "add_time": "2026-01-01 10:00:00",
        "update_time": update_time,
        "active_flag": active,
    }
    for note_id, deal_id, person_id, update_time, active in (
        (1, 1, 1, "2026-02-01 10:00:00", True),
        (2, 1, None, "2026-02-02 10:00:00", True),
        (3, 1, 2, "2026-02-03 10:00:00", False),
        (4, 2, 1, "2026-02-04 10:00:00", True),
        (5, None, 3, "2026-02-05 10:00:00", True),
        (6, 9, None, "2026-02-06 10:00:00", True),
        (7, None, None, "2026-02-07 10:00:00", True),
    )
]

LEADS = [
    {
        "id": f"adf21080-0e10-11eb-879b-05d71fb426e{index}",
        "title": f"Lead {index}",
        "owner_id": 1,
        "person_id": 1,
        "organization_id": None,
        "is_archived": archived,
        "value": {"amount": 10.0 * index, "currency": "USD"},
        "add_time": f"2026-02-0{index}T10:00:00.000Z",
        "update_time": f"2026-03-0{index}T10:00:00.000Z",
        "visible_to": "3",
    }
    for index, archived in ((1, False), (2, True), (3, False), (4, False), (5, False))
]

USERS = [
    {
        "id": 1,
        "name": "Owner One",
        "email": "one@company.test",
        "is_you": True,
        "active_flag": True,
        "icon_url": None,
    },
    {"id": 2, "name": "User Two", "email": "two@company.test", "active_flag": True},
    {"id": 3, "name": "User Three", "email": "three@company.test", "active_flag": False},
]

DEAL_FIELDS = [
    {"id": 1, "key": "title", "name": "Title", "field_type": "varchar", "edit_flag": False},
    {
        "id": 2,
        "key": "visible_to",
        "name": "Visible to",
        "field_type": "visible_to",
        "edit_flag": False,
        "options": [{"id": 1, "label": "Owner"}, {"id": 3, "label": "Company"}],
    },
    {
        "id": 12,
        "key": MONEY_KEY,
        "name": "Budget",
        "field_type": "monetary",
        "edit_flag": True,
        "active_flag": True,
    },
    {
        "id": None,
        "key": f"{MONEY_KEY}_currency",
        "name": "Currency of Budget",
        "field_type": "varchar",
        "is_subfield": True,
        "parent_id": 12,
    },
    {
        "id": 13,
        "key": STAGE_KEY,
        "name": "Temperature",
        "field_type": "enum",
        "edit_flag": True,
        "options": [{"id": "1", "label": "Hot"}, {"id": "2", "label": "Cold"}],
    },
    {
        "id": 14,
        "key": "f" * 40,
        "name": "Old",
        "field_type": "text",
        "edit_flag": True,
        "active_flag": False,
    },
]

PERSON_FIELDS = [
    {"id": 1, "key": "name", "name": "Name", "field_type": "varchar", "edit_flag": False},
    {
        "id": 20,
        "key": PERSON_ENUM_KEY,
        "name": "Tier",
        "field_type": "enum",
        "edit_flag": True,
        "options": [{"id": 7, "label": "Gold"}, {"id": 8, "label": "Silver"}],
    },
    {
        "id": 21,
        "key": PERSON_SET_KEY,
        "name": "Tags",
        "field_type": "set",
        "edit_flag": True,
        "options": [{"id": 7, "label": "a"}, {"id": 8, "label": "b"}],
    },
    {
        "id": 22,
        "key": PERSON_MONEY_KEY,
        "name": "Spend",
        "field_type": "monetary",
        "edit_flag": True,
    },
]

PARTICIPANTS = [
    {
        "id": 101,
        "deal_id": 1,
        "person_id": 1,
        "add_time": "2026-01-02 10:00:00",
        "active_flag": True,
        "added_by_user_id": 2,
    },
    {
        "id": 102,
        "deal_id": 1,
        "person_id": 3,
        "add_time": "2026-01-03 10:00:00",
        "active_flag": True,
        "added_by_user_id": 1,
    },
    {
        "id": 103,
        "deal_id": 1,
        "person_id": 99,
        "add_time": "2026-01-04 10:00:00",
        "active_flag": True,
        "added_by_user_id": 1,
    },
    {
        "id": 104,
        "deal_id": 2,
        "person_id": 2,
        "add_time": "2026-01-05 10:00:00",
        "active_flag": True,
        "added_by_user_id": 1,
    },
]

FOLLOWERS = [
    {"id": 201, "user_id": 1, "deal_id": 1, "add_time": "2026-01-02 11:00:00"},
    {"id": 202, "user_id": 2, "deal_id": 1, "add_time": "2026-01-03 11:00:00"},
    {"id": 203, "user_id": 3, "deal_id": 1, "add_time": "2026-01-04 11:00:00"},
    {"id": 204, "user_id": 3, "deal_id": 2, "add_time": "2026-01-05 11:00:00"},
]

MAIL = [
    {
        "id": 301 + index,
        "deal_id": deal_id,
        "subject": f"Subject {index}",
        "snippet": "Hello…",
        "body": f"<p>Body {index}</p>",
        "from": [{"email_address": "anna@example.com", "name": "Anna"}],
        "to": [{"email_address": "one@company.test", "name": "Owner One"}],
        "message_time": f"2026-01-1{index} 09:00:00",
        "add_time": f"2026-01-1{index} 09:00:05",
        "has_body_flag": 1,
    }
    for index, deal_id in enumerate((1, 1, 2))
]


def write_dataset(directory: Path) -> Path:
    """Write the whole tiny account as JSONL files into ``directory``."""
    entities: dict[str, list[dict[str, Any]]] = {
        "users": USERS,
        "currencies": [
            {"id": 1, "code": "USD", "name": "US Dollar", "symbol": "$"},
            {"id": 2, "code": "EUR", "name": "Euro", "symbol": "€"},
        ],
        "activity_types": [{"id": 1, "name": "Call", "key_string": "call"}],
        "pipelines": [
            {"id": 1, "name": "Sales", "order_nr": 2, "is_deleted": False},
            {"id": 2, "name": "Partners", "order_nr": 1, "is_deleted": False},
        ],
        "stages": [
            {"id": stage_id, "name": f"Stage {stage_id}", "pipeline_id": 1 + stage_id // 3}
            for stage_id in (1, 2, 3, 4)
        ],
        "deal_fields": DEAL_FIELDS,
        "person_fields": PERSON_FIELDS,
        "deals": DEALS,
        "persons": PERSONS,
        "organizations": ORGANIZATIONS,
        "activities": ACTIVITIES,
        "products": [{"id": 1, "name": "Widget", "update_time": "2026-01-01T00:00:00Z"}],
        "notes": NOTES,
        "leads": LEADS,
        "deal_participants": PARTICIPANTS,
        "deal_followers": FOLLOWERS,
        "deal_mail_messages": MAIL,
    }
    for entity, records in entities.items():
        write_entity(directory, entity, records)
    return directory


def settings_for(tmp_path: Path, dataset: Path, **overrides: Any) -> SandboxSettings:
    """Sandbox settings serving ``dataset`` with a state file under ``tmp_path``; limits are
    generous unless a test overrides them."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "from_dir": dataset,
        "pipedrive_token": TOKEN,
        "pipedrive_burst": 100_000,
        "pipedrive_daily_tokens": 10_000_000,
        **overrides,
    }
    return SandboxSettings(**values)


def make_fake(
    tmp_path: Path, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> PipedriveFake:
    """A fake serving the tiny account (written into ``tmp_path/dataset`` unless ``from_dir``
    is given)."""
    dataset = overrides.pop("from_dir", None) or write_dataset(tmp_path / "dataset")
    settings = settings_for(tmp_path, dataset, **overrides)
    return PipedriveFake(settings.dataset_dir(), settings, clock=clock)


def client_for(fake: PipedriveFake, token: str | None = TOKEN) -> httpx.Client:
    """An in-process client of ``fake`` sending ``token`` in ``x-api-token`` (None: no token)."""
    headers = {"x-api-token": token} if token is not None else {}
    return httpx.Client(
        transport=SandboxTransport(fake.handle), base_url=PIPEDRIVE_URL, headers=headers
    )
