"""A catalogue of bad Pipedrive records, each with the place it must end up.

Real accounts hold records no form would let through today: names that are empty or only
spaces, HTML and NUL bytes in text, amounts no CRM can store, references to records that are
gone, ids that repeat. Design invariant 3 says each of them ends somewhere with a reason
(quarantined, failed, archived, merged or migrated) and never stops a stage for the others.
This module is that promise as data, so the test (``test_catalogue.py``) and a benchmark
(``python -m migration_pipeline.sandbox serve --from-dir DIR``) use the same records.

:func:`write_dataset` writes a ``--from-dir`` folder: a small generated account (the good
records) plus every record below, with ids far above the generated ones so nothing clashes,
and ``catalogue.json``, each entry with its record key and what is expected of it, for tools
that do not import Python::

    uv run python -m migration_pipeline_tests.catalogue.bad_records OUT_DIR

Every record is reachable through the API as the fake Pipedrive serves it: participants,
followers and mail hang on deals that exist (the API lists them per deal), and deals are open,
won, lost or deleted (the statuses its list filters on). A bad record points at
:data:`ANCHORS` (ordinary and deleted records) or at the generated account's users, pipelines,
stages and fields, never at its persons, organizations or deals, so the good records are
decided exactly as without the catalogue. A person or organization migrates only when
something migrating needs it, so each bad one comes with a *companion*: an open deal using it.

Expectations (``BadRecord.expect``), and where the reason is read:

``quarantined``
    extraction kept it out of the raw table: a row of ``raw.quarantine``.
``failed``
    it must not migrate until someone fixes it: ``clean.selection`` decision ``failed``, or
    the load's ledger state ``failed`` and the partition's error naming its deal.
``archived`` / ``merged``
    ``clean.selection`` decision ``archive`` / ``merged``.
``migrated``
    in amoCRM exactly once; the selection reason says why it migrates.
``migrated-cleaned``
    in amoCRM exactly once without its bad part, and a problem names that part
    (``clean.phones``, ``clean.emails``, the ``problems`` of its clean table or the
    ``_problems`` of its raw row).

``reason`` is a fragment the recorded reason must contain (case-insensitive); ``amo_name``,
when set, the name its amoCRM lead, contact or company must have.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from migration_pipeline.sandbox.dataset import ENTITY_FILES, read_entity, write_entity
from migration_pipeline.sandbox.generator import generate

Expect = Literal["quarantined", "failed", "archived", "merged", "migrated", "migrated-cleaned"]

# The good records: a generated account (its users, pipelines, stages and fields are the ones
# the bad records below refer to).
BASE_SCALE, BASE_SEED = "tiny", 3

# The raw table (and clean.selection entity) of each dataset file, where the names differ.
RAW_TABLE = {"deal_mail_messages": "mail_messages"}

# What the bad records use of the generated account.
OWNER = 21_536_701  # an active user with an amoCRM account
PIPELINE, STAGE = 1, 1  # "Продажи" / "Квалификация"
STAGE_OF_PIPELINE_2 = 8  # "Новый партнёр"
ENUM_FIELD = "c8a3a3783e07f89c4b1ed0c873977c1d7e6e4332"  # deal "Тип клиента": options 40-43
NUMBER_FIELD = "a40eba3a97fcb9d2b879596a56d0832c725db9aa"  # deal "Скидка, %" (double)
DATE_FIELD = "c53cdf78a838619fcd3bc1e0c62db9b386d78f3e"  # deal "Дата подписания договора"
MISSING = 8_999_999  # an id no record of any kind has
MISSING_USER = 99_999_999

# Before the newest update of the generated account: the selection's reference date (the
# newest update_time in the data) stays the generated account's.
UPDATED = "2026-06-01T12:00:00Z"
ADDED = "2026-05-01T09:00:00Z"

# The records the bad ones point at (ANCHORS).
ANCHOR_ORG, DELETED_ORG = 9_300_001, 9_300_002
ANCHOR_PERSON, DELETED_PERSON = 9_200_001, 9_200_002
ANCHOR_DEAL, DELETED_DEAL = 9_100_001, 9_100_002

LONG_TEXT = "Очень длинный текст. " * 600  # 12,600 characters
MIXED_SCRIPTS = "Иван Smith 李小龙 محمد بن سلمان שלום 🚀🔥"
CONTROL = "Ctrl\x00Null\x07Bell\x1bEsc\u200bZeroWidth"  # the zero-width space is not a control
WITHOUT_CONTROL = "CtrlNullBellEsc\u200bZeroWidth"


@dataclass(frozen=True)
class BadRecord:
    """One bad record: what is wrong with it (``kind``), the dataset file it goes to, the
    record in the API's own shape, where it must end up and a fragment of its reason.

    ``amo_name``: the name its amoCRM entity must have, when the catalogue pins it.
    ``marker``: a text only this record holds, to find it in ``raw.quarantine`` when it has no
    usable key or shares its key with the copy that was kept. ``companions``: records written
    with it as (file, record), such as the deal that makes a person needed."""

    kind: str
    file: str
    record: dict[str, Any]
    expect: Expect
    reason: str
    amo_name: str | None = None
    marker: str | None = None
    companions: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def table(self) -> str:
        """The raw table the record is extracted into, also its ``clean.selection`` entity."""
        return RAW_TABLE.get(self.file, self.file)

    @property
    def key(self) -> str | None:
        """The record's id as ``clean.selection`` writes it (followers: ``deal_id:user_id``),
        or None when it has none."""
        if self.file == "deal_followers":
            deal_id, user_id = self.record.get("deal_id"), self.record.get("user_id")
            return None if deal_id is None or user_id is None else f"{deal_id}:{user_id}"
        value = self.record.get("id")
        return None if value is None else str(value)


# --- record shapes: the generator's, with what the catalogue does not vary fixed ------------


def person(pid: int | str | None, name: str | None, **fields: Any) -> dict[str, Any]:
    """A person of no organization, first and last name split from ``name``."""
    first, _, last = (name or "").partition(" ")
    return {
        "id": pid,
        "name": name,
        "first_name": first or None,
        "last_name": last or None,
        "owner_id": OWNER,
        "org_id": None,
        "add_time": ADDED,
        "update_time": UPDATED,
        "emails": [],
        "phones": [],
        "is_deleted": False,
        "visible_to": 3,
        "label_ids": [],
        "picture_id": None,
        "custom_fields": {},
        **fields,
    }


def organization(oid: int | None, name: str | None, **fields: Any) -> dict[str, Any]:
    """An organization with no address, website or custom fields."""
    return {
        "id": oid,
        "name": name,
        "owner_id": OWNER,
        "add_time": ADDED,
        "update_time": UPDATED,
        "is_deleted": False,
        "visible_to": 3,
        "label_ids": [],
        "address": None,
        "website": None,
        "custom_fields": {},
        **fields,
    }


def deal(did: int | None, **fields: Any) -> dict[str, Any]:
    """An open deal of 1,000 RUB of the anchor person and organization."""
    return {
        "id": did,
        "title": f"Каталог: сделка {did}",
        "owner_id": OWNER,
        "creator_user_id": OWNER,
        "person_id": ANCHOR_PERSON,
        "org_id": ANCHOR_ORG,
        "pipeline_id": PIPELINE,
        "stage_id": STAGE,
        "value": 1000.0,
        "currency": "RUB",
        "add_time": ADDED,
        "update_time": UPDATED,
        "is_deleted": False,
        "is_archived": False,
        "archive_time": None,
        "status": "open",
        "lost_reason": None,
        "visible_to": 3,
        "close_time": None,
        "won_time": None,
        "lost_time": None,
        "expected_close_date": None,
        "label_ids": [],
        "custom_fields": {},
        **fields,
    }


def activity(aid: int | None, subject: str | None, **fields: Any) -> dict[str, Any]:
    """An open call on the anchor deal."""
    return {
        "id": aid,
        "subject": subject,
        "type": "call",
        "owner_id": OWNER,
        "creator_user_id": OWNER,
        "is_deleted": False,
        "add_time": ADDED,
        "update_time": UPDATED,
        "deal_id": ANCHOR_DEAL,
        "lead_id": None,
        "person_id": None,
        "org_id": None,
        "due_date": "2026-06-15",
        "due_time": "10:00",
        "duration": "00:30",
        "done": False,
        "marked_as_done_time": None,
        "note": None,
        **fields,
    }


def note(nid: int | None, content: str | None, **fields: Any) -> dict[str, Any]:
    """A note on the anchor deal (v1 shape)."""
    return {
        "id": nid,
        "user_id": OWNER,
        "deal_id": ANCHOR_DEAL,
        "person_id": None,
        "org_id": None,
        "lead_id": None,
        "content": content,
        "add_time": "2026-05-02 10:00:00",
        "update_time": "2026-05-02 10:00:00",
        "active_flag": True,
        **fields,
    }


def participant(pid: int | None, deal_id: int, person_id: int) -> dict[str, Any]:
    """A participant as the dataset holds it (``person_id`` a plain id)."""
    return {
        "id": pid,
        "deal_id": deal_id,
        "person_id": person_id,
        "add_time": "2026-05-03 10:00:00",
        "active_flag": True,
        "added_by_user_id": OWNER,
    }


def follower(
    fid: int, user_id: int | None, deal_id: int = ANCHOR_DEAL, **fields: Any
) -> dict[str, Any]:
    """A follower of the anchor deal (the API serves only its user and time)."""
    return {
        "id": fid,
        "user_id": user_id,
        "deal_id": deal_id,
        "add_time": "2026-05-06 10:00:00",
        **fields,
    }


def mail(mid: int | None, subject: str | None, **fields: Any) -> dict[str, Any]:
    """An e-mail from a client to sales on the anchor deal, with its body."""
    client = {"id": 1, "email_address": "client@catalogue-anchor.ru", "name": "Client"}
    return {
        "id": mid,
        "from": [client],
        "to": [{"id": 2, "email_address": "sales@severnyveter.ru", "name": "Sales"}],
        "cc": [],
        "bcc": [],
        "subject": subject,
        "body": "<p>Hello</p>",
        "message_time": "2026-05-04 10:00:00",
        "add_time": "2026-05-04 10:00:05",
        "update_time": "2026-05-04 10:00:05",
        "deal_id": ANCHOR_DEAL,
        **fields,
    }


def lead(lid: str | None, title: str, **fields: Any) -> dict[str, Any]:
    """An open leads-inbox lead of the anchor person (v1 shape)."""
    return {
        "id": lid,
        "title": title,
        "owner_id": OWNER,
        "creator_id": OWNER,
        "label_ids": [],
        "person_id": ANCHOR_PERSON,
        "organization_id": None,
        "is_archived": False,
        "was_seen": False,
        "value": {"amount": 100.0, "currency": "RUB"},
        "expected_close_date": None,
        "add_time": "2026-05-05T10:00:00.000Z",
        "update_time": "2026-05-05T10:00:00.000Z",
        "visible_to": "3",
        **fields,
    }


def _phones(*values: str) -> list[dict[str, Any]]:
    return [{"value": v, "primary": n == 0, "label": "work"} for n, v in enumerate(values)]


def _needed(bad: BadRecord, role: str) -> BadRecord:
    """``bad`` (a person or organization) with an open deal that has it as its ``role``
    (``person_id`` or ``org_id``), so the selection needs it. The deal's id is the bad
    record's plus 10,000,000: unique, and easy to trace back."""
    carrier = deal(
        bad.record["id"] + 10_000_000,
        title=f"Каталог: сделка для «{bad.kind}»",
        **{"person_id": None, "org_id": None, role: bad.record["id"]},
    )
    return replace(bad, companions=(*bad.companions, ("deals", carrier)))


# --- the catalogue -----------------------------------------------------------------------------

ANCHORS: tuple[BadRecord, ...] = (
    BadRecord(
        "anchor: an ordinary organization",
        "organizations",
        organization(ANCHOR_ORG, "Каталог Якорь ООО"),
        "migrated",
        "organization of deal",
    ),
    BadRecord(
        "anchor: an ordinary person",
        "persons",
        person(
            ANCHOR_PERSON,
            "Якорь Каталогов",
            org_id=ANCHOR_ORG,
            emails=[{"value": "anchor@catalogue-anchor.ru", "primary": True, "label": "work"}],
            phones=_phones("+7 (495) 000-12-34"),
        ),
        "migrated",
        "contact of deal",
    ),
    BadRecord(
        "anchor: an ordinary open deal the activities, notes and mail hang on",
        "deals",
        deal(ANCHOR_DEAL, title="Каталог: сделка-якорь"),
        "migrated",
        "open deal",
    ),
    BadRecord(
        "anchor: a deleted organization",
        "organizations",
        organization(DELETED_ORG, "Удалённая Каталог ООО", is_deleted=True),
        "archived",
        "deleted in Pipedrive",
    ),
    BadRecord(
        "anchor: a deleted person",
        "persons",
        person(DELETED_PERSON, "Удалённый Каталогов", is_deleted=True),
        "archived",
        "deleted in Pipedrive",
    ),
    BadRecord(
        "anchor: a deleted deal",
        "deals",
        deal(DELETED_DEAL, title="Каталог: удалённая сделка", status="deleted", is_deleted=True),
        "archived",
        "deleted in Pipedrive",
    ),
)


def _persons() -> list[BadRecord]:
    p = 9_200_100
    many = [
        {"value": f"user{n}@many-mails-catalogue.ru", "primary": n == 0, "label": "work"}
        for n in range(300)
    ]
    needed = [
        BadRecord(
            "person with a null name",
            "persons",
            person(p + 1, None),
            "migrated",
            "contact of deal",
            amo_name=f"Pipedrive person {p + 1}",
        ),
        BadRecord(
            "person with an empty name",
            "persons",
            person(p + 2, ""),
            "migrated",
            "contact of deal",
            amo_name=f"Pipedrive person {p + 2}",
        ),
        BadRecord(
            "person with a whitespace-only name",
            "persons",
            person(p + 3, " \t\u00a0 "),
            "migrated",
            "contact of deal",
            amo_name=f"Pipedrive person {p + 3}",
        ),
        BadRecord(
            "person with HTML in the name (kept as text: amoCRM shows it, never runs it)",
            "persons",
            person(p + 4, "<b>Пётр</b> <script>alert(1)</script>Разметкин"),
            "migrated",
            "contact of deal",
            amo_name="<b>Пётр</b> <script>alert(1)</script>Разметкин",
        ),
        BadRecord(
            "person with emoji and Cyrillic, Latin, CJK and RTL scripts in the name",
            "persons",
            person(p + 5, MIXED_SCRIPTS),
            "migrated",
            "contact of deal",
            amo_name=MIXED_SCRIPTS,
        ),
        BadRecord(
            "person with control characters and a NUL byte in the name",
            "persons",
            person(p + 6, "Контрол " + CONTROL),
            "migrated",
            "contact of deal",
            amo_name="Контрол " + WITHOUT_CONTROL,
        ),
        BadRecord(
            "person with a 10,000+ character name",
            "persons",
            person(p + 7, "Длинноимённый " + LONG_TEXT),
            "migrated",
            "contact of deal",
            amo_name=("Длинноимённый " + LONG_TEXT)[:254] + "…",
        ),
        BadRecord(
            "person with invalid phones",
            "persons",
            person(p + 8, "Телефонов Невалидный", phones=_phones("n/a", "123", "+7 (999) 12")),
            "migrated-cleaned",
            "phone 123: too_short",
        ),
        BadRecord(
            "person whose phones are plain strings, not objects",
            "persons",
            person(p + 15, "Строкофонов Простой", phones=["+7 916 555-01-02"]),
            "migrated",
            "contact of deal",
        ),
        BadRecord(
            "person with invalid e-mails",
            "persons",
            person(
                p + 9,
                "Почтов Невалидный",
                emails=[
                    {"value": "not-an-email", "primary": True, "label": "work"},
                    {"value": "ivan@@mail.ru", "primary": False, "label": "work"},
                    {"value": "a@b", "primary": False, "label": "home"},
                ],
            ),
            "migrated-cleaned",
            "e-mail not-an-email: invalid",
        ),
        BadRecord(
            "person with 300 e-mail addresses",
            "persons",
            person(p + 10, "Многописьменный Адресат", emails=many),
            "migrated",
            "contact of deal",
        ),
        BadRecord(
            "person whose organization does not exist",
            "persons",
            person(p + 11, "Безорганизационный Сиротин", org_id=MISSING),
            "migrated-cleaned",
            f"organization {MISSING} not found",
        ),
        BadRecord(
            "person whose organization is deleted",
            "persons",
            person(p + 12, "Удалённоорганизованный Петр", org_id=DELETED_ORG),
            "migrated-cleaned",
            f"organization {DELETED_ORG} is deleted in Pipedrive",
        ),
        BadRecord(
            "person whose owner is not a Pipedrive user",
            "persons",
            person(p + 13, "Бесхозный Владимир", owner_id=MISSING_USER),
            "migrated",
            "contact of deal",
        ),
        BadRecord(
            "person with a malformed add_time",
            "persons",
            person(p + 14, "Кривовременный Датий", add_time="31/12/2020 25:61"),
            "migrated-cleaned",
            "add_time: expected timestamptz",
        ),
        BadRecord(
            "person entered twice (same name, e-mail and phone): a duplicate",
            "persons",
            person(
                p + 17,
                "Дубликатов Семён",
                emails=[{"value": "semen@dublikatov.ru", "primary": True, "label": "work"}],
                phones=_phones("+7 916 555-03-04"),
                update_time="2026-01-01T12:00:00Z",
            ),
            "merged",
            f"merged into person {p + 16}",
            companions=(
                (
                    "persons",
                    person(
                        p + 16,
                        "Дубликатов Семён",
                        emails=[{"value": "semen@dublikatov.ru", "primary": True, "label": "work"}],
                        phones=_phones("+7 916 555-03-04"),
                    ),
                ),
            ),
        ),
    ]
    return [_needed(bad, "person_id") for bad in needed] + [
        BadRecord(
            "person with no id",
            "persons",
            person(None, "Безномерный Идентификатор"),
            "quarantined",
            "missing or invalid key",
            marker="Безномерный Идентификатор",
        ),
        BadRecord(
            "person with a non-numeric id",
            "persons",
            person("abc", "Буквенный Идентификатор"),
            "quarantined",
            "missing or invalid key",
            marker="Буквенный Идентификатор",
        ),
        BadRecord(
            "person id repeated with different content",
            "persons",
            person(ANCHOR_PERSON, "Двойник Якоря"),
            "quarantined",
            "repeated key",
            marker="Двойник Якоря",
        ),
    ]


def _organizations() -> list[BadRecord]:
    o = 9_300_100
    needed = [
        BadRecord(
            "organization with a null name",
            "organizations",
            organization(o + 1, None),
            "migrated",
            "organization of deal",
            amo_name=f"Pipedrive organization {o + 1}",
        ),
        BadRecord(
            "organization with a whitespace-only name",
            "organizations",
            organization(o + 2, "   "),
            "migrated",
            "organization of deal",
            amo_name=f"Pipedrive organization {o + 2}",
        ),
        BadRecord(
            "organization with HTML and entities in the name (kept as text)",
            "organizations",
            organization(o + 3, "<i>ООО</i> &laquo;Тэги&raquo;"),
            "migrated",
            "organization of deal",
            amo_name="<i>ООО</i> &laquo;Тэги&raquo;",
        ),
        BadRecord(
            "organization with CJK, Arabic and Cyrillic in the name",
            "organizations",
            organization(o + 4, "株式会社 شركة Компания 🏢"),
            "migrated",
            "organization of deal",
            amo_name="株式会社 شركة Компания 🏢",
        ),
    ]
    return [_needed(bad, "org_id") for bad in needed] + [
        BadRecord(
            "organization with no id",
            "organizations",
            organization(None, "Организация Без Номера"),
            "quarantined",
            "missing or invalid key",
            marker="Организация Без Номера",
        ),
        BadRecord(
            "organization id repeated with different content",
            "organizations",
            organization(ANCHOR_ORG, "Двойник Якорной ООО"),
            "quarantined",
            "repeated key",
            marker="Двойник Якорной ООО",
        ),
    ]


def _deals() -> list[BadRecord]:
    d = 9_100_100
    lost = {
        "status": "lost",
        "lost_time": "2026-05-20T10:00:00Z",
        "close_time": "2026-05-20T10:00:00Z",
    }
    return [
        BadRecord(
            "deal with a null title",
            "deals",
            deal(d + 1, title=None),
            "migrated",
            "open deal",
            amo_name=f"Pipedrive deal {d + 1}",
        ),
        BadRecord(
            "deal with an empty title",
            "deals",
            deal(d + 2, title=""),
            "migrated",
            "open deal",
            amo_name=f"Pipedrive deal {d + 2}",
        ),
        BadRecord(
            "deal with a whitespace-only title",
            "deals",
            deal(d + 3, title="  \n\t "),
            "migrated",
            "open deal",
            amo_name=f"Pipedrive deal {d + 3}",
        ),
        BadRecord(
            "deal with HTML in the title (kept as text)",
            "deals",
            deal(d + 4, title="<h1>Сделка</h1><script>alert('x')</script>"),
            "migrated",
            "open deal",
            amo_name="<h1>Сделка</h1><script>alert('x')</script>",
        ),
        BadRecord(
            "deal with a 10,000+ character title",
            "deals",
            deal(d + 5, title="Сделка " + LONG_TEXT),
            "migrated",
            "open deal",
            amo_name=("Сделка " + LONG_TEXT)[:254] + "…",
        ),
        BadRecord(
            "deal with emoji and mixed scripts in the title",
            "deals",
            deal(d + 6, title=MIXED_SCRIPTS),
            "migrated",
            "open deal",
            amo_name=MIXED_SCRIPTS,
        ),
        BadRecord(
            "deal with control characters and a NUL byte in the title",
            "deals",
            deal(d + 7, title="Сделка " + CONTROL),
            "migrated",
            "open deal",
            amo_name="Сделка " + WITHOUT_CONTROL,
        ),
        BadRecord(
            "deal whose person does not exist",
            "deals",
            deal(d + 8, person_id=MISSING),
            "migrated-cleaned",
            f"person {MISSING} not found",
        ),
        BadRecord(
            "deal whose organization does not exist",
            "deals",
            deal(d + 9, org_id=MISSING),
            "migrated-cleaned",
            f"organization {MISSING} not found",
        ),
        BadRecord(
            "deal whose owner is not a Pipedrive user",
            "deals",
            deal(d + 10, owner_id=MISSING_USER),
            "migrated-cleaned",
            f"owner {MISSING_USER} not found",
        ),
        BadRecord(
            "deal in a stage that does not exist",
            "deals",
            deal(d + 11, stage_id=MISSING),
            "failed",
            f"stage {MISSING} not found",
        ),
        BadRecord(
            "deal in a pipeline that does not exist",
            "deals",
            deal(d + 12, pipeline_id=MISSING),
            "failed",
            f"pipeline {MISSING} not found",
        ),
        BadRecord(
            "deal in a stage of another pipeline",
            "deals",
            deal(d + 13, stage_id=STAGE_OF_PIPELINE_2),
            "failed",
            f"stage {STAGE_OF_PIPELINE_2} belongs to pipeline 2",
        ),
        BadRecord(
            "deal whose person is deleted",
            "deals",
            deal(d + 14, person_id=DELETED_PERSON),
            "migrated-cleaned",
            f"person {DELETED_PERSON} is deleted in Pipedrive",
        ),
        BadRecord(
            "deal whose organization is deleted",
            "deals",
            deal(d + 15, org_id=DELETED_ORG),
            "migrated-cleaned",
            f"organization {DELETED_ORG} is deleted in Pipedrive",
        ),
        BadRecord(
            "deal in an unknown currency",
            "deals",
            deal(d + 16, value=500.0, currency="XYZ"),
            "failed",
            "unknown currency XYZ",
        ),
        BadRecord(
            "deal with a value but no currency",
            "deals",
            deal(d + 17, value=500.0, currency=None),
            "failed",
            "without a currency",
        ),
        BadRecord(
            "deal with a negative amount",
            "deals",
            deal(d + 18, value=-2500.0),
            "failed",
            "cannot be negative",
        ),
        BadRecord(
            "deal with an amount of 1e18",
            "deals",
            deal(d + 19, value=1e18),
            "failed",
            "over the largest amoCRM budget",
        ),
        BadRecord(
            "deal whose converted amount exceeds 2^31-1",
            "deals",
            deal(d + 20, value=30_000_000.0, currency="USD"),
            "failed",
            "over the largest amoCRM budget",
        ),
        BadRecord(
            "deal with an amount of 1e20 USD, beyond exact decimal arithmetic",
            "deals",
            deal(d + 30, value=1e20, currency="USD"),
            "failed",
            "over the largest amoCRM budget",
        ),
        BadRecord(
            "deal with text as its amount",
            "deals",
            deal(d + 21, value="много денег"),
            "migrated-cleaned",
            "value: expected double",
        ),
        BadRecord(
            "deal with an enum option that does not exist (the value is left out)",
            "deals",
            deal(d + 22, custom_fields={ENUM_FIELD: 999_999}),
            "migrated",
            "open deal",
        ),
        BadRecord(
            "deal with text in a numeric custom field (the value is left out)",
            "deals",
            deal(d + 23, custom_fields={NUMBER_FIELD: "десять"}),
            "migrated",
            "open deal",
        ),
        BadRecord(
            "deal with 'NaN' in a numeric custom field (the value is left out)",
            "deals",
            deal(d + 24, custom_fields={NUMBER_FIELD: "NaN"}),
            "migrated",
            "open deal",
        ),
        BadRecord(
            "deal with text in a date custom field (the value is left out)",
            "deals",
            deal(d + 25, custom_fields={DATE_FIELD: "в четверг"}),
            "migrated",
            "open deal",
        ),
        BadRecord(
            "deal with a custom field no definition has (the value is left out)",
            "deals",
            deal(d + 31, custom_fields={"0" * 40: "без определения"}),
            "migrated",
            "open deal",
        ),
        BadRecord(
            "deal with labels that do not exist",
            "deals",
            deal(d + 32, label_ids=[MISSING, "метка", None]),
            "migrated",
            "open deal",
        ),
        BadRecord(
            "lost deal with a lost reason no one defined (setup creates it)",
            "deals",
            deal(d + 26, lost_reason="Марсиане 👽 украли бюджет", **lost),
            "migrated",
            "lost on 2026-05-20",
        ),
        BadRecord(
            "lost deal with no close date",
            "deals",
            deal(d + 33, status="lost", lost_reason="Дорого"),
            "archived",
            "lost with no date",
        ),
        BadRecord(
            "deal with dates in the future",
            "deals",
            deal(d + 27, add_time="2099-01-01T00:00:00Z", expected_close_date="2999-12-31"),
            "migrated",
            "open deal",
        ),
        BadRecord(
            "won deal closed in the future",
            "deals",
            deal(
                d + 34,
                status="won",
                won_time="2099-06-01T00:00:00Z",
                close_time="2099-06-01T00:00:00Z",
            ),
            "migrated",
            "won on 2099-06-01",
        ),
        BadRecord(
            "deal created in 1900",
            "deals",
            deal(d + 28, add_time="1900-01-01T00:00:00Z"),
            "migrated",
            "open deal",
        ),
        BadRecord(
            "deal with a malformed add_time and an impossible date",
            "deals",
            deal(d + 29, add_time="вчера", expected_close_date="2026-02-30"),
            "migrated-cleaned",
            "add_time: expected timestamptz",
        ),
        BadRecord(
            "deal with no id",
            "deals",
            deal(None, title="Каталог: сделка без номера"),
            "quarantined",
            "missing or invalid key",
            marker="Каталог: сделка без номера",
        ),
        BadRecord(
            "deal id repeated with different content",
            "deals",
            deal(ANCHOR_DEAL, title="Каталог: двойник якоря"),
            "quarantined",
            "repeated key",
            marker="Каталог: двойник якоря",
        ),
    ]


def _activities() -> list[BadRecord]:
    a = 9_400_100
    return [
        BadRecord(
            "activity of a deal that does not exist",
            "activities",
            activity(a + 1, "Звонок в никуда", deal_id=MISSING),
            "archived",
            f"deal {MISSING} not found",
        ),
        BadRecord(
            "activity of a deleted deal",
            "activities",
            activity(a + 2, "Звонок по удалённой", deal_id=DELETED_DEAL),
            "archived",
            f"deal {DELETED_DEAL} does not migrate",
        ),
        BadRecord(
            "activity with no subject and no type",
            "activities",
            activity(a + 3, None, type=None),
            "migrated",
            "open activity",
        ),
        BadRecord(
            "activity of a type the account does not have",
            "activities",
            activity(a + 4, "Телепортация", type="teleport"),
            "migrated",
            "open activity",
        ),
        BadRecord(
            "done activity with a 10,000+ character subject and an HTML note",
            "activities",
            activity(
                a + 5,
                LONG_TEXT,
                done=True,
                marked_as_done_time="2026-05-20T10:00:00Z",
                note="<p>" + LONG_TEXT + "</p><script>x()</script>",
            ),
            "migrated",
            "done activity",
        ),
        BadRecord(
            "activity with an impossible due date",
            "activities",
            activity(a + 6, "Кривая дата", due_date="2026-02-30"),
            "migrated-cleaned",
            "due_date: expected date",
        ),
        BadRecord(
            "activity with a due time that is not a time",
            "activities",
            activity(a + 7, "Кривое время", due_time="полдень"),
            "migrated",
            "open activity",
        ),
        BadRecord(
            "activity due in the year 2999",
            "activities",
            activity(a + 8, "Через тысячу лет", due_date="2999-12-31"),
            "migrated",
            "open activity",
        ),
        BadRecord(
            "activity linked to nothing",
            "activities",
            activity(a + 9, "Ни к чему", deal_id=None),
            "archived",
            "not linked to a deal",
        ),
        BadRecord(
            "activity done in 1900",
            "activities",
            activity(
                a + 10, "Давно сделано", done=True, marked_as_done_time="1900-01-01T00:00:00Z"
            ),
            "archived",
            "more than 12 months before",
        ),
        BadRecord(
            "activity with no id",
            "activities",
            activity(None, "Активность без номера"),
            "quarantined",
            "missing or invalid key",
            marker="Активность без номера",
        ),
    ]


def _notes() -> list[BadRecord]:
    n = 9_500_100
    return [
        BadRecord(
            "note of a deal that does not exist",
            "notes",
            note(n + 1, "<p>о несуществующей</p>", deal_id=MISSING),
            "archived",
            f"deal {MISSING} not found",
        ),
        BadRecord(
            "note of a deleted person",
            "notes",
            note(n + 2, "<p>об удалённом</p>", deal_id=None, person_id=DELETED_PERSON),
            "archived",
            f"person {DELETED_PERSON} is deleted",
        ),
        BadRecord(
            "note with HTML, scripts and styles",
            "notes",
            note(
                n + 3,
                "<style>p{}</style><p>Текст&nbsp;<b>жирный</b></p>"
                "<script>steal()</script><img src=x onerror=alert(1)>",
            ),
            "migrated",
            "note of migrating deal",
        ),
        BadRecord(
            "note of 100,000+ characters",
            "notes",
            note(n + 4, "<p>" + "Огромная заметка. " * 6000 + "</p>"),
            "migrated",
            "note of migrating deal",
        ),
        BadRecord(
            "note with control characters and NUL bytes",
            "notes",
            note(n + 5, CONTROL),
            "migrated",
            "note of migrating deal",
        ),
        BadRecord(
            "note with emoji and RTL text",
            "notes",
            note(n + 6, "<p>مرحبا 👋 שלום 李</p>"),
            "migrated",
            "note of migrating deal",
        ),
        BadRecord(
            "note with no content",
            "notes",
            note(n + 7, None),
            "migrated",
            "note of migrating deal",
        ),
        BadRecord(
            "note with no id",
            "notes",
            note(None, "Заметка без номера"),
            "quarantined",
            "missing or invalid key",
            marker="Заметка без номера",
        ),
        BadRecord(
            "note id repeated with different content",
            "notes",
            note(n + 9, "Вторая копия заметки"),
            "quarantined",
            "repeated key",
            marker="Вторая копия заметки",
            companions=(("notes", note(n + 9, "Первая копия заметки")),),
        ),
    ]


def _participants() -> list[BadRecord]:
    p = 9_600_100
    carrier = deal(9_100_900, title="Каталог: сделка с участниками")
    return [
        BadRecord(
            "participant who is the deal's own person",
            "deal_participants",
            participant(p + 1, carrier["id"], ANCHOR_PERSON),
            "migrated",
            "participant of migrating deal",
            companions=(("deals", carrier),),
        ),
        BadRecord(
            "the deal's own person as a participant a second time",
            "deal_participants",
            participant(p + 2, carrier["id"], ANCHOR_PERSON),
            "merged",
            f"same contact as participant {p + 1}",
        ),
        BadRecord(
            "participant who does not exist",
            "deal_participants",
            participant(p + 3, carrier["id"], MISSING),
            "archived",
            f"person {MISSING} not found",
        ),
        BadRecord(
            "participant who is deleted",
            "deal_participants",
            participant(p + 4, carrier["id"], DELETED_PERSON),
            "archived",
            f"person {DELETED_PERSON} is deleted",
        ),
        BadRecord(
            "participant with no id",
            "deal_participants",
            participant(None, carrier["id"], ANCHOR_PERSON),
            "quarantined",
            "missing or invalid key",
        ),
    ]


def _followers() -> list[BadRecord]:
    f = 9_700_100
    return [
        BadRecord(
            "follower who is not a Pipedrive user (named by id on the lead)",
            "deal_followers",
            follower(f + 1, MISSING_USER),
            "migrated",
            "follower of migrating deal",
        ),
        BadRecord(
            "the same follower twice",
            "deal_followers",
            follower(f + 3, OWNER, add_time="2026-05-07 10:00:00"),
            "quarantined",
            "repeated key",
            marker="2026-05-07",
            companions=(("deal_followers", follower(f + 2, OWNER)),),
        ),
        BadRecord(
            "follower with no user",
            "deal_followers",
            follower(f + 4, None),
            "quarantined",
            "missing or invalid key",
        ),
        BadRecord(
            "follower of a deleted deal",
            "deal_followers",
            follower(f + 5, OWNER, deal_id=DELETED_DEAL),
            "archived",
            f"deal {DELETED_DEAL} does not migrate",
        ),
    ]


def _mail() -> list[BadRecord]:
    m = 9_800_100
    crowd = [
        {"id": n, "email_address": f"reader{n}@crowd-catalogue.ru", "name": f"Читатель {n}"}
        for n in range(2_000)
    ]
    return [
        BadRecord(
            "mail message with no subject, body or parties",
            "deal_mail_messages",
            mail(m + 1, None, body=None, **{"from": [], "to": [], "cc": []}),
            "migrated",
            "e-mail of migrating deal",
        ),
        BadRecord(
            "mail message with null parties",
            "deal_mail_messages",
            mail(m + 2, "Без сторон", **{"from": None, "to": None, "cc": None}),
            "migrated",
            "e-mail of migrating deal",
        ),
        BadRecord(
            "mail message to 2,000 recipients",
            "deal_mail_messages",
            mail(m + 3, "Рассылка всем", to=crowd),
            "migrated",
            "e-mail of migrating deal",
        ),
        BadRecord(
            "mail message with a script in the body",
            "deal_mail_messages",
            mail(m + 4, "Опасное письмо", body="<script>alert(1)</script><p>Текст</p>"),
            "migrated",
            "e-mail of migrating deal",
        ),
        BadRecord(
            "mail message of a deleted deal",
            "deal_mail_messages",
            mail(m + 5, "Письмо по удалённой", deal_id=DELETED_DEAL),
            "archived",
            f"deal {DELETED_DEAL} does not migrate",
        ),
        BadRecord(
            "mail message with no id",
            "deal_mail_messages",
            mail(None, "Письмо без номера"),
            "quarantined",
            "missing or invalid key",
            marker="Письмо без номера",
        ),
    ]


def _leads() -> list[BadRecord]:
    return [
        BadRecord(
            "leads-inbox lead whose person does not exist",
            "leads",
            lead(
                "c0ffee00-0000-4000-8000-000000000001",
                "Каталог: лид без человека",
                person_id=MISSING,
            ),
            "migrated-cleaned",
            f"person {MISSING} not found",
            amo_name="Каталог: лид без человека",
        ),
        BadRecord(
            "leads-inbox lead in an unknown currency",
            "leads",
            lead(
                "c0ffee00-0000-4000-8000-000000000002",
                "Каталог: лид в тугриках",
                value={"amount": 10.0, "currency": "XYZ"},
            ),
            "failed",
            "unknown currency XYZ",
        ),
        BadRecord(
            "leads-inbox lead with no id",
            "leads",
            lead(None, "Каталог: лид без номера"),
            "quarantined",
            "missing or invalid key",
            marker="Каталог: лид без номера",
        ),
    ]


CATALOGUE: tuple[BadRecord, ...] = (
    *_persons(),
    *_organizations(),
    *_deals(),
    *_activities(),
    *_notes(),
    *_participants(),
    *_followers(),
    *_mail(),
    *_leads(),
)


# --- writing the dataset -----------------------------------------------------------------------


def _identity(file: str, record: dict[str, Any]) -> Any:
    if file == "deal_followers":
        return (record.get("deal_id"), record.get("user_id"))
    return record.get("id")


def added_records() -> dict[str, list[dict[str, Any]]]:
    """Every record the catalogue adds to the generated account (anchors, companions and bad
    records), by dataset file, in the order they are written: a companion before its entry,
    so a repeated id comes after the copy that is kept."""
    added: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in (*ANCHORS, *CATALOGUE):
        for file, record in (*entry.companions, (entry.file, entry.record)):
            added[file].append(record)
    return added


def write_dataset(out_dir: Path) -> Path:
    """Write the catalogue's ``--from-dir`` folder into ``out_dir`` (new or empty): the
    generated account (:data:`BASE_SCALE`, :data:`BASE_SEED`), :func:`added_records`
    appended to their files, and ``catalogue.json``. The generator's ``manifest.json`` is
    removed: its counts would no longer be true. Raises ``ValueError`` when a catalogue id
    collides with a generated one."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty: choose a new folder for the dataset")
    generate(BASE_SCALE, BASE_SEED, out_dir)
    (out_dir / "manifest.json").unlink()
    added = added_records()
    for file in ENTITY_FILES:
        if file not in added:
            continue
        generated = read_entity(out_dir, file)
        taken = {_identity(file, record) for record in generated}
        clashes = sorted(
            {str(_identity(file, r)) for r in added[file] if _identity(file, r) in taken}
        )
        if clashes:
            raise ValueError(f"{file}: catalogue ids {clashes} clash with generated records")
        write_entity(out_dir, file, [*generated, *added[file]])
    entries = [
        {
            "kind": entry.kind,
            "file": entry.file,
            "key": entry.key,
            "expect": entry.expect,
            "reason": entry.reason,
            "amo_name": entry.amo_name,
            "marker": entry.marker,
        }
        for entry in (*ANCHORS, *CATALOGUE)
    ]
    catalogue = {"base": {"scale": BASE_SCALE, "seed": BASE_SEED}, "entries": entries}
    (out_dir / "catalogue.json").write_text(
        json.dumps(catalogue, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return out_dir


def main(argv: list[str]) -> int:
    """``python -m migration_pipeline_tests.catalogue.bad_records OUT_DIR``."""
    if len(argv) != 1:
        print(
            "usage: python -m migration_pipeline_tests.catalogue.bad_records OUT_DIR",
            file=sys.stderr,
        )
        return 2
    try:
        out_dir = write_dataset(Path(argv[0]))
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{out_dir}: {len(CATALOGUE)} bad records and {len(ANCHORS)} anchors added")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
