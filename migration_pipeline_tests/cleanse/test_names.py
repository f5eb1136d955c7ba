"""Name keys: script, case, order, legal form and transliteration do not split a name."""

from __future__ import annotations

import pytest

from migration_pipeline.cleanse.names import (
    address_tokens,
    organization_name_keys,
    person_name_keys,
    website_site,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Иван Петров", "Petrov Ivan"),
        ("Александр Сидоров", "Aleksandr Sidorov"),
        ("Юрий Ким", "Yuriy Kim"),
        ("Юрий Ким", "Jurij Kim"),
        ("Ігор Шевченко", "Ihor Shevchenko"),
        ("Jürgen Müller", "Juergen Mueller"),
        ("Łukasz Wiśniewski", "Lukasz Wisniewski"),
        ("Mr. John Smith", "JOHN  SMITH"),
    ],
)
def test_person_names_meet(a: str, b: str):
    [(_, key_a, *_), (_, key_b, *_)] = person_name_keys([(a,), (b,)])
    assert key_a == key_b


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ООО «Ромашка»", "Romashka LLC"),
        ('ТОВ "Ромашка"', "Ромашка"),
        ("Общество с ограниченной ответственностью «Вектор»", "Vektor OOO"),
        ("Acme Sp. z o.o.", "ACME"),
        ("Gertz-Paffrath GmbH", "GertzPaffrath GmbH & Co. KG"),
        ("ПрАТ «Укрбуд»", "Ukrbud Ltd"),
        ("Bright Group Corp.", "Bright Group Inc."),
    ],
)
def test_organization_names_meet(a: str, b: str):
    [(_, key_a, *_), (_, key_b, *_)] = organization_name_keys([(a,), (b,)])
    assert key_a == key_b


def test_organization_doubled_letters_stay_apart():
    [(_, key_a, *_), (_, key_b, *_)] = organization_name_keys([("Агрогруп",), ("Агрогрупп",)])
    assert key_a != key_b


def test_address_words_ignore_kinds_of_place():
    assert set(address_tokens("ул. Ленина, д. 5, Москва")) >= {"lenina", "5"}
    assert set(address_tokens("Moscow, Lenina st 5")) >= {"lenina", "5"}


@pytest.mark.parametrize(
    ("url", "site"),
    [("https://WWW.Acme.com/about", "acme.com"), ("acme.com.ua", "acme.com.ua"),
     ("HTTP://WWW.NORDTECHNIK.DE", "nordtechnik.de"), ("n/a", None), (None, None)],
)  # fmt: skip
def test_website_site(url: str | None, site: str | None):
    assert website_site(url) == site
