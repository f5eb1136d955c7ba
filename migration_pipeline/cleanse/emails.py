"""E-mail addresses validated and normalised with ``email-validator`` (no DNS: offline and
deterministic), one distinct raw field value at a time.

A field may hold several addresses (``a@x.ru; b@y.ru``, ``a@x.ru b@y.ru``); each becomes its
own address, numbered ``part``. Each address is trimmed, stripped of ``mailto:`` and a display
name (``Ivan <ivan@x.ru>``), and its domain lower-cased (IDNA-normalised: ``Example.COM`` →
``example.com``); the local part keeps its case, as mail servers may treat it case-sensitively,
and ``match_key`` (all lower case) is what duplicate detection compares. An address the
library rejects stays, with problem ``invalid`` and the library's reason in
``problem_detail``; when a mechanical repair makes it valid (:func:`suggest_repair`), the
repaired address is its ``suggestion`` and its ``match_key``, but never its value. A blank
field is one row with problem ``empty``.

Pipedrive labels map to amoCRM's EMAIL enum codes (``WORK``, ``PRIV``, ``OTHER``); a missing
label is ``WORK``, Pipedrive's own default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import duckdb
import pyarrow as pa
from email_validator import EmailNotValidError, validate_email

from ..sql import read_sql
from .values import map_distinct

EMAIL_TYPES: dict[str, str] = {
    "work": "WORK",
    "office": "WORK",
    "home": "PRIV",
    "private": "PRIV",
    "personal": "PRIV",
    "other": "OTHER",
}
"""Pipedrive e-mail label (lower case) → amoCRM EMAIL enum code; anything else is ``OTHER``."""

FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.de",
        "hotmail.com",
        "hotmail.co.uk",
        "outlook.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "mail.com",
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "web.de",
        "t-online.de",
        "proton.me",
        "protonmail.com",
        "zoho.com",
        "mail.ru",
        "inbox.ru",
        "list.ru",
        "bk.ru",
        "internet.ru",
        "yandex.ru",
        "yandex.ua",
        "yandex.kz",
        "yandex.by",
        "yandex.com",
        "ya.ru",
        "rambler.ru",
        "ukr.net",
        "i.ua",
        "meta.ua",
        "bigmir.net",
        "wp.pl",
        "o2.pl",
        "onet.pl",
        "interia.pl",
        "op.pl",
        "seznam.cz",
        "tut.by",
        "mail.kz",
        "qq.com",
        "163.com",
        "example.com",
        "example.org",
        "example.net",
    }
)
"""Domains shared by unrelated people: a common domain there says nothing about identity."""

EMAIL_SCHEMA = pa.schema(
    [
        ("raw_value", pa.string()),
        ("part", pa.int32()),
        ("parts", pa.int32()),
        ("original", pa.string()),
        ("email", pa.string()),
        ("match_key", pa.string()),
        ("domain", pa.string()),
        ("problem", pa.string()),
        ("problem_detail", pa.string()),
        ("suggestion", pa.string()),
    ]
)
"""The Arrow table :func:`parse_email_fields` fills: one row per address in a distinct field."""

LABEL_SCHEMA = pa.schema([("label", pa.string()), ("amocrm_type", pa.string())])

_SEPARATORS = re.compile(r"[;,\n\r\t]+")


def email_type(label: str | None) -> str:
    """amoCRM EMAIL enum code for a Pipedrive label (missing → ``WORK``, unknown → ``OTHER``)."""
    if label is None or not label.strip():
        return "WORK"
    return EMAIL_TYPES.get(label.strip().lower(), "OTHER")


def split_field(raw: str | None) -> list[str]:
    """The addresses written in one field: split on ``,``/``;``/line breaks, and on spaces
    when every space-separated word is an address (``a@x.ru b@y.ru``, not ``Ivan <a@x.ru>``)."""
    parts: list[str] = []
    for chunk in _SEPARATORS.split(raw or ""):
        chunk = chunk.strip()
        if not chunk:
            continue
        words = chunk.split()
        if len(words) > 1 and all("@" in word and "<" not in word for word in words):
            parts.extend(words)
        else:
            parts.append(chunk)
    return parts


def normalize_email(text: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(email, domain, problem, problem_detail) for one address."""
    candidate = text.strip()
    if candidate.lower().startswith("mailto:"):
        candidate = candidate[len("mailto:") :].strip()
    try:
        result = validate_email(
            candidate, check_deliverability=False, allow_display_name=True, allow_smtputf8=True
        )
    except EmailNotValidError as exc:
        return None, None, "invalid", str(exc)
    return result.normalized, result.domain.lower(), None, None


_REPAIRS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\s+"), ""),
    (re.compile(r"@{2,}"), "@"),
    (re.compile(r"\.{2,}"), "."),
    (re.compile(r"^[.,;:]+|[.,;:]+$"), ""),
)


def suggest_repair(text: str) -> str | None:
    """The address an invalid one was most likely meant to be, if removing blanks, doubled
    ``@``/``.`` and stray end punctuation makes it valid (``ivan @@x..ru,`` → ``ivan@x.ru``);
    else None. Only duplicate detection uses it: the invalid original is what is kept."""
    repaired = text
    for pattern, replacement in _REPAIRS:
        repaired = pattern.sub(replacement, repaired)
    if repaired == text.strip():
        return None
    email, _, problem, _ = normalize_email(repaired)
    return email if problem is None else None


def parse_email_field(raw: str | None) -> list[tuple]:
    """(part, parts, original, email, match_key, domain, problem, problem_detail,
    suggestion) for every address in one raw field; a blank field is one ``empty`` row."""
    parts = split_field(raw)
    if not parts:
        return [(0, 0, raw, None, None, None, "empty", None, None)]
    rows = []
    for index, original in enumerate(parts):
        email, domain, problem, detail = normalize_email(original)
        suggestion = suggest_repair(original) if problem else None
        match_key = (email or suggestion or "").lower() or None
        rows.append(
            (index, len(parts), original, email, match_key, domain, problem, detail, suggestion)
        )
    return rows


def parse_email_fields(values: Iterable[tuple[str | None]]) -> list[tuple]:
    """Rows of :data:`EMAIL_SCHEMA` for distinct raw field values (1-tuples), in order."""
    return [(raw, *row) for (raw,) in values for row in parse_email_field(raw)]


def email_labels(rows: Iterable[tuple[str | None]]) -> list[tuple[str | None, str]]:
    """Rows of :data:`LABEL_SCHEMA` for distinct Pipedrive labels (1-tuples)."""
    return [(label, email_type(label)) for (label,) in rows]


def build_emails(con: duckdb.DuckDBPyConnection, extra_free_mail: Iterable[str] = ()) -> int:
    """Create ``clean.emails``; returns how many distinct field values Python parsed."""
    con.execute(read_sql("cleanse/email_entries.sql"))
    values = map_distinct(
        con,
        "select distinct raw_value from email_entries order by all",
        parse_email_fields,
        EMAIL_SCHEMA,
        "email_values",
    )
    map_distinct(
        con,
        "select distinct label from email_entries order by all",
        email_labels,
        LABEL_SCHEMA,
        "email_labels",
    )
    con.execute(
        read_sql("cleanse/free_mail_domains.sql"),
        [sorted(FREE_MAIL_DOMAINS | {d.lower() for d in extra_free_mail})],
    )
    con.execute(read_sql("cleanse/emails.sql"))
    return values
