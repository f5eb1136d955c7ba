"""Phone numbers: one parametrized case per country format, extension and kind of junk."""

from __future__ import annotations

import pytest

from migration_pipeline.cleanse.phones import (
    PROBLEMS,
    parse_phone,
    phone_type,
    region_for_country,
    region_for_domain,
)

FALLBACKS = ["UA", "KZ", "BY", "PL", "DE", "US"]


@pytest.mark.parametrize(
    ("raw", "regions", "e164", "problem"),
    [
        # Russia: international, trunk 8, bare 7, brackets and dashes
        ("+7 (495) 123-45-67", ["RU"], "+74951234567", None),
        ("8 (916) 123-45-67", ["RU"], "+79161234567", None),
        ("79161234567", ["RU"], "+79161234567", None),
        ("8-916-123-45-67", ["RU"], "+79161234567", None),
        # Kazakhstan shares +7
        ("8 (701) 123-45-67", ["KZ"], "+77011234567", None),
        # Ukraine: 0xx, +38 (0xx), Soviet-era 8 0xx, bare 380
        ("050 123 45 67", ["UA"], "+380501234567", None),
        ("+38 (050) 123-45-67", ["RU"], "+380501234567", None),
        ("8 050 1234567", ["UA"], "+380501234567", None),
        ("380501234567", ["RU"], "+380501234567", None),
        # Poland: 00 prefix, (+48), national
        ("0048 601 234 567", ["RU"], "+48601234567", None),
        ("(+48) 601234567", ["RU"], "+48601234567", None),
        ("601-234-567", ["PL"], "+48601234567", None),
        # Germany: 0xx/…, +49 (0)…
        ("030/1234567", ["DE"], "+49301234567", None),
        ("+49 (0)176 12345678", ["RU"], "+4917612345678", None),
        # United States
        ("(212) 555-0134", ["US"], "+12125550134", None),
        ("+1-415-555-0134", ["RU"], "+14155550134", None),
        # a national number not valid in the first region is tried in the next ones
        ("(093) 585-79-38", ["RU", *FALLBACKS], "+380935857938", None),
        ("0162/53055483", ["RU", *FALLBACKS], "+4916253055483", None),
        # extensions are kept apart: E.164 cannot carry them
        ("+7 495 123-45-67 доб. 123", ["RU"], "+74951234567", "extension_dropped"),
        ("+7 495 123-45-67 (доб. 12)", ["RU"], "+74951234567", "extension_dropped"),
        ("+44 20 7946 0018 ext. 12", ["RU"], "+442079460018", "extension_dropped"),
        ("(212) 555-0134 x7", ["US"], "+12125550134", "extension_dropped"),
        # junk
        ("", ["RU"], None, "empty"),
        ("-", ["RU"], None, "empty"),
        (None, ["RU"], None, "empty"),
        ("n/a", ["RU"], None, "not_a_number"),
        ("нет", ["RU"], None, "not_a_number"),
        ("тел. уточнить", ["RU"], None, "not_a_number"),
        ("0", ["RU"], None, "too_short"),
        ("123", ["RU"], None, "too_short"),
        ("+7", ["RU"], None, "too_short"),
        ("+999 123 456 789", ["RU"], None, "invalid_country"),
        ("+7 000 000 00 00", ["RU"], "+70000000000", "possible_only"),
    ],
)
def test_parse_phone(raw: str | None, regions: list[str], e164: str | None, problem: str | None):
    region, parsed, calling_code, extension, found = parse_phone(raw, regions)
    assert (parsed, found) == (e164, problem)
    assert found is None or found in PROBLEMS
    assert region in regions
    if problem == "extension_dropped":
        assert extension and extension.isdigit()


def test_first_valid_region_wins_and_is_reported():
    region, e164, calling_code, *_ = parse_phone("(305) 573-4416", ["RU", "US"])
    assert (region, e164, calling_code) == ("US", "+13055734416", 1)
    region, e164, calling_code, *_ = parse_phone("+1 305 573 4416", ["RU", "US"])
    assert (region, e164, calling_code) == ("RU", "+13055734416", 1)  # international: as written


def test_a_short_national_number_never_becomes_a_foreign_one():
    # 9 digits: too short for RU; "+495123456" would be a German-looking number.
    assert parse_phone("495 123 456", ["RU"])[1] is None


@pytest.mark.parametrize(
    ("label", "code"),
    [("work", "WORK"), ("mobile", "MOB"), ("home", "HOME"), ("other", "OTHER"),
     ("fax", "FAX"), ("direct", "WORKDD"), (None, "WORK"), ("", "WORK"), ("Pager", "OTHER")],
)  # fmt: skip
def test_phone_type(label: str | None, code: str):
    assert phone_type(label) == code


@pytest.mark.parametrize(
    ("text", "field", "region"),
    [
        ("Россия", True, "RU"),
        ("Україна", True, "UA"),
        ("Deutschland", True, "DE"),
        ("Polska", True, "PL"),
        ("Казахстан", True, "KZ"),
        ("UK", True, "GB"),
        ("de", True, "DE"),
        ("Narnia", True, None),
        ("Agrestowa 104, 73-887 Marki, Polska", False, "PL"),
        ("ул. Калинина, 140, Обнинск, Россия, 677852", False, "RU"),
        ("100 Main St, Sacramento, CA", False, None),  # CA in free text is not Canada
        ("Павлодар, бул. Родниковый 21", False, None),
    ],
)
def test_region_for_country(text: str, field: bool, region: str | None):
    assert region_for_country(text, field=field) == region


@pytest.mark.parametrize(
    ("domain", "region"),
    [("romashka.ru", "RU"), ("acme.com.ua", "UA"), ("ukr.net", "UA"), ("acme.co.uk", "GB"),
     ("gmail.com", None), ("startup.io", None), ("firma.de", "DE"), (None, None)],
)  # fmt: skip
def test_region_for_domain(domain: str | None, region: str | None):
    assert region_for_domain(domain) == region
