"""The sandbox's account generator: deterministic, in the API's shapes, referentially sound except
where it says so, dirty in every way it promises, and safe when processes race to generate.

Only tiny and small scales run here; seed and large are for ``benchmarks/bench_generate.py``.
The reference checks below are written independently of the generator (an oracle): they read
the files the way the fake server and the pipeline will."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import re
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from migration_pipeline.sandbox.dataset import ENTITY_FILES, read_entity
from migration_pipeline.sandbox.generator import (
    _COUNTRIES,
    _LEGAL_FORMS,
    _LEGAL_FORMS_SPELLED,
    ANCHOR,
    GENERATOR_VERSION,
    SCALES,
    _phone_formats,
    _PhoneBook,
    ensure_dataset,
    generate,
    generate_contacts,
)

TS2 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TS1 = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
HEX40 = re.compile(r"^[0-9a-f]{40}$")
CUSTOM_FIELD_TYPES = {
    "varchar", "varchar_auto", "text", "double", "monetary", "set", "enum", "user", "org",
    "people", "phone", "time", "timerange", "date", "daterange", "address",
}  # fmt: skip
V2_ENTITIES = ("pipelines", "stages", "deals", "organizations", "persons", "activities", "products")
FIELD_FILES = tuple(e for e in ENTITY_FILES if e.endswith("_fields"))
REQUIRED: dict[str, set[str]] = {
    "users": {"id", "name", "email", "active_flag", "created", "modified", "is_deleted"},
    "currencies": {"id", "code", "name", "decimal_points", "symbol", "active_flag",
                   "is_custom_flag"},
    "activity_types": {"id", "name", "key_string", "icon_key", "color", "order_nr",
                       "active_flag", "is_custom_flag", "add_time", "update_time"},
    "pipelines": {"id", "name", "order_nr", "is_deleted", "is_deal_probability_enabled",
                  "add_time", "update_time"},
    "stages": {"id", "order_nr", "name", "is_deleted", "deal_probability", "pipeline_id",
               "is_deal_rot_enabled", "days_to_rotten", "add_time", "update_time"},
    **{entity: {"id", "key", "name", "field_type", "options", "edit_flag", "add_time",
                "update_time", "active_flag", "mandatory_flag"} for entity in FIELD_FILES},
    "deals": {"id", "title", "owner_id", "creator_user_id", "person_id", "org_id", "pipeline_id",
              "stage_id", "value", "currency", "add_time", "update_time", "stage_change_time",
              "is_deleted", "is_archived", "archive_time", "status", "probability",
              "lost_reason", "visible_to", "close_time", "won_time", "lost_time",
              "expected_close_date", "label_ids", "custom_fields"},
    "organizations": {"id", "name", "owner_id", "add_time", "update_time", "is_deleted",
                      "visible_to", "label_ids", "address", "website", "custom_fields"},
    "persons": {"id", "name", "first_name", "last_name", "owner_id", "org_id", "add_time",
                "update_time", "emails", "phones", "is_deleted", "visible_to", "label_ids",
                "custom_fields"},
    "activities": {"id", "subject", "type", "owner_id", "is_deleted", "add_time", "update_time",
                   "deal_id", "lead_id", "person_id", "org_id", "due_date", "due_time",
                   "duration", "busy", "done", "marked_as_done_time", "location",
                   "participants", "priority", "note"},
    "products": {"id", "name", "code", "unit", "tax", "is_deleted", "is_linkable", "visible_to",
                 "owner_id", "add_time", "update_time", "prices", "custom_fields"},
    "notes": {"id", "content", "deal_id", "person_id", "org_id", "lead_id", "user_id",
              "add_time", "update_time", "active_flag"},
    "leads": {"id", "title", "owner_id", "creator_id", "label_ids", "person_id",
              "organization_id", "source_name", "is_archived", "was_seen", "value",
              "expected_close_date", "add_time", "update_time", "visible_to"},
    "deal_participants": {"id", "deal_id", "person_id", "add_time", "active_flag",
                          "added_by_user_id"},
    "deal_followers": {"id", "user_id", "deal_id", "add_time"},
    "deal_mail_messages": {"id", "from", "to", "cc", "bcc", "subject", "snippet", "body",
                           "mail_thread_id", "user_id", "message_time", "add_time",
                           "update_time", "read_flag", "sent_flag", "has_body_flag", "deal_id"},
}  # fmt: skip

Data = dict[str, list[dict[str, Any]]]


def load(directory: Path) -> tuple[Data, dict[str, Any]]:
    data = {entity: read_entity(directory, entity) for entity in ENTITY_FILES}
    truth = json.loads((directory / "truth.json").read_text(encoding="utf-8"))
    return data, truth


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny")
    generate("tiny", 7, directory)
    return directory


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("small")
    generate("small", 3, directory)
    return directory


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny account with purged records, as seed scale and above have."""
    directory = tmp_path_factory.mktemp("broken")
    generate(
        dataclasses.replace(SCALES["tiny"], name="tiny-broken", broken_references=2), 5, directory
    )
    return directory


def test_seed_scale_is_the_migration_in_seeds_001():
    seed = SCALES["seed"]
    assert (seed.deals, seed.organizations, seed.persons) == (2_300, 5_706, 11_621)
    assert SCALES["large"].deals == 10 * seed.deals


def test_same_scale_and_seed_write_byte_identical_files(small: Path, tmp_path: Path):
    generate("small", 3, tmp_path)
    names = sorted(p.name for p in small.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (small / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_another_seed_gives_another_account(tiny: Path, tmp_path: Path):
    generate("tiny", 8, tmp_path)
    assert (tiny / "persons.jsonl").read_bytes() != (tmp_path / "persons.jsonl").read_bytes()


def test_counts_match_the_files_and_the_manifest(tiny: Path, tmp_path: Path):
    counts = generate("tiny", 7, tmp_path)
    manifest = json.loads((tiny / "manifest.json").read_text())
    assert manifest == {"scale": "tiny", "seed": 7, "counts": counts, "generator_version": 1}
    assert list(counts) == list(ENTITY_FILES)
    for entity in ENTITY_FILES:
        assert counts[entity] == len(read_entity(tiny, entity)) > 0, entity
    scale = SCALES["tiny"]
    assert (counts["deals"], counts["organizations"], counts["persons"]) == (
        scale.deals,
        scale.organizations,
        scale.persons,
    )
    assert 100 <= counts["activities"] <= 600 and 100 <= counts["notes"] <= 600


@pytest.mark.parametrize("fixture", ["tiny", "small"])
def test_records_have_the_fields_and_formats_the_reference_names(
    fixture: str, request: pytest.FixtureRequest
):
    data, _ = load(request.getfixturevalue(fixture))
    for entity, records in data.items():
        for record in records:
            missing = REQUIRED[entity] - record.keys()
            assert not missing, (entity, record["id"], missing)
            times = [record.get(k) for k in ("add_time", "update_time", "created", "modified")]
            pattern = TS2 if entity in V2_ENTITIES else TS1
            if entity == "leads":
                pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            for value in filter(None, times):
                assert pattern.match(value), (entity, record["id"], value)
    for deal in data["deals"]:
        for key in ("close_time", "won_time", "lost_time", "archive_time", "stage_change_time"):
            assert deal[key] is None or TS2.match(deal[key])
        assert isinstance(deal["value"], float) and isinstance(deal["owner_id"], int)
        assert isinstance(deal["custom_fields"], dict)
    for person in data["persons"]:
        for item in person["emails"] + person["phones"]:
            assert set(item) == {"value", "primary", "label"}
        for items in (person["emails"], person["phones"]):
            assert not items or [i["primary"] for i in items].count(True) == 1
    org_address_keys = {"value", "country", "locality", "route", "street_number", "postal_code"}
    assert all(
        org_address_keys <= org["address"].keys() for org in data["organizations"] if org["address"]
    )
    for mail in data["deal_mail_messages"]:
        assert len(mail["snippet"]) <= 225 and TS1.match(mail["message_time"])
        for party in mail["from"] + mail["to"] + mail["cc"] + mail["bcc"]:
            assert set(party) == {"id", "email_address", "name", "linked_person_id",
                                  "linked_person_name", "mail_message_party_id"}  # fmt: skip
        assert {mail[f] for f in ("read_flag", "sent_flag", "has_body_flag")} <= {0, 1}
    for participant in data["deal_participants"]:
        assert isinstance(participant["person_id"], int)
        assert isinstance(participant["added_by_user_id"], int)
    for lead in data["leads"]:
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", lead["id"]
        )
        assert lead["value"] is None or set(lead["value"]) == {"amount", "currency"}


def test_field_definitions_mark_custom_fields_by_hash_key(tiny: Path):
    for entity in FIELD_FILES:
        for field in read_entity(tiny, entity):
            assert field["edit_flag"] == bool(HEX40.match(field["key"])), field
            assert field["options"] is None or all(
                set(o) >= {"id", "label"} for o in field["options"]
            )
            if field["edit_flag"] and field["field_type"] in ("enum", "set"):
                assert all(isinstance(o["id"], int) for o in field["options"])


@pytest.mark.parametrize("fixture", ["tiny", "small", "broken"])
def test_ids_are_unique_per_entity(fixture: str, request: pytest.FixtureRequest):
    data, _ = load(request.getfixturevalue(fixture))
    for entity, records in data.items():
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)), entity


def dangling(data: Data, truth: dict[str, Any]) -> set[tuple[str, Any, str, Any]]:
    """Every reference in the account that does not resolve, as (entity, id, field, value)."""
    ids = {entity: {r["id"] for r in records} for entity, records in data.items()}
    users, persons, orgs = ids["users"], ids["persons"], ids["organizations"]
    deals, leads = ids["deals"], ids["leads"]
    found: set[tuple[str, Any, str, Any]] = set()

    def check(entity: str, record: dict[str, Any], field: str, value: Any, pool: set[Any]) -> None:
        if value is not None and value not in pool:
            found.add((entity, record["id"], field, value))

    fields = {
        e: {f["key"]: f for f in data[f"{e}_fields"]}
        for e in ("deal", "person", "organization", "product")
    }
    labels = {
        e: {o["id"] for o in fields[e]["label"]["options"]}
        for e in ("deal", "person", "organization")
    }
    for entity, kind in (
        ("deals", "deal"),
        ("persons", "person"),
        ("organizations", "organization"),
        ("products", "product"),
    ):
        for record in data[entity]:
            check(entity, record, "owner_id", record["owner_id"], users)
            for label in record.get("label_ids", ()):
                check(entity, record, "label_ids", label, labels[kind])
            for key, value in record["custom_fields"].items():
                field = fields[kind][key]  # KeyError: a value for an undefined field
                options = {o["id"] for o in field["options"] or ()}
                pools = {"user": users, "org": orgs, "people": persons, "enum": options}
                if field["field_type"] in pools:
                    check(entity, record, f"custom_fields.{key}", value, pools[field["field_type"]])
                elif field["field_type"] == "set":
                    for item in value or ():
                        check(entity, record, f"custom_fields.{key}", item, options)
    stages = {s["id"]: s for s in data["stages"]}
    currencies = {c["code"] for c in data["currencies"]}
    for deal in data["deals"]:
        check("deals", deal, "person_id", deal["person_id"], persons)
        check("deals", deal, "org_id", deal["org_id"], orgs)
        check("deals", deal, "creator_user_id", deal["creator_user_id"], users)
        check("deals", deal, "currency", deal["currency"], currencies)
        stage = stages[deal["stage_id"]]
        assert stage["pipeline_id"] == deal["pipeline_id"] and not stage["is_deleted"]
    for person in data["persons"]:
        check("persons", person, "org_id", person["org_id"], orgs)
    types = {t["key_string"] for t in data["activity_types"]}
    for activity in data["activities"]:
        for field, pool in (("deal_id", deals), ("person_id", persons), ("org_id", orgs),
                            ("lead_id", leads), ("owner_id", users), ("type", types)):  # fmt: skip
            check("activities", activity, field, activity[field], pool)
        for participant in activity["participants"]:
            check(
                "activities",
                activity,
                "participants[].person_id",
                participant["person_id"],
                persons,
            )
    for note in data["notes"]:
        for field, pool in (("deal_id", deals), ("person_id", persons), ("org_id", orgs),
                            ("lead_id", leads), ("user_id", users)):  # fmt: skip
            check("notes", note, field, note[field], pool)
    for lead in data["leads"]:
        check("leads", lead, "person_id", lead["person_id"], persons)
        check("leads", lead, "organization_id", lead["organization_id"], orgs)
        check("leads", lead, "owner_id", lead["owner_id"], users)
        for label in lead["label_ids"]:
            check("leads", lead, "label_ids", label, set(truth["lead_labels"]))
        assert lead["person_id"] or lead["organization_id"]
    for item in data["deal_participants"]:
        check("deal_participants", item, "deal_id", item["deal_id"], deals)
        check("deal_participants", item, "person_id", item["person_id"], persons)
        check("deal_participants", item, "added_by_user_id", item["added_by_user_id"], users)
    for item in data["deal_followers"]:
        check("deal_followers", item, "deal_id", item["deal_id"], deals)
        check("deal_followers", item, "user_id", item["user_id"], users)
    for mail in data["deal_mail_messages"]:
        check("deal_mail_messages", mail, "deal_id", mail["deal_id"], deals)
        check("deal_mail_messages", mail, "user_id", mail["user_id"], users)
        for party in mail["from"] + mail["to"] + mail["cc"]:
            check(
                "deal_mail_messages", mail, "linked_person_id", party["linked_person_id"], persons
            )
    return found


@pytest.mark.parametrize("fixture", ["tiny", "small", "broken"])
def test_references_resolve_except_the_recorded_breakages(
    fixture: str, request: pytest.FixtureRequest
):
    data, truth = load(request.getfixturevalue(fixture))
    recorded = {
        (b["entity"], b["id"], b["field"], b["target_id"]) for b in truth["broken_references"]
    }
    assert dangling(data, truth) == recorded
    if fixture == "broken":
        broken_fields = {(b["entity"], b["field"]) for b in truth["broken_references"]}
        assert {
            ("deals", "person_id"),
            ("persons", "org_id"),
            ("notes", "deal_id"),
        } <= broken_fields
        for entity, purged in truth["purged"].items():
            assert len(purged) == 2 and not set(purged) & {r["id"] for r in data[entity]}
    else:
        assert not recorded and not any(truth["purged"].values())


def test_every_custom_field_type_is_defined_and_has_values_on_deals(tiny: Path):
    fields = [f for f in read_entity(tiny, "deal_fields") if f["edit_flag"]]
    assert {f["field_type"] for f in fields} == CUSTOM_FIELD_TYPES
    deals = read_entity(tiny, "deals")
    shapes = {
        "monetary": lambda v: set(v) == {"value", "currency"},
        "set": lambda v: isinstance(v, list) and v and all(isinstance(i, int) for i in v),
        "enum": lambda v: isinstance(v, int),
        "user": lambda v: isinstance(v, int),
        "org": lambda v: isinstance(v, int),
        "people": lambda v: isinstance(v, int),
        "double": lambda v: isinstance(v, int | float),
        "date": lambda v: DATE.match(v),
        "daterange": lambda v: DATE.match(v["value"]) and DATE.match(v["until"]),
        "time": lambda v: set(v) == {"value", "timezone_id", "timezone_name"},
        "timerange": lambda v: set(v) == {"value", "until", "timezone_id", "timezone_name"},
        "address": lambda v: (
            {"value", "route", "locality", "country", "formatted_address"} <= set(v)
        ),
    }
    for field in fields:
        values = [
            d["custom_fields"][field["key"]]
            for d in deals
            if d["custom_fields"].get(field["key"]) is not None
        ]
        assert values, field["name"]
        check = shapes.get(field["field_type"], lambda v: isinstance(v, str))
        assert all(check(v) for v in values), field["field_type"]
    assert any(field["key"] not in d["custom_fields"] for d in deals for field in fields)
    assert any(None in d["custom_fields"].values() for d in deals)


def phone_key(value: str) -> str | None:
    """The last nine digits of a phone, extension cut off: equal for one number in any format."""
    digits = re.sub(r"\D", "", re.split(r"\s*(?:ext\.|доб\.|\(доб\.|x\d)", value)[0])
    return digits[-9:] if len(digits) >= 9 else None


def email_key(value: str) -> str | None:
    value = value.strip().lower()
    return (
        value
        if re.fullmatch(r"[^@\s,]+@[^@\s,]+\.[a-z]{2,}", value) and ".." not in value
        else None
    )


def contact_keys(person: dict[str, Any]) -> set[tuple[str, str]]:
    keys = {("phone", k) for k in map(phone_key, (p["value"] for p in person["phones"])) if k}
    return keys | {
        ("email", k) for k in map(email_key, (e["value"] for e in person["emails"])) if k
    }


def org_name_key(name: str) -> str:
    forms = sorted(
        {*_LEGAL_FORMS_SPELLED.values(), *(f for fs in _LEGAL_FORMS.values() for f in fs)},
        key=len,
        reverse=True,
    )
    name = name.lower()
    for form in forms:
        name = name.replace(form.lower(), " ")
    return re.sub(r"[\s«»\"',]+", " ", name).strip()


def org_keys(org: dict[str, Any], tax_key: str) -> set[tuple[str, str]]:
    """What a matcher compares organizations on: name without legal form, quotes and case;
    website domain; address as typed; tax id without dashes."""
    keys = {("name", org_name_key(org["name"]))}
    if org["website"]:
        keys.add(
            ("domain", re.sub(r"^(https?://)?(www\.)?", "", org["website"].lower()).split("/")[0])
        )
    if org["address"]:
        keys.add(("address", org["address"]["value"]))
    if org["custom_fields"].get(tax_key):
        keys.add(("tax", org["custom_fields"][tax_key].replace("-", "")))
    return keys


def test_duplicate_clusters_are_real_disjoint_and_findable(small: Path):
    data, truth = load(small)
    persons = {p["id"]: p for p in data["persons"]}
    orgs = {o["id"]: o for o in data["organizations"]}
    for clusters, records in ((truth["persons"], persons), (truth["organizations"], orgs)):
        members = [i for cluster in clusters for i in cluster]
        assert all(len(c) >= 2 for c in clusters) and len(members) == len(set(members))
        assert set(members) <= records.keys()
        assert 0.05 <= len(members) / len(records) <= 0.15  # aim ~9%, 500 orgs vary
    twin = {i: set(c) for c in truth["organizations"] for i in c}
    tax_key = next(f["key"] for f in data["organization_fields"] if f["name"] == "ИНН / Tax ID")
    for cluster in truth["persons"]:
        for pid in cluster:
            others = [persons[o] for o in cluster if o != pid]
            me = persons[pid]
            same_org = any(
                me["org_id"]
                and (o["org_id"] == me["org_id"] or o["org_id"] in twin.get(me["org_id"], ()))
                for o in others
            )
            assert same_org or any(contact_keys(me) & contact_keys(o) for o in others), me
    for cluster in truth["organizations"]:
        for oid in cluster:
            me, others = orgs[oid], [orgs[o] for o in cluster if o != oid]

            assert any(org_keys(o, tax_key) & org_keys(me, tax_key) for o in others), [
                me["name"],
                *(o["name"] for o in others),
            ]


def test_contact_details_are_never_shared_by_different_people(small: Path):
    data, truth = load(small)
    entity_of = {pid: n for n, cluster in enumerate(truth["persons"]) for pid in cluster}
    owner: dict[tuple[str, str], set[Any]] = {}
    for person in data["persons"]:
        for key in contact_keys(person):
            owner.setdefault(key, set()).add(entity_of.get(person["id"], f"p{person['id']}"))
    assert all(len(entities) == 1 for entities in owner.values())


def test_namesakes_share_a_name_and_nothing_else(small: Path):
    data, truth = load(small)
    persons = {p["id"]: p for p in data["persons"]}
    in_cluster = {pid for cluster in truth["persons"] for pid in cluster}
    assert truth["person_namesakes"]
    for group in truth["person_namesakes"]:
        assert len(group) >= 2 and not set(group) & in_cluster
        assert len({persons[pid]["name"] for pid in group}) == 1
        keys = [contact_keys(persons[pid]) for pid in group]
        assert sum(map(len, keys)) == len(set().union(*keys))


@pytest.mark.parametrize("country", _COUNTRIES)
def test_every_phone_format_is_the_same_real_number(country: str):
    import random

    rng = random.Random(country)
    book = _PhoneBook(rng)
    for _ in range(40):
        phone = book.issue(rng, country)
        numbers = {
            phonenumbers.format_number(
                phonenumbers.parse(text, country), phonenumbers.PhoneNumberFormat.E164
            )
            # Ukraine's last format is the legacy "8 0XX" prefix libphonenumber cannot read.
            for text in _phone_formats(phone)[: -1 if country == "UA" else None]
        }
        assert len(numbers) == 1
        assert phonenumbers.is_valid_number(phonenumbers.parse(numbers.pop()))


def test_the_account_is_dirty_in_every_promised_way(tiny: Path):
    data, truth = load(tiny)
    deals, persons, notes = data["deals"], data["persons"], data["notes"]
    assert {d["status"] for d in deals} == {"open", "won", "lost", "deleted"}
    assert all(d["is_deleted"] == (d["status"] == "deleted") for d in deals)
    assert any(d["is_archived"] and d["archive_time"] for d in deals)
    assert any(d["lost_reason"] for d in deals if d["status"] == "lost")
    deal_currencies = {d["currency"] for d in deals}
    assert {"RUB", "USD", "EUR", "UAH", "KZT", "PLN", "GBP"} <= deal_currencies
    assert deal_currencies <= {c["code"] for c in data["currencies"]}
    assert any(d["value"] != round(d["value"]) for d in deals)
    assert any(d["person_id"] is None for d in deals) and any(d["org_id"] is None for d in deals)
    assert any(d["label_ids"] for d in deals)
    phones = [p["value"] for person in persons for p in person["phones"]]
    emails = [e["value"] for person in persons for e in person["emails"]]
    assert any(phone_key(v) is None for v in phones)  # junk such as "n/a"
    assert any(re.search(r"ext\.|доб\.|x\d", v) for v in phones)
    assert any(v and email_key(v) is None for v in emails)
    assert any(v != v.lower() and email_key(v) for v in emails)
    assert any(v != v.strip() for v in emails)
    assert any(
        p["org_id"] is None and p["id"] not in {d["person_id"] for d in deals} for p in persons
    )
    assert truth["persons"] and truth["organizations"] and truth["person_namesakes"]
    contents = [n["content"] for n in notes]
    assert any("<p>" in c for c in contents) and any(
        "<script" in c or "onerror" in c for c in contents
    )
    assert any(len(c) > 10_000 for c in contents)
    assert any(re.search("[\U0001f300-\U0001faff]", c) for c in contents)
    assert any(re.search("[а-яё]", c) for c in contents) and any(
        re.search("[іїєґ]", c) for c in contents
    )
    activities = data["activities"]
    assert {a["type"] for a in activities} == {t["key_string"] for t in data["activity_types"]}
    assert {a["done"] for a in activities} == {True, False}
    assert any(a["deal_id"] is None for a in activities) and any(a["lead_id"] for a in activities)
    assert {lead["is_archived"] for lead in data["leads"]} == {True, False}
    inactive = {u["id"] for u in data["users"] if not u["active_flag"]}
    assert len(inactive) == 1 and any(r["owner_id"] in inactive for r in deals + persons)
    assert any(m["body"] and "<p>" in m["body"] for m in data["deal_mail_messages"])
    person_org = {p["id"]: p["org_id"] for p in persons}
    deal_org = {d["id"]: d["org_id"] for d in deals}
    assert any(
        person_org[p["person_id"]] not in (None, deal_org[p["deal_id"]])
        for p in data["deal_participants"]
    )
    assert data["deal_followers"] and data["products"]


def test_time_never_passes_the_anchor_and_follows_the_status(small: Path):
    data, _ = load(small)
    anchor = "2026-10-01T00:00:00Z"
    for entity in ("deals", "persons", "organizations", "activities"):
        assert all(r["add_time"] <= r["update_time"] <= anchor for r in data[entity]), entity
    assert all(n["add_time"] <= "2026-10-01 00:00:00" for n in data["notes"])
    for deal in data["deals"]:
        closed = deal["status"] in ("won", "lost")
        assert (deal["close_time"] is not None) == closed
        assert (deal["won_time"] is not None) == (deal["status"] == "won")
        assert (deal["lost_time"] is not None) == (deal["status"] == "lost")
        assert deal["lost_reason"] is None or deal["status"] == "lost"
        assert not closed or deal["add_time"] <= deal["close_time"] <= anchor
    assert ANCHOR == 1_790_812_800


def _race(root: Path, barrier: Any) -> None:
    barrier.wait()
    ensure_dataset(root, "tiny", 11)


def test_ensure_dataset_survives_processes_racing_to_generate(tmp_path: Path):
    root = tmp_path / "datasets"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_race, args=(root, barrier)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert [p.name for p in root.iterdir()] == [f"tiny-seed11-v{GENERATOR_VERSION}"]
    generate("tiny", 11, tmp_path / "fresh")
    for path in (tmp_path / "fresh").iterdir():
        assert (
            path.read_bytes()
            == (root / f"tiny-seed11-v{GENERATOR_VERSION}" / path.name).read_bytes()
        ), path.name


def test_ensure_dataset_reuses_a_finished_dataset(tmp_path: Path):
    target = ensure_dataset(tmp_path, "tiny", 2)
    assert target == tmp_path / f"tiny-seed2-v{GENERATOR_VERSION}"
    stamp = (target / "manifest.json").stat().st_mtime_ns
    assert ensure_dataset(tmp_path, "tiny", 2) == target
    assert (target / "manifest.json").stat().st_mtime_ns == stamp


def test_ensure_dataset_refuses_an_unfinished_folder(tmp_path: Path):
    (tmp_path / f"tiny-seed4-v{GENERATOR_VERSION}").mkdir()
    (tmp_path / f"tiny-seed4-v{GENERATOR_VERSION}" / "persons.jsonl").write_text("")
    with pytest.raises(RuntimeError, match="manifest"):
        ensure_dataset(tmp_path, "tiny", 4)
    assert [p.name for p in tmp_path.iterdir()] == [f"tiny-seed4-v{GENERATOR_VERSION}"]


def test_unknown_scale_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="tiny, small, seed, large"):
        generate("huge", 1, tmp_path)


def test_contacts_mode_writes_persons_and_organizations_with_their_truth(tmp_path: Path):
    counts = generate_contacts(2_000, 600, 9, tmp_path)
    assert counts == {
        "users": 25,
        "person_fields": 16,
        "organization_fields": 15,
        "organizations": 600,
        "persons": 2_000,
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{e}.jsonl" for e in counts] + ["truth.json", "manifest.json"]
    )
    data, truth = load(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["scale"] == "contacts"
    assert 0.06 <= sum(map(len, truth["persons"])) / 2_000 <= 0.12
    org_ids = {o["id"] for o in data["organizations"]}
    assert all(p["org_id"] in org_ids for p in data["persons"] if p["org_id"])
    assert not truth["broken_references"]
