"""E-mail addresses: normalisation, several per field, invalid ones kept with their problem."""

from __future__ import annotations

import pytest

from migration_pipeline.cleanse.emails import email_type, parse_email_field, split_field


@pytest.mark.parametrize(
    ("raw", "email", "match_key"),
    [
        ("ivan@romashka.ru", "ivan@romashka.ru", "ivan@romashka.ru"),
        ("  Ivan.Petrov@Romashka.RU ", "Ivan.Petrov@romashka.ru", "ivan.petrov@romashka.ru"),
        ("IVAN@MAIL.RU", "IVAN@mail.ru", "ivan@mail.ru"),
        ("mailto:anna@acme.de", "anna@acme.de", "anna@acme.de"),
        ("Anna Schmidt <Anna@Acme.DE>", "Anna@acme.de", "anna@acme.de"),
        ("olena@пример.укр", "olena@пример.укр", "olena@пример.укр"),
    ],
)
def test_valid_addresses_are_normalised(raw: str, email: str, match_key: str):
    [(part, parts, original, parsed, key, domain, problem, detail, suggestion)] = parse_email_field(
        raw
    )
    assert (parsed, key, problem, suggestion) == (email, match_key, None, None)
    assert domain == email.split("@")[1]
    assert (part, parts) == (0, 1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a@x.ru; b@y.ru", ["a@x.ru", "b@y.ru"]),
        ("a@x.ru, b@y.ru,c@z.ru", ["a@x.ru", "b@y.ru", "c@z.ru"]),
        ("a@x.ru b@y.ru", ["a@x.ru", "b@y.ru"]),
        ("a@x.ru\nb@y.ru", ["a@x.ru", "b@y.ru"]),
        ("Ivan Petrov <ivan@x.ru>", ["Ivan Petrov <ivan@x.ru>"]),
        ("ivan petrov@mail.ru", ["ivan petrov@mail.ru"]),
        ("", []),
    ],
)
def test_split_field(raw: str, expected: list[str]):
    assert split_field(raw) == expected


def test_several_addresses_in_one_field_become_parts():
    rows = parse_email_field("Ivan@X.ru; bad@@y.ru")
    assert [
        (part, parts, email, problem) for part, parts, _, email, _, _, problem, _, _ in rows
    ] == [
        (0, 2, "Ivan@x.ru", None),
        (1, 2, None, "invalid"),
    ]


@pytest.mark.parametrize(
    ("raw", "suggestion"),
    [
        ("ivan@@romashka.ru", "ivan@romashka.ru"),
        ("ivan @romashka.ru", "ivan@romashka.ru"),
        ("ivan@romashka..ru", "ivan@romashka.ru"),
        ("ivan.romashka.ru", None),  # no @ at all: no guess
        ("ivan@romashka", None),  # no top-level domain: no guess
    ],
)
def test_invalid_addresses_are_kept_with_problem_and_maybe_a_repair(raw: str, suggestion):
    [(_, _, original, email, match_key, _, problem, detail, suggested)] = parse_email_field(raw)
    assert (original, email, problem) == (raw, None, "invalid")
    assert detail  # the library's reason, in words
    assert suggested == suggestion
    assert match_key == (suggestion.lower() if suggestion else None)


def test_blank_field_is_one_empty_row():
    assert parse_email_field("   ")[0][6] == "empty"
    assert parse_email_field(None)[0][6] == "empty"


@pytest.mark.parametrize(
    ("label", "code"),
    [("work", "WORK"), ("home", "PRIV"), ("private", "PRIV"), ("other", "OTHER"), (None, "WORK"),
     ("Newsletter", "OTHER")],
)  # fmt: skip
def test_email_type(label: str | None, code: str):
    assert email_type(label) == code
