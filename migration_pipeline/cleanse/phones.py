"""Phone numbers to E.164 with ``phonenumbers``, once per distinct (value, regions to try).

A number written with its country code reads the same everywhere. One written without is
tried in a list of regions (see :class:`~migration_pipeline.config.PhonesConfig`): the
country of the person's address, of its organization's address (:func:`region_for_country`)
and of its e-mail domain (:func:`region_for_domain`), then the default region, then the
fallback regions; the first valid reading wins and ``region`` says which region it was. The
original value always stays beside the result; a number that cannot be used gets one problem
code, the most severe that applies:

================== ============================================================ ===========
problem            meaning                                                       ``e164``
================== ============================================================ ===========
``empty``          blank, or only punctuation                                   null
``not_a_number``   no digits to speak of (``n/a``, ``нет``, letters)            null
``invalid_country`` the country calling code does not exist                     null
``too_short``      too few digits for any number of its country                 null
``too_long``       too many digits for any number of its country                null
``invalid``        the right length for nothing in its country                  null
``possible_only``  a plausible length, but no valid number range matches        set
``extension_dropped`` valid, but E.164 cannot carry the extension (kept apart)  set
(null)             valid                                                        set
================== ============================================================ ===========

Pipedrive labels map to amoCRM's PHONE enum codes (``WORK``, ``WORKDD``, ``MOB``, ``FAX``,
``HOME``, ``OTHER``); a missing label is ``WORK``, Pipedrive's own default.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache, partial

import duckdb
import phonenumbers
import pyarrow as pa
from phonenumbers import NumberParseException, PhoneNumberFormat

from ..config import PhonesConfig
from ..sql import read_sql
from .country_names import NAMES
from .values import map_distinct, workers

PHONE_TYPES: dict[str, str] = {
    "work": "WORK",
    "office": "WORK",
    "main": "WORK",
    "direct": "WORKDD",
    "work_direct": "WORKDD",
    "mobile": "MOB",
    "mob": "MOB",
    "cell": "MOB",
    "fax": "FAX",
    "home": "HOME",
    "private": "HOME",
    "other": "OTHER",
}
"""Pipedrive phone label (lower case) → amoCRM PHONE enum code; anything else is ``OTHER``."""

PROBLEMS = (
    "empty",
    "not_a_number",
    "invalid_country",
    "too_short",
    "too_long",
    "invalid",
    "possible_only",
    "extension_dropped",
)

# Spellings of countries seen in CRM addresses that the generated names (.country_names) miss:
# abbreviations, ISO alpha-3 codes, older and colloquial names.
_COUNTRY_ALIASES = {
    "uk": "GB",
    "england": "GB",
    "great britain": "GB",
    "britain": "GB",
    "usa": "US",
    "u.s.a.": "US",
    "united states of america": "US",
    "america": "US",
    "rus": "RU",
    "russian federation": "RU",
    "рф": "RU",
    "росія": "RU",
    "ukr": "UA",
    "kaz": "KZ",
    "qazaqstan": "KZ",
    "blr": "BY",
    "білорусь": "BY",
    "белоруссия": "BY",
    "deu": "DE",
    "ger": "DE",
    "pol": "PL",
    "польща": "PL",
    "німеччина": "DE",
    "сша": "US",
    "великобритания": "GB",
    "велика британія": "GB",
}

# E-mail domains whose country their TLD does not tell.
_NATIONAL_MAIL = {"ukr.net": "UA", "bigmir.net": "UA", "gmx.net": "DE", "tut.by": "BY"}
# Country-code TLDs used as generic ones: they say nothing about where a person lives.
_VANITY_TLDS = frozenset(
    {"io", "co", "me", "tv", "ai", "fm", "ly", "cc", "ws", "to", "gg", "so", "sh", "ac", "tk"}
)

HINTS = ("person_address", "organization_address", "email_domain")
"""Where a region hint comes from, in the order hints are tried (then ``default``, then
``fallback``): :func:`candidate_regions`."""

PHONE_SCHEMA = pa.schema(
    [
        ("raw_value", pa.string()),
        *((f"{hint}_region", pa.string()) for hint in HINTS),
        ("region", pa.string()),
        ("region_source", pa.string()),
        ("e164", pa.string()),
        ("calling_code", pa.int32()),
        ("extension", pa.string()),
        ("problem", pa.string()),
    ]
)
"""The Arrow table :func:`read_phones` fills: one row per distinct (raw value, hints)."""

LABEL_SCHEMA = pa.schema([("label", pa.string()), ("amocrm_type", pa.string())])
REGION_SCHEMA = pa.schema(
    [("country_text", pa.string()), ("from_field", pa.bool_()), ("region", pa.string())]
)
DOMAIN_SCHEMA = pa.schema([("domain", pa.string()), ("region", pa.string())])

_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
# "ext. 12", "доб. 12", "x12", "#12", ", 12" after the number: phonenumbers reads most of these,
# this catches the Cyrillic ones it does not.
_CYRILLIC_EXTENSION = re.compile(r"\s*(?:доб|вн|внутр)\.?\s*(\d+)\s*$", re.IGNORECASE)


def phone_type(label: str | None) -> str:
    """amoCRM PHONE enum code for a Pipedrive label (missing → ``WORK``, unknown → ``OTHER``)."""
    if label is None or not label.strip():
        return "WORK"
    return PHONE_TYPES.get(label.strip().lower(), "OTHER")


@cache
def _country_names() -> dict[str, str]:
    return {**NAMES, **_COUNTRY_ALIASES}


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def region_for_country(country: str | None, *, field: bool = True) -> str | None:
    """The phone region an address names. A country *field* may be an ISO 3166-1 alpha-2
    code or a country name in one of the languages our customers write (``Germany``,
    ``Deutschland``, ``Германия``, ``UK``…). Free address *text* (``field=False``) counts only
    when one of its comma-separated parts is a full country name (``CA`` there may be
    California). None when nothing names a country phonenumbers knows."""
    if country is None:
        return None
    if not field:
        for part in reversed(country.split(",")):
            region = region_for_country(part) if len(_fold(part).strip(" .")) > 2 else None
            if region:
                return region
        return None
    folded = _fold(country).strip(" .")
    if len(folded) == 2 and folded.upper() in phonenumbers.SUPPORTED_REGIONS:
        return folded.upper()
    return _country_names().get(folded)


def region_for_domain(domain: str | None) -> str | None:
    """The country an e-mail domain points at: its country-code TLD (``.ua``, ``.com.ua``,
    ``.co.uk``), or a national mail service on a generic TLD (``ukr.net``). None for generic
    and vanity TLDs (``.com``, ``.io``)."""
    if not domain:
        return None
    domain = domain.lower().strip(".")
    if domain in _NATIONAL_MAIL:
        return _NATIONAL_MAIL[domain]
    tld = domain.rsplit(".", 1)[-1]
    if tld == "uk":
        return "GB"
    if len(tld) != 2 or tld in _VANITY_TLDS:
        return None
    region = tld.upper()
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def address_regions(rows: Iterable[tuple[str, bool]]) -> list[tuple[str, bool, str | None]]:
    """Rows of :data:`REGION_SCHEMA` for distinct (address text, from a country field)."""
    return [(text, field, region_for_country(text, field=field)) for text, field in rows]


def domain_regions(rows: Iterable[tuple[str]]) -> list[tuple[str, str | None]]:
    """Rows of :data:`DOMAIN_SCHEMA` for distinct e-mail domains (1-tuples)."""
    return [(domain, region_for_domain(domain)) for (domain,) in rows]


def phone_labels(rows: Iterable[tuple[str | None]]) -> list[tuple[str | None, str]]:
    """Rows of :data:`LABEL_SCHEMA` for distinct Pipedrive labels (1-tuples)."""
    return [(label, phone_type(label)) for (label,) in rows]


def _split_extension(raw: str) -> tuple[str, str | None]:
    match = _CYRILLIC_EXTENSION.search(raw)
    if match:
        return raw[: match.start()], match.group(1)
    return raw, None


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def _readings(text: str) -> list[str]:
    """The ways to read a number written without ``+``, most literal first: as written; after
    a leading ``00`` (the international prefix of most of Europe, which phonenumbers does not
    accept in every region) or, with 11 digits or more (longer than the national numbers of
    our regions), as a bare country code (``380 50 123 4567``); without a leading trunk ``8``
    before a ``0`` (the Soviet-era ``8 0xx`` still written in Ukraine and Belarus). Shorter
    numbers are never read as foreign ones: a mistyped national number must not become a
    valid number of another country."""
    readings = [text]
    if text.lstrip().startswith("+"):
        return readings
    bare = re.sub(r"\D", "", text)
    if bare.startswith("00") or len(bare) >= 11:
        readings.append("+" + bare.removeprefix("00"))
    if bare.startswith("80"):
        readings.append(bare[1:])
    return readings


def parse_phone(raw: str | None, regions: Sequence[str]) -> tuple[str | None, ...]:
    """(region, e164, calling_code, extension, problem) for one raw value: the first
    valid reading over ``regions`` (in order) and :func:`_readings`; if none is valid, the
    literal reading in the first region, with its problem."""
    text = (raw or "").strip()
    first_region = regions[0] if regions else None
    digits = re.sub(r"\D", "", text)
    if not digits:
        return (first_region, None, None, None, _no_digits(text))
    if _LETTERS.search(text) and len(digits) < 5:
        return (first_region, None, None, None, "not_a_number")
    text, extension = _split_extension(text)
    readings = _readings(text)
    for region in dict.fromkeys(regions):
        for reading in readings:
            number = _parse(reading, region)
            if number is not None and phonenumbers.is_valid_number(number):
                return (region, *_result(number, extension or number.extension, None))
        if text.lstrip().startswith("+"):
            break  # an international number reads the same in every region
    number = _parse(text, first_region)
    if number is None:
        return (first_region, *_failure(text, first_region))
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.IS_POSSIBLE:
        return (first_region, *_result(number, extension or number.extension, "possible_only"))
    problem = _REASONS.get(reason, "invalid")
    return (first_region, None, None, extension or number.extension, problem)


def _no_digits(text: str) -> str:
    return "not_a_number" if _LETTERS.search(text) else "empty"


_REASONS = {
    phonenumbers.ValidationResult.TOO_SHORT: "too_short",
    phonenumbers.ValidationResult.TOO_LONG: "too_long",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "invalid_country",
    phonenumbers.ValidationResult.INVALID_LENGTH: "invalid",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too_short",
}

_PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "invalid_country",
    NumberParseException.NOT_A_NUMBER: "not_a_number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too_short",
    NumberParseException.TOO_SHORT_NSN: "too_short",
    NumberParseException.TOO_LONG: "too_long",
}


def _failure(text: str, region: str) -> tuple[str | int | None, ...]:
    try:
        phonenumbers.parse(text, region)
    except NumberParseException as exc:
        problem = _PARSE_ERRORS.get(exc.error_type, "invalid")
        if problem == "not_a_number" and not _LETTERS.search(text):
            problem = "too_short"  # "0", "+7": digits, just too few to be a number
        return (None, None, None, problem)
    return (None, None, None, "invalid")


def _result(
    number: phonenumbers.PhoneNumber, extension: str | None, problem: str | None
) -> tuple[str | int | None, ...]:
    if problem is None and extension:
        problem = "extension_dropped"
    return (
        phonenumbers.format_number(number, PhoneNumberFormat.E164),
        number.country_code,
        extension or None,
        problem,
    )


def candidate_regions(
    hints: Sequence[str | None], default_region: str, fallback_regions: Sequence[str]
) -> dict[str, str]:
    """Region → where it comes from, in the order a number is tried: the hints (see
    :data:`HINTS`; empty ones skipped), the default region, the fallbacks; each region once,
    under its first source."""
    candidates: dict[str, str] = {}
    for region, source in zip(hints, HINTS, strict=True):
        if region:
            candidates.setdefault(region, source)
    candidates.setdefault(default_region, "default")
    for region in fallback_regions:
        candidates.setdefault(region, "fallback")
    return candidates


def read_phones(
    rows: Iterable[tuple[str | None, str, str, str]],
    *,
    default_region: str,
    fallback_regions: Sequence[str],
) -> list[tuple]:
    """Rows of :data:`PHONE_SCHEMA` for distinct (raw value, person, organization and e-mail
    region hints; '' for none), in order."""
    out = []
    for raw, *hints in rows:
        candidates = candidate_regions(hints, default_region, fallback_regions)
        region, *result = parse_phone(raw, list(candidates))
        out.append((raw, *hints, region, candidates[region], *result))
    return out


def build_phones(con: duckdb.DuckDBPyConnection, config: PhonesConfig) -> dict[str, int]:
    """Create ``clean.phones`` (``clean.emails`` must exist: e-mail domains hint at regions);
    returns how many distinct values, address texts and domains Python read."""
    con.execute(read_sql("cleanse/address_countries.sql"))
    with workers() as shared:
        countries = map_distinct(
            con,
            "select distinct country_text, from_field from address_countries order by all",
            address_regions,
            REGION_SCHEMA,
            "address_regions",
            shared,
        )
        domains = map_distinct(
            con,
            "select distinct domain from clean.emails where domain is not null order by all",
            domain_regions,
            DOMAIN_SCHEMA,
            "domain_regions",
            shared,
        )
        con.execute(read_sql("cleanse/phone_entries.sql"), [config.infer_region])
        values = map_distinct(
            con,
            "select distinct raw_value, person_address_region, organization_address_region, "
            "email_domain_region from phone_entries order by all",
            partial(
                read_phones,
                default_region=config.default_region,
                fallback_regions=config.fallback_regions,
            ),
            PHONE_SCHEMA,
            "phone_values",
            shared,
        )
    map_distinct(
        con,
        "select distinct label from phone_entries order by all",
        phone_labels,
        LABEL_SCHEMA,
        "phone_labels",
    )
    con.execute(read_sql("cleanse/phones.sql"))
    return {
        "distinct_phone_values": values,
        "distinct_address_texts": countries,
        "distinct_email_domains": domains,
    }
