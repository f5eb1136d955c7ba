"""Payload helpers on the values bad records carry (see ``catalogue/bad_records.py``): none of
them may stop the plan or put something amoCRM cannot show or parse into a request."""

from __future__ import annotations

import json

import pytest

from migration_pipeline.load.payloads import (
    NAME_MAX,
    custom_value,
    html_to_text,
    one_line,
    time_of_day,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("08:15", 8 * 3600 + 15 * 60),
        ("8:05", 8 * 3600 + 5 * 60),
        ("23:59:59", 23 * 3600 + 59 * 60),
        (" 10:30 ", 10 * 3600 + 30 * 60),
        (None, None),
        ("", None),
        ("полдень", None),  # used to raise ValueError and fail the whole plan
        ("24:00", None),
        ("25:99", None),
    ],
)
def test_time_of_day_reads_times_and_refuses_the_rest(text: str | None, seconds: int | None):
    assert time_of_day(text) == seconds


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "Pipedrive person 7"),
        ("", "Pipedrive person 7"),
        (" \t\u00a0\n ", "Pipedrive person 7"),  # blank to the eye: nameless in amoCRM
        ("Иван\n  Петров ", "Иван Петров"),
        ("Ctrl\x00Null\x07Bell\x1bEsc\x85", "CtrlNullBellEsc"),
        ("Zero\u200bwidth 👩\u200d💻", "Zero\u200bwidth 👩\u200d💻"),  # format characters stay
        ("<b>Пётр</b>", "<b>Пётр</b>"),  # a name is text: amoCRM shows tags, never runs them
        ("x" * 300, "x" * (NAME_MAX - 1) + "…"),
    ],
)
def test_one_line_names_are_visible_text_or_the_fallback(value: str | None, name: str):
    assert one_line(value, "Pipedrive person 7") == name


def test_html_to_text_drops_control_characters_and_keeps_lines():
    assert html_to_text("<p>a\x00b\x07</p><p>c\td</p>") == "ab\nc d"


@pytest.mark.parametrize("text", ["NaN", "nan", "inf", "-Infinity"])
def test_a_number_json_cannot_carry_is_left_out(text: str):
    field = {"amo_field_type": "numeric", "pipedrive_type": "double"}
    assert custom_value(text, field, {}) is None
    assert custom_value({"value": text}, {**field, "amo_field_type": "monetary"}, {}) is None


def test_finite_numbers_still_pass_as_json():
    field = {"amo_field_type": "numeric", "pipedrive_type": "double"}
    values = custom_value("12.5", field, {})
    assert values == [{"value": 12.5}]
    json.dumps(values, allow_nan=False)
