"""Generate the Pipedrive account the fake server serves: deterministic, dirty, fast.

``generate(scale, seed, out_dir)`` writes one JSON Lines file per entity of
:data:`.dataset.ENTITY_FILES`, each record in the shape of the endpoint that serves it (see
:mod:`.dataset`), plus two files the server never serves:

* ``truth.json``: what a perfect cleanse would find. ``persons`` / ``organizations`` are clusters
  of ids that are one real-world entity; ``person_namesakes`` are people who share a common name
  but are *not* duplicates (hard negatives); ``broken_references`` lists every reference to a
  record that was purged; ``purged``, ``deleted_deal_ids``, ``archived_deal_ids`` and
  ``lead_labels`` name the rest.
* ``manifest.json``: scale, seed, counts and generator version, written last, so its presence
  marks a finished dataset (:func:`ensure_dataset` relies on that).

Why it is built the way it is:

* **Deterministic.** Every pass draws from its own ``random.Random`` seeded with
  ``"<seed>:<pass>"``, Faker instances are seeded per locale, and every timestamp is
  :data:`ANCHOR` minus an offset, never the wall clock: the same (scale, seed) gives
  byte-identical files.
* **Fast.** Faker is slow per call, so each locale's names, streets and sentences are drawn once
  into pools and sampled with our ``Random``. Records are streamed to disk pass by pass; only
  small per-id indexes (names, orgs, e-mails) stay in memory. Activities and notes are planned as
  small stubs, sorted by creation time (ids grow with ``add_time``, as in a real account) and
  only then expanded, each from its own ``Random``.
* **Dirty like a real account.** Duplicate persons and organizations (typos, swapped names,
  legal forms dropped, other phone formats, case-changed e-mails), phones in the national formats
  of six countries with extensions and junk, invalid and mixed-case e-mails, orphan contacts,
  HTML notes (with a ``<script>`` and 10k+ character ones), emoji, several currencies, archived
  and deleted deals, and at ``seed`` scale and above a few references to purged records.
* **Findable duplicates.** Every duplicate shares a phone number, an e-mail address (up to case
  and spaces) or a near-identical name with the same organization; duplicate organizations share
  a website domain, an address, a tax id or the same name up to legal form, quotes and case.
  Phone numbers and e-mail addresses are never shared by two different real-world entities.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import time
import unicodedata
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from faker import Faker

from .dataset import ENTITY_FILES, write_entity

GENERATOR_VERSION = 1
ANCHOR = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
""""Now" for every generated account: all timestamps are this minus a random offset."""

_HOUR = 3_600
_DAY = 86_400
_YEAR = 365 * _DAY
_ACCOUNT_START = ANCHOR - 6 * _YEAR
_DEALS_START = ANCHOR - 4 * _YEAR
_LOCAL_OFFSET = 3 * _HOUR  # the account's timezone (Europe/Moscow), for local_*_date
_DUP_RATE = 0.05  # share of records that re-enter an earlier one: ~9% end up in a cluster
_USER_ID_BASE = 21_536_700  # real user ids are large and unlike entity ids
_COMPANY_DOMAIN = "severnyveter.ru"


@dataclass(frozen=True)
class Scale:
    """How big a generated account is.

    ``broken_references`` is how many deals, persons and organizations are purged while still
    referenced (notes and activities of a purged deal, a deal whose person is gone, persons of a
    purged organization); 0 keeps referential integrity."""

    name: str
    users: int
    organizations: int
    persons: int
    deals: int
    leads: int
    products: int
    activities_per_deal: float
    notes_per_deal: float
    mail_deal_share: float
    broken_references: int = 0


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", users=5, organizations=40, persons=80, deals=24, leads=6, products=4,
                  activities_per_deal=7.0, notes_per_deal=5.0, mail_deal_share=0.5),
    "small": Scale("small", users=10, organizations=500, persons=1_000, deals=200, leads=30,
                   products=8, activities_per_deal=8.0, notes_per_deal=6.0, mail_deal_share=0.45),
    # The migration in seeds/001: 2,300 deals, 5,706 organizations, 11,621 persons.
    "seed": Scale("seed", users=25, organizations=5_706, persons=11_621, deals=2_300, leads=150,
                  products=12, activities_per_deal=9.0, notes_per_deal=7.0, mail_deal_share=0.45,
                  broken_references=3),
    "large": Scale("large", users=60, organizations=57_060, persons=116_210, deals=23_000,
                   leads=1_500, products=30, activities_per_deal=9.0, notes_per_deal=7.0,
                   mail_deal_share=0.45, broken_references=10),
}  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Countries, names, places: pools drawn from Faker once per seed.

_COUNTRIES = ("RU", "UA", "KZ", "PL", "DE", "US")
_COUNTRY_WEIGHTS = (42, 58, 66, 76, 86, 100)  # cumulative
# Faker has no kk_KZ person/address provider; Kazakhstan's business contacts are mostly
# Russian-named anyway, so KZ draws from ru_RU (under its own seed) with Kazakh cities.
_FAKER_LOCALE = {
    "RU": "ru_RU",
    "UA": "uk_UA",
    "KZ": "ru_RU",
    "PL": "pl_PL",
    "DE": "de_DE",
    "US": "en_US",
}
_COUNTRY_NAMES = {
    "RU": "Россия",
    "UA": "Україна",
    "KZ": "Казахстан",
    "PL": "Polska",
    "DE": "Deutschland",
    "US": "United States",
}
_KZ_CITIES = ("Алматы", "Астана", "Шымкент", "Караганда", "Актобе", "Павлодар", "Атырау")
_KZ_REGIONS = ("Алматинская обл.", "Карагандинская обл.", "Павлодарская обл.", "Атырауская обл.")
_FREE_MAIL = {
    "RU": ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "list.ru", "inbox.ru"),
    "UA": ("ukr.net", "gmail.com", "i.ua", "meta.ua"),
    "KZ": ("mail.kz", "mail.ru", "gmail.com", "inbox.kz"),
    "PL": ("wp.pl", "onet.pl", "gmail.com", "o2.pl", "interia.pl"),
    "DE": ("gmx.de", "web.de", "t-online.de", "gmail.com"),
    "US": ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com"),
}
_TLD = {"RU": "ru", "UA": "com.ua", "KZ": "kz", "PL": "pl", "DE": "de", "US": "com"}
_TIMEZONES = {
    "RU": ("Europe/Moscow", 1),
    "UA": ("Europe/Kyiv", 2),
    "KZ": ("Asia/Almaty", 3),
    "PL": ("Europe/Warsaw", 4),
    "DE": ("Europe/Berlin", 5),
    "US": ("America/New_York", 6),
}
# Different people with the same common name: hard negatives for the dedup stage.
_NAMESAKES = (
    ("RU", 0, "Иван", "Петров"),
    ("RU", 1, "Анна", "Иванова"),
    ("UA", 0, "Олександр", "Коваленко"),
    ("US", 0, "John", "Smith"),
    ("PL", 1, "Anna", "Nowak"),
    ("DE", 0, "Thomas", "Müller"),
    ("RU", 0, "Александр", "Смирнов"),
)
_ROLE_CONTACTS = ("Бухгалтерия", "Приёмная", "Отдел закупок", "Reception", "Секретарь", "Info")


@dataclass(frozen=True)
class _Pool:
    """One country's names and places. Index 0 of the gendered tuples is male, 1 female."""

    first: tuple[tuple[str, ...], tuple[str, ...]]
    last: tuple[tuple[str, ...], tuple[str, ...]]
    middle: tuple[tuple[str, ...], tuple[str, ...]]  # patronymics; empty outside RU/UA/KZ
    streets: tuple[str, ...]
    cities: tuple[str, ...]
    regions: tuple[str, ...]
    postcodes: tuple[str, ...]
    sentences: tuple[str, ...]


def _draw(method: Callable[[], str], n: int) -> tuple[str, ...]:
    """``n`` Faker calls, repeats dropped, first-seen order kept (deterministic)."""
    return tuple(dict.fromkeys(method() for _ in range(n)))


@cache
def _pools(seed: int) -> dict[str, _Pool]:
    """The per-country pools for a seed (about 8k Faker calls; cached per process)."""
    pools: dict[str, _Pool] = {}
    for index, country in enumerate(_COUNTRIES):
        fake = Faker(_FAKER_LOCALE[country])
        fake.seed_instance(seed * 1_000 + index)
        slavic = country in ("RU", "UA", "KZ")
        if country == "KZ":
            cities, regions = _KZ_CITIES, _KZ_REGIONS
        else:
            cities = _draw(fake.city_name if country == "RU" else fake.city, 80)
            regions = _draw(fake.region if country == "UA" else fake.administrative_unit, 30)
        pools[country] = _Pool(
            first=(_draw(fake.first_name_male, 150), _draw(fake.first_name_female, 150)),
            last=(_draw(fake.last_name_male, 250), _draw(fake.last_name_female, 250)),
            middle=(
                (_draw(fake.middle_name_male, 60), _draw(fake.middle_name_female, 60))
                if slavic
                else ((), ())
            ),
            streets=_draw(fake.street_name, 120),
            cities=cities,
            regions=regions,
            postcodes=_draw(fake.postcode, 60),
            sentences=_draw(fake.sentence, 120),
        )
    return pools


def _pick_country(rng: random.Random) -> str:
    return rng.choices(_COUNTRIES, cum_weights=_COUNTRY_WEIGHTS)[0]


# ---------------------------------------------------------------------------------------------
# Small text helpers.

_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya", "є": "ye", "і": "i", "ї": "yi", "ґ": "g", "ł": "l", "ß": "ss", "ä": "ae",
        "ö": "oe", "ü": "ue", "'": "", "’": "",
    }
)  # fmt: skip


def _ascii(text: str) -> str:
    """Lower-case ASCII transliteration, for e-mail local parts, domains and Latin spellings."""
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_TRANSLIT))
    return decomposed.encode("ascii", "ignore").decode()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", _ascii(text)).strip("-")


def _latin(name: str) -> str:
    """ "Петров Иван" → "Petrov Ivan": how a person or company is re-typed in Latin."""
    return " ".join(word.capitalize() for word in _ascii(name).split())


def _typo(rng: random.Random, word: str) -> str:
    """One keyboard slip away from ``word``: two letters swapped, one dropped or doubled."""
    if len(word) < 4:
        return word + word[-1]
    i = rng.randrange(1, len(word) - 1)
    match rng.randrange(3):
        case 0:
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        case 1:
            return word[:i] + word[i + 1 :]
        case _:
            return word[:i] + word[i] + word[i:]


def _ts2(t: int) -> str:
    """API v2 timestamp (RFC 3339, UTC, second precision)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _ts1(t: int) -> str:
    """API v1 timestamp (``YYYY-MM-DD HH:MM:SS``, UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _date(t: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def _between(rng: random.Random, start: int, end: int) -> int:
    return start + rng.randrange(max(1, end - start))


def _ensure_each(
    rng: random.Random,
    values: list[Any],
    required: Iterable[Any],
    allowed: Callable[[int], bool] = lambda position: True,
) -> None:
    """Overwrite a few entries so every ``required`` value occurs at least once (tiny scales
    must still cover every case), never removing the only occurrence of another one and only
    at ``allowed`` positions."""
    kept = {value: i for i, value in reversed(list(enumerate(values)))}
    protected = set(kept.values())
    for value in required:
        if value in kept:
            continue
        free = [i for i in range(len(values)) if i not in protected and allowed(i)]
        if not free:
            return
        position = rng.choice(free)
        values[position] = value
        kept[value] = position
        protected.add(position)


# ---------------------------------------------------------------------------------------------
# Phones and e-mail addresses.

_PHONE_PREFIXES = {
    "RU": ("903", "905", "909", "915", "916", "917", "919", "925", "926", "977", "985", "999",
           "495", "499", "812", "343"),
    "KZ": ("701", "702", "705", "707", "747", "771", "775", "777", "778"),
    "UA": ("50", "63", "66", "67", "68", "73", "93", "95", "96", "97", "98", "99", "44"),
    "PL": ("50", "51", "53", "60", "66", "69", "72", "78", "79", "88", "22"),
    "DE": ("151", "152", "157", "162", "176", "177", "179", "30", "40", "89"),
    "US": ("212", "646", "415", "312", "617", "305", "213", "206", "512", "702"),
}  # fmt: skip
_SUBSCRIBER_DIGITS = {"RU": 7, "KZ": 7, "UA": 7, "PL": 7, "DE": 8, "US": 7}
_EXTENSIONS = (" ext. {}", " доб. {}", " (доб. {})", " x{}")
_JUNK_PHONES = ("n/a", "123", "-", "нет", "0", "+7", "тел. уточнить", "000-00-00", "см. почту")
_PHONE_LABELS = ("work", "mobile", "mobile", "home", "other")


@dataclass(frozen=True, slots=True)
class _Phone:
    """A real phone number: country, national significant number, length of its area code."""

    country: str
    nsn: str
    area: int


class _PhoneBook:
    """Issues phone numbers no two real-world people share, without remembering them: each
    country's subscriber part is an affine permutation of a counter (multiplier coprime to the
    modulus), so distinct counters give distinct numbers whatever the area code."""

    def __init__(self, rng: random.Random) -> None:
        self._state: dict[str, list[int]] = {}
        for country in _COUNTRIES:
            modulus = 8 * 10**6 if country == "US" else 10 ** _SUBSCRIBER_DIGITS[country]
            multiplier = rng.randrange(10**5, modulus) | 1
            while multiplier % 5 == 0:
                multiplier += 2
            self._state[country] = [0, multiplier, rng.randrange(modulus), modulus]

    def issue(self, rng: random.Random, country: str) -> _Phone:
        state = self._state[country]
        counter, multiplier, offset, modulus = state
        state[0] += 1
        value = (counter * multiplier + offset) % modulus
        if country == "US":  # a US exchange never starts with 0 or 1
            subscriber = f"{2 + value // 10**6}{value % 10**6:06d}"
        else:
            subscriber = f"{value:0{_SUBSCRIBER_DIGITS[country]}d}"
        prefix = rng.choice(_PHONE_PREFIXES[country])
        return _Phone(country, prefix + subscriber, len(prefix))


def _phone_formats(phone: _Phone) -> tuple[str, ...]:
    """The ways people write this number in its country. All parse to the same E.164 number
    with ``phonenumbers`` and the country as region, except Ukraine's last one: the old
    ``8 0XX`` trunk prefix, still typed by many and not read by libphonenumber."""
    n, a, rest = phone.nsn, phone.nsn[: phone.area], phone.nsn[phone.area :]
    match phone.country:
        case "RU" | "KZ":
            b, c, d = rest[:3], rest[3:5], rest[5:]
            return (
                f"+7 {a} {b}-{c}-{d}",
                f"+7 ({a}) {b}-{c}-{d}",
                f"8 ({a}) {b}-{c}-{d}",
                f"8{n}",
                f"+7{n}",
                f"7{n}",
                f"8-{a}-{b}-{c}-{d}",
                f"8 {a} {b} {c} {d}",
            )
        case "UA":
            b, c, d = rest[:3], rest[3:5], rest[5:]
            return (
                f"+380 {a} {b} {c} {d}",
                f"+38 (0{a}) {b}-{c}-{d}",
                f"0{a} {b} {c} {d}",
                f"(0{a}) {b}-{c}-{d}",
                f"380{n}",
                f"+380{n}",
                f"8 0{a} {rest}",
            )
        case "PL":
            x, y, z = n[:3], n[3:6], n[6:]
            return (
                f"+48 {x} {y} {z}",
                f"+48{n}",
                f"0048 {x} {y} {z}",
                f"{x}-{y}-{z}",
                f"{x} {y} {z}",
                f"(+48) {n}",
            )
        case "DE":
            return (
                f"+49 {a} {rest}",
                f"0{a} {rest}",
                f"0{a}/{rest}",
                f"+49 (0){a} {rest}",
                f"0049 {a} {rest}",
                f"+49{n}",
                f"0{a}-{rest}",
            )
        case _:
            b, c = rest[:3], rest[3:]
            return (f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+1 {a} {b} {c}", f"+1-{a}-{b}-{c}",
                    f"1 ({a}) {b}-{c}", f"{a}.{b}.{c}", f"+1{n}")  # fmt: skip


def _render_phone(rng: random.Random, phone: _Phone, extension: bool = False) -> str:
    text = rng.choice(_phone_formats(phone))
    if extension:
        text += rng.choice(_EXTENSIONS).format(rng.randint(1, 999))
    return text


def _invalid_email(rng: random.Random, email: str) -> str:
    """What a hurried typist makes of a valid address."""
    local, domain = email.split("@")
    return rng.choice(
        (
            f"{local}@@{domain}",
            f"{local}.{domain}",  # no @ at all
            f"{local}@{domain.split('.')[0]}",
            f"{local} @{domain}",
            f"{local}@{domain.replace('.', '..', 1)}",
            f"{local}@{domain},",
        )
    )


def _recased_email(rng: random.Random, email: str) -> str:
    local, domain = email.split("@")
    return rng.choice(
        (
            email.upper(),
            f"{'.'.join(part.capitalize() for part in local.split('.'))}@{domain}",
            f"{local}@{domain.upper()}",
            f"{local.capitalize()}@{domain.capitalize()}",
        )
    )


def _website(rng: random.Random, domain: str) -> str:
    return rng.choice(
        (
            f"https://{domain}",
            f"http://www.{domain}",
            f"www.{domain}",
            domain,
            f"https://{domain}/",
            f"https://www.{domain}/about",
            f"HTTP://WWW.{domain.upper()}",
        )
    )


# ---------------------------------------------------------------------------------------------
# Organizations: legal forms and name stems per country.

_LEGAL_FORMS = {
    "RU": ("ООО", "ООО", "ООО", "ООО", "ООО", "АО", "ЗАО", "ПАО", "ИП"),
    "KZ": ("ТОО", "ТОО", "ТОО", "ТОО", "АО", "ИП"),
    "UA": ("ТОВ", "ТОВ", "ТОВ", "ТОВ", "ПП", "ПрАТ", "ФОП"),
    "PL": ("sp. z o.o.", "sp. z o.o.", "sp. z o.o.", "S.A.", "sp.j.", "s.c."),
    "DE": ("GmbH", "GmbH", "GmbH", "AG", "GmbH & Co. KG", "e.K.", "KG"),
    "US": ("LLC", "LLC", "Inc.", "Corp.", "Co.", "Ltd"),
}
_LEGAL_FORMS_SPELLED = {
    "ООО": "Общество с ограниченной ответственностью",
    "АО": "Акционерное общество",
    "ЗАО": "Закрытое акционерное общество",
    "ПАО": "Публичное акционерное общество",
    "ТОО": "Товарищество с ограниченной ответственностью",
    "ТОВ": "Товариство з обмеженою відповідальністю",
    "ПП": "Приватне підприємство",
    "ПрАТ": "Приватне акціонерне товариство",
    "sp. z o.o.": "Spółka z ograniczoną odpowiedzialnością",
    "GmbH": "Gesellschaft mit beschränkter Haftung",
    "LLC": "Limited Liability Company",
    "Inc.": "Incorporated",
}
_SOLE_TRADERS = ("ИП", "ФОП")
_CORE_ROOTS = {
    "RU": ("Техно", "Строй", "Агро", "Мед", "Энерго", "Инвест", "Транс", "Торг", "Сиб", "Урал",
           "Волга", "Нева", "Альфа", "Вектор", "Гранит", "Север", "Проф", "Интер", "Спец", "Мега"),
    "KZ": ("Астана", "Алатау", "Каспий", "Казах", "Жетысу", "Сарыарка", "Тенгри", "Нур", "Степь",
           "Алтын"),
    "UA": ("Техно", "Буд", "Агро", "Укр", "Київ", "Дніпро", "Львів", "Енерго", "Мед", "Прайм"),
    "PL": ("Pol", "Bud", "Tech", "Mar", "Trans", "Agro", "Inter", "Euro", "Med", "Stal"),
    "DE": ("Nord", "Süd", "Rhein", "Alpen", "Technik", "Bau", "Medi", "Auto", "Elektro", "Holz"),
    "US": ("Blue", "North", "Bright", "Summit", "Apex", "Pioneer", "Silver", "Green", "Harbor",
           "Eagle"),
}  # fmt: skip
_CORE_SUFFIXES = {
    "RU": ("сервис", "групп", "трейд", "лайн", "маркет", "снаб", "комплект", "монтаж", "пром",
           "софт", "лаб", "систем"),
    "UA": ("сервіс", "груп", "трейд", "маркет", "постач", "буд", "софт", "лайн"),
    "PL": ("bud", "pol", "tech", "trans", "ex", "mex", "max", "serwis"),
    "DE": ("werk", "bau", "tec", "logistik", "systeme", "handel", "haus", "technik"),
    "US": (" Labs", " Logistics", " Systems", " Solutions", " Works", " Partners", " Tech",
           " Group"),
}  # fmt: skip
_CORE_SUFFIXES["KZ"] = _CORE_SUFFIXES["RU"]
_CORE_DISAMBIGUATORS = (" Плюс", " Групп", "-М", " Pro", " Холдинг")


@dataclass(slots=True)
class _Org:
    """One real-world organization, as its first record describes it."""

    country: str
    form: str
    core: str
    name: str
    domain: str
    website: str | None
    address: dict[str, Any] | None
    tax_id: str | None


def _org_name(rng: random.Random, country: str, form: str, core: str) -> str:
    if form in _SOLE_TRADERS:
        return f"{form} {core}"
    if country in ("RU", "UA", "KZ"):
        return rng.choices(
            (f"{form} «{core}»", f'{form} "{core}"', f"{form} {core}", core),
            cum_weights=(60, 85, 95, 100),
        )[0]
    return f"{core} {form}"


def _tax_id(rng: random.Random, country: str) -> str:
    match country:
        case "RU":
            return str(rng.randrange(10**9, 10**10))
        case "KZ":
            return str(rng.randrange(10**11, 10**12))
        case "UA":
            return str(rng.randrange(10**7, 10**8))
        case "PL":
            d = str(rng.randrange(10**9, 10**10))
            return f"{d[:3]}-{d[3:6]}-{d[6:8]}-{d[8:]}"
        case "DE":
            return f"DE{rng.randrange(10**8, 10**9)}"
        case _:
            return f"{rng.randint(10, 99)}-{rng.randrange(10**6, 10**7)}"


# ---------------------------------------------------------------------------------------------
# Reference data: currencies, activity types, pipelines, field definitions.

_CURRENCIES = (
    ("RUB", "Russian Ruble", "₽"),
    ("USD", "US Dollar", "$"),
    ("EUR", "Euro", "€"),
    ("UAH", "Ukrainian Hryvnia", "₴"),
    ("KZT", "Kazakhstani Tenge", "₸"),
    ("PLN", "Polish Zloty", "zł"),
    ("GBP", "British Pound", "£"),
    ("CHF", "Swiss Franc", "CHF"),
    ("BYN", "Belarusian Ruble", "Br"),
    ("CNY", "Chinese Yuan", "¥"),
)
_DEAL_CURRENCIES = ("RUB", "USD", "EUR", "UAH", "KZT", "PLN", "GBP")  # GBP is the rare one
_DEAL_CURRENCY_WEIGHTS = (50, 70, 82, 89, 94, 99, 100)
_VALUE_LOGNORMAL = {
    "RUB": (11.8, 1.3),
    "USD": (8.3, 1.2),
    "EUR": (8.2, 1.2),
    "UAH": (10.6, 1.2),
    "KZT": (13.0, 1.2),
    "PLN": (9.0, 1.1),
    "GBP": (8.1, 1.0),
}
_ACTIVITY_TYPES = (  # key_string, name, icon_key, colour, is_custom, weight
    ("call", "Звонок", "call", None, False, 30),
    ("meeting", "Встреча", "meeting", None, False, 15),
    ("task", "Задача", "task", None, False, 24),
    ("deadline", "Крайний срок", "deadline", None, False, 7),
    ("email", "Эл. письмо", "email", None, False, 14),
    ("lunch", "Обед", "lunch", None, False, 3),
    ("demo", "Демо", "presentation", "FFB300", True, 7),
)
_PIPELINES = (
    ("Продажи", (("Квалификация", 10), ("Контакт установлен", 20), ("Презентация", 40),
                 ("КП отправлено", 60), ("Переговоры", 80), ("Договор", 90))),
    ("Партнёры", (("Новый партнёр", 10), ("Переговоры", 40), ("Пилот", 70), ("Подписание", 90))),
    ("Enterprise", (("Discovery", 10), ("Demo", 25), ("Proposal", 40), ("Security review", 55),
                    ("Negotiation", 70), ("Legal", 85), ("Closing", 95))),
)  # fmt: skip
_PIPELINE_WEIGHTS = (60, 75, 100)
_LOST_REASONS = (
    "Дорого",
    "Выбрали конкурента",
    "Нет бюджета",
    "Не отвечает",
    "Проект отложен",
    "Too expensive",
    "Дубль сделки",
)
_PRODUCTS = (
    ("Лицензия CRM Pro (12 мес.)", "шт.", 54_000),
    ("Внедрение", "проект", 250_000),
    ("Обучение персонала", "час", 4_500),
    ("Техподдержка Premium", "мес.", 15_000),
    ("Модуль телефонии", "шт.", 12_000),
    ("API-интеграция", "проект", 180_000),
    ("Консультация аналитика", "час", 6_000),
    ("Аналитика BI", "мес.", 22_000),
    ("Hardware kit", "pcs", 1_200),
    ("Migration service", "project", 9_500),
    ("Мобильное приложение", "шт.", 8_000),
    ("Доработка под заказ", "час", 5_500),
)
_ORIGINS = ("ManuallyCreated", "ManuallyCreated", "ManuallyCreated", "API", "Import", "WebForms")

# Custom fields: (name, field_type, option labels for enum/set or sample values for text types).
_DEAL_CUSTOM_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Источник", "varchar", ("Сайт", "Рекомендация", "Выставка", "Холодный звонок", "Tender")),
    ("Город клиента", "varchar_auto", ("Москва", "Киев", "Алматы", "Warszawa", "Berlin")),
    ("Комментарий менеджера", "text", ()),
    ("Скидка, %", "double", ()),
    ("Бюджет клиента", "monetary", ()),
    ("Интересующие продукты", "set", ("CRM", "Телефония", "Аналитика", "Интеграции", "Обучение")),
    ("Тип клиента", "enum", ("Новый", "Повторный", "Партнёр", "Тендер")),
    ("Аккаунт-менеджер", "user", ()),
    ("Партнёр по сделке", "org", ()),
    ("ЛПР", "people", ()),
    ("Телефон для связи", "phone", ()),
    ("Удобное время звонка", "time", ()),
    ("Окно доставки", "timerange", ()),
    ("Дата подписания договора", "date", ()),
    ("Срок действия договора", "daterange", ()),
    ("Адрес доставки", "address", ()),
)
_PERSON_CUSTOM_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Должность", "varchar", ("Директор", "Менеджер по закупкам", "CTO", "Бухгалтер", "Head of Sales")),
    ("Роль в закупке", "enum", ("ЛПР", "Влияющий", "Пользователь", "Бухгалтерия")),
    ("Подписки", "set", ("Новости", "Вебинары", "Акции")),
    ("Дата первого контакта", "date", ()),
    ("Доп. телефон", "phone", ()),
    ("Комментарий", "text", ()),
)  # fmt: skip
_ORG_CUSTOM_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ИНН / Tax ID", "varchar", ()),
    ("Сегмент", "enum", ("SMB", "Mid-market", "Enterprise", "Госсектор")),
    ("Отрасли", "set", ("Ритейл", "Производство", "IT", "Логистика", "Финансы")),
    ("Годовой оборот", "monetary", ()),
    ("Число сотрудников", "double", ()),
    ("Юридический адрес", "address", ()),
    ("Аккаунт-менеджер", "user", ()),
)
_PRODUCT_CUSTOM_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Линейка", "enum", ("Базовая", "Профессиональная", "Корпоративная")),
)
# Built-in fields: (key, name, field_type). Their keys are readable and edit_flag is false.
_BUILTIN_FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "deal": (
        ("title", "Название", "varchar"),
        ("value", "Стоимость", "monetary"),
        ("user_id", "Владелец", "user"),
        ("person_id", "Контактное лицо", "people"),
        ("org_id", "Организация", "org"),
        ("stage_id", "Этап", "stage"),
        ("status", "Статус", "status"),
        ("probability", "Вероятность", "double"),
        ("expected_close_date", "Ожидаемая дата закрытия", "date"),
        ("lost_reason", "Причина проигрыша", "varchar"),
        ("label", "Метка", "set"),
        ("visible_to", "Видимость", "visible_to"),
        ("add_time", "Дата создания", "date"),
    ),
    "person": (
        ("name", "Имя", "varchar"),
        ("first_name", "Имя (первое)", "varchar"),
        ("last_name", "Фамилия", "varchar"),
        ("email", "Эл. почта", "varchar"),
        ("phone", "Телефон", "phone"),
        ("org_id", "Организация", "org"),
        ("owner_id", "Владелец", "user"),
        ("label", "Метка", "set"),
        ("visible_to", "Видимость", "visible_to"),
        ("add_time", "Дата создания", "date"),
    ),
    "organization": (
        ("name", "Название", "varchar"),
        ("address", "Адрес", "address"),
        ("owner_id", "Владелец", "user"),
        ("website", "Сайт", "varchar"),
        ("linkedin", "LinkedIn", "varchar"),
        ("label", "Метка", "set"),
        ("visible_to", "Видимость", "visible_to"),
        ("add_time", "Дата создания", "date"),
    ),
    "activity": (
        ("subject", "Тема", "varchar"),
        ("type", "Тип", "varchar"),
        ("due_date", "Дата", "date"),
        ("due_time", "Время", "time"),
        ("duration", "Длительность", "time"),
        ("note", "Заметка", "text"),
        ("user_id", "Ответственный", "user"),
        ("person_id", "Контактное лицо", "people"),
        ("org_id", "Организация", "org"),
        ("priority", "Приоритет", "enum"),
        ("location", "Место", "address"),
        ("public_description", "Описание", "text"),
    ),
    "product": (
        ("name", "Название", "varchar"),
        ("code", "Артикул", "varchar"),
        ("description", "Описание", "text"),
        ("unit", "Единица", "varchar"),
        ("tax", "Налог", "double"),
        ("owner_id", "Владелец", "user"),
    ),
}
_LABELS = {
    "deal": (("Горячий", "red"), ("Тёплый", "yellow"), ("Холодный", "blue"), ("VIP", "purple"),
             ("Повторная продажа", "green")),
    "person": (("Клиент", "green"), ("ЛПР", "purple"), ("Не звонить", "red"), ("Лид", "blue")),
    "organization": (("Клиент", "green"), ("Партнёр", "purple"), ("Поставщик", "gray"),
                     ("Конкурент", "red")),
}  # fmt: skip
_STATUS_OPTIONS = (("open", "Открыта"), ("won", "Выиграна"), ("lost", "Проиграна"),
                   ("deleted", "Удалена"))  # fmt: skip
_VISIBILITY_OPTIONS = (("1", "Владелец и подписчики"), ("3", "Вся компания"),
                       ("5", "Группа и подгруппы"), ("7", "Вся компания (расширенно)"))  # fmt: skip
_PRIORITIES = ("Низкий", "Средний", "Высокий")


@dataclass(frozen=True, slots=True)
class _Field:
    """A custom field: hash key, type, option ids (enum/set) or sample values (text types)."""

    key: str
    name: str
    field_type: str
    option_ids: tuple[int, ...]
    samples: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Texts for notes, activities and mail.

_WHEN = {
    "ru": ("завтра", "в понедельник", "после обеда", "через неделю", "в конце месяца"),
    "uk": ("завтра", "у понеділок", "після обіду", "через тиждень"),
    "en": ("tomorrow", "on Monday", "next week", "after lunch"),
}
_NOTE_TEMPLATES = {
    "ru": (
        "Позвонил(а) {person}, просит перезвонить {when}.",
        "Отправили КП на {amount} {currency}, ждём обратной связи.",
        "Клиент сравнивает нас с конкурентами, главный вопрос — цена.",
        "Встреча прошла хорошо, ЛПР — {person}.",
        "Договорились о демо {when}.",
        "Нужен счёт на {org}.",
        "Не дозвонился, оставил сообщение секретарю.",
        "Запросили скидку {pct}%, согласовываю с руководителем.",
        "Юристы клиента прислали правки к договору.",
        "Бюджет утверждён, старт проекта {when}.",
    ),
    "uk": (
        "Зателефонував {person}, просить передзвонити {when}.",
        "Надіслали комерційну пропозицію на {amount} {currency}.",
        "Клієнт порівнює нас з конкурентами, головне питання — ціна.",
        "Потрібен рахунок на {org}.",
    ),
    "en": (
        "Called {person}, asked to follow up {when}.",
        "Sent a proposal for {amount} {currency}, waiting for feedback.",
        "Decision maker is {person}.",
        "Legal sent back comments on the contract.",
        "Asked for a {pct}% discount, checking with management.",
    ),
}
_SOMEONE = {"ru": "клиент", "uk": "клієнт", "en": "the client"}  # when no name is known
_LANGUAGE = {"RU": "ru", "KZ": "ru", "UA": "uk", "PL": "pl", "DE": "de", "US": "en"}
_GREETINGS = {
    "ru": "Добрый день, {name}!",
    "uk": "Добрий день, {name}!",
    "en": "Hello {name},",
    "pl": "Dzień dobry, {name}!",
    "de": "Guten Tag, {name},",
}
_EMOJI = ("👍", "🔥", "✅", "📞", "💰", "🤝", "😊", "❗", "🚀", "🇺🇦", "🇰🇿")
_MAIL_SUBJECTS = (
    "Коммерческое предложение для {org}",
    "Счёт №{n}",
    "Договор поставки",
    "Вопрос по внедрению",
    "Proposal for {org}",
    "Встреча на следующей неделе",
)
_ACTIVITY_SUBJECTS = {
    "call": ("Звонок {org}", "Перезвонить {person}", "Follow-up call", "Холодный звонок"),
    "meeting": ("Встреча с {person}", "Встреча в офисе {org}", "Meeting: {org}"),
    "task": ("Подготовить КП", "Выставить счёт", "Отправить договор", "Prepare a quote"),
    "deadline": ("Дедлайн по тендеру", "Срок подачи КП"),
    "email": ("Отправить письмо {person}", "Email follow-up"),
    "lunch": ("Обед с {person}", "Business lunch"),
    "demo": ("Демо продукта для {org}", "Онлайн-демо"),
}
_SCRIPTS = ('<script>alert("xss")</script>', '<img src="x" onerror="alert(1)">')


# ---------------------------------------------------------------------------------------------
# References the generator may break on purpose, checked while records are written.

_REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "persons": (("org_id", "organizations"),),
    "deals": (("person_id", "persons"), ("org_id", "organizations")),
    "leads": (("person_id", "persons"), ("organization_id", "organizations")),
    "activities": (
        ("deal_id", "deals"),
        ("person_id", "persons"),
        ("org_id", "organizations"),
        ("participants[].person_id", "persons"),
    ),
    "notes": (("deal_id", "deals"), ("person_id", "persons"), ("org_id", "organizations")),
    "deal_participants": (("deal_id", "deals"), ("person_id", "persons")),
    "deal_followers": (("deal_id", "deals"),),
    "deal_mail_messages": (("deal_id", "deals"),),
}


def _referenced(record: dict[str, Any], path: str) -> list[Any]:
    head, _, tail = path.partition("[].")
    if tail:
        return [item[tail] for item in record[head]]
    return [record[path]]


@dataclass(slots=True)
class _Person:
    """One real-world person, as their first record describes them."""

    country: str
    gender: int
    first: str
    last: str
    middle: str
    org: int | None
    owner: int
    phones: list[_Phone]
    emails: list[str]  # canonical: lower-case, valid


@dataclass(slots=True)
class _PersonView:
    """What one person record says: its own name, links and rendered contact details."""

    name: str
    org: int | None
    owner: int
    country: str
    phones: list[tuple[str, str]]  # (value, label)
    emails: list[tuple[str, str]]
    email: str | None  # canonical primary address, for mail parties


class _DealPlan(NamedTuple):
    """What was decided for a deal before it is generated (so tiny scales cover every case)."""

    status: str
    currency: str
    pipeline: int
    link: str  # "both", "org" or "person": which of org_id / person_id it has
    archived: bool
    forced_fields: list[int]  # custom-field positions that must have a value
    orphan_person: int | None  # a purged person this deal still points at


class _Lead(NamedTuple):
    """What activities and notes need to know about a lead."""

    id: str
    person: int | None
    org: int | None
    added: int


@dataclass(slots=True)
class _Deal:
    """What later passes need to know about a deal (also kept for purged ones)."""

    id: int
    title: str
    owner: int
    person: int | None  # None when the person was purged: children do not point at it
    org: int | None
    start: int
    end: int
    status: str
    currency: str
    purged: bool


# ---------------------------------------------------------------------------------------------
# The builder: one instance per generated dataset.


class _Builder:
    """Writes one dataset, pass by pass; holds the small indexes later passes need."""

    def __init__(self, seed: int, out_dir: Path) -> None:
        self.seed = seed
        self.out = out_dir
        self.pools = _pools(seed)
        self.counts: dict[str, int] = {}
        self.purged: dict[str, set[int]] = {
            "deals": set(),
            "persons": set(),
            "organizations": set(),
        }
        self.broken: list[dict[str, Any]] = []
        self.truth: dict[str, Any] = {}
        self.phone_book = _PhoneBook(self.rng("phone-book"))
        self.emails_taken: set[str] = set()
        self.cores_taken: set[str] = set()
        self.domains_taken: set[str] = {_COMPANY_DOMAIN}

    def rng(self, name: str) -> random.Random:
        """An independent, seeded stream per pass (string seeds hash with SHA-512: stable)."""
        return random.Random(f"{self.seed}:{name}")

    def emit(self, entity: str, records: Iterable[dict[str, Any]]) -> None:
        """Stream ``records`` into the entity file, counting them and recording every reference
        to a purged record as a broken reference."""
        checks = [
            (path, self.purged[target], target) for path, target in _REFERENCES.get(entity, ())
        ]
        count = 0

        def tracked() -> Iterator[dict[str, Any]]:
            nonlocal count
            for record in records:
                for path, missing, target in checks:
                    if not missing:
                        continue
                    for value in _referenced(record, path):
                        if value in missing:
                            self.broken.append(
                                {
                                    "entity": entity,
                                    "id": record["id"],
                                    "field": path,
                                    "target": target,
                                    "target_id": value,
                                }
                            )
                count += 1
                yield record

        # write_entity only iterates its records, so a generator streams to disk.
        write_entity(self.out, entity, tracked())
        self.counts[entity] = count

    # -- users and reference data ------------------------------------------------------------

    def users(self, n: int) -> None:
        """Sales team: the first is the admin whose token we use, the last has left (inactive,
        still owns old records), one typed their e-mail with capitals."""
        rng = self.rng("users")
        self.user_ids = [_USER_ID_BASE + i for i in range(1, n + 1)]
        self.inactive_user = self.user_ids[-1]
        self.active_users = self.user_ids[:-1]
        self.user_name: dict[int, str] = {}
        self.user_email: dict[int, str] = {}
        records = []
        for i, uid in enumerate(self.user_ids):
            country = "US" if i == 2 else "RU"
            pool, gender = self.pools[country], rng.randrange(2)
            first, last = rng.choice(pool.first[gender]), rng.choice(pool.last[gender])
            local = f"{_slug(first)}.{_slug(last)}"
            email = f"{local}@{_COMPANY_DOMAIN}"
            while email in self.emails_taken:
                email = f"{local}{rng.randint(2, 99)}@{_COMPANY_DOMAIN}"
            self.emails_taken.add(email)
            self.user_name[uid], self.user_email[uid] = f"{first} {last}", email
            created = _ACCOUNT_START + i * 40 * _DAY + rng.randrange(_DAY)
            active = uid != self.inactive_user
            last_login = ANCHOR - rng.randrange(_HOUR, 5 * _DAY) if active else ANCHOR - _YEAR
            records.append(
                {
                    "id": uid,
                    "name": f"{first} {last}",
                    "default_currency": "RUB",
                    "locale": "ru_RU",
                    "lang": 1,
                    "email": _recased_email(rng, email) if i == 1 else email,
                    "phone": _render_phone(rng, self.phone_book.issue(rng, "RU")),
                    "activated": True,
                    "last_login": _ts1(last_login),
                    "created": _ts1(created),
                    "modified": _ts1(max(created, last_login - rng.randrange(_YEAR // 2))),
                    "has_created_company": i == 0,
                    "access": [
                        {
                            "app": "sales",
                            "admin": i == 0,
                            "permission_set_id": str(
                                uuid.UUID(int=rng.getrandbits(128), version=4)
                            ),
                        }
                    ],
                    "active_flag": active,
                    "timezone_name": "Europe/Moscow",
                    "timezone_offset": "+03:00",
                    "role_id": 1 if i == 0 else 2,
                    "icon_url": None,
                    "is_you": i == 0,
                    "is_deleted": False,
                }
            )
        self.emit("users", records)

    def owner(self, rng: random.Random, share_of_history: float) -> int:
        """Who owns a record created at this point of the account's history: the user who left
        owns part of the older records."""
        if share_of_history < 0.5 and rng.random() < 0.1:
            return self.inactive_user
        return rng.choice(self.active_users)

    def reference_data(self) -> None:
        rng = self.rng("reference")
        self.emit(
            "currencies",
            (
                {
                    "id": i,
                    "code": code,
                    "name": name,
                    "decimal_points": 2,
                    "symbol": symbol,
                    "active_flag": True,
                    "is_custom_flag": False,
                }
                for i, (code, name, symbol) in enumerate(_CURRENCIES, start=1)
            ),
        )
        self.emit(
            "activity_types",
            (
                {
                    "id": i,
                    "name": name,
                    "key_string": key,
                    "icon_key": icon,
                    "color": color,
                    "order_nr": i,
                    "active_flag": True,
                    "is_custom_flag": custom,
                    "add_time": _ts1(_ACCOUNT_START + (_YEAR if custom else 0)),
                    "update_time": _ts1(_ACCOUNT_START + (_YEAR if custom else 0)),
                }
                for i, (key, name, icon, color, custom, _) in enumerate(_ACTIVITY_TYPES, start=1)
            ),
        )
        pipelines, stages = [], []
        self.stages: dict[int, list[tuple[int, int]]] = {}  # pipeline -> [(stage id, probability)]
        stage_id = 0
        for pipeline_id, (name, stage_specs) in enumerate(_PIPELINES, start=1):
            added = _ACCOUNT_START + (pipeline_id - 1) * 200 * _DAY
            pipelines.append(
                {
                    "id": pipeline_id,
                    "name": name,
                    "order_nr": pipeline_id,
                    "is_deleted": False,
                    "is_deal_probability_enabled": pipeline_id != 2,
                    "add_time": _ts2(added),
                    "update_time": _ts2(added + rng.randrange(_YEAR)),
                }
            )
            # The first pipeline keeps a stage deleted long ago (no deal is in it).
            specs = [(*spec, False) for spec in stage_specs]
            if pipeline_id == 1:
                specs.append(("Старый этап (не использовать)", 50, True))
            self.stages[pipeline_id] = []
            for order, (stage_name, probability, deleted) in enumerate(specs, start=1):
                stage_id += 1
                if not deleted:
                    self.stages[pipeline_id].append((stage_id, probability))
                stages.append(
                    {
                        "id": stage_id,
                        "order_nr": order,
                        "name": stage_name,
                        "is_deleted": deleted,
                        "deal_probability": probability,
                        "pipeline_id": pipeline_id,
                        "is_deal_rot_enabled": order <= 2,
                        "days_to_rotten": 14 if order <= 2 else None,
                        "add_time": _ts2(added),
                        "update_time": _ts2(added + rng.randrange(_YEAR)) if order > 1 else None,
                    }
                )
        self.emit("pipelines", pipelines)
        self.emit("stages", stages)

    def fields(self, entities: Iterable[str]) -> None:
        """Field definitions (v1 shape): built-in fields first, then custom ones with 40-hex
        keys; keeps the custom fields and option ids for the record passes."""
        rng = self.rng("fields")
        field_id = iter(range(12_001, 100_000))
        option_counter = iter(range(30, 10_000))  # option ids are account-wide, as in Pipedrive
        self.custom: dict[str, list[_Field]] = {}
        self.label_ids: dict[str, tuple[int, ...]] = {}
        self.priority_ids: tuple[int, ...] = ()
        specs = {
            "deal": _DEAL_CUSTOM_FIELDS,
            "person": _PERSON_CUSTOM_FIELDS,
            "organization": _ORG_CUSTOM_FIELDS,
            "activity": (),
            "product": _PRODUCT_CUSTOM_FIELDS,
        }
        files: dict[str, list[dict[str, Any]]] = {}
        for entity, custom_specs in specs.items():
            records: list[dict[str, Any]] = []
            for key, name, field_type in _BUILTIN_FIELDS[entity]:
                options: list[dict[str, Any]] | None = None
                if key == "label":
                    options = [
                        {"id": next(option_counter), "label": label, "color": color}
                        for label, color in _LABELS[entity]
                    ]
                    self.label_ids[entity] = tuple(option["id"] for option in options)
                elif key == "status":  # built-in option ids are strings
                    options = [{"id": i, "label": label} for i, label in _STATUS_OPTIONS]
                elif key == "visible_to":
                    options = [{"id": i, "label": label} for i, label in _VISIBILITY_OPTIONS]
                elif key == "priority":
                    options = [{"id": next(option_counter), "label": p} for p in _PRIORITIES]
                    self.priority_ids = tuple(option["id"] for option in options)
                records.append(
                    _field_definition(
                        rng,
                        next(field_id),
                        len(records) + 1,
                        key,
                        name,
                        field_type,
                        options,
                        _ACCOUNT_START,
                    )
                )
            self.custom[entity] = []
            for name, field_type, labels in custom_specs:
                key = f"{rng.getrandbits(160):040x}"
                option_ids: tuple[int, ...] = ()
                options = None
                if field_type in ("enum", "set"):
                    option_ids = tuple(next(option_counter) for _ in labels)
                    options = [
                        {"id": i, "label": label}
                        for i, label in zip(option_ids, labels, strict=True)
                    ]
                samples = () if options else labels
                self.custom[entity].append(_Field(key, name, field_type, option_ids, samples))
                added = _ACCOUNT_START + rng.randrange(2 * _YEAR)
                records.append(
                    _field_definition(
                        rng, next(field_id), len(records) + 1, key, name, field_type, options, added
                    )
                )
            files[f"{entity}_fields"] = records
        for entity in entities:
            self.emit(entity, files[entity])

    # -- custom-field values -----------------------------------------------------------------

    def custom_value(
        self, rng: random.Random, field: _Field, country: str, at: int, person: int | None = None
    ) -> Any:
        """A value in the v2 shape of the field's type (reference §6)."""
        match field.field_type:
            case "varchar" | "varchar_auto":
                return rng.choice(field.samples)
            case "text":
                return self.sentences(rng, _LANGUAGE[country], rng.randint(1, 3))
            case "double":
                return rng.choice((rng.randint(0, 50), round(rng.uniform(0, 50), 2)))
            case "monetary":
                currency = rng.choice(("RUB", "USD", "EUR"))
                mu, sigma = _VALUE_LOGNORMAL[currency]
                return {"value": round(rng.lognormvariate(mu, sigma), 2), "currency": currency}
            case "set":
                return sorted(rng.sample(field.option_ids, rng.randint(1, 3)))
            case "enum":
                return rng.choice(field.option_ids)
            case "user":
                return rng.choice(self.active_users)
            case "org":
                return self.live_org(rng)
            case "people":
                return person if person is not None else self.live_person(rng)
            case "phone":
                return _render_phone(rng, self.phone_book.issue(rng, country))
            case "time" | "timerange":
                zone, zone_id = _TIMEZONES[country]
                start = rng.randint(8, 16)
                value: dict[str, Any] = {"value": f"{start:02d}:{rng.choice((0, 30)):02d}:00"}
                if field.field_type == "timerange":
                    value["until"] = f"{start + rng.randint(1, 3):02d}:00:00"
                return {**value, "timezone_id": zone_id, "timezone_name": zone}
            case "date":
                return _date(at + rng.randrange(-30 * _DAY, 90 * _DAY))
            case "daterange":
                start = at + rng.randrange(60 * _DAY)
                return {
                    "value": _date(start),
                    "until": _date(start + rng.choice((90, 180, 365)) * _DAY),
                }
            case _:
                return self.address(rng, country)

    def custom_fields(
        self,
        rng: random.Random,
        entity: str,
        country: str,
        at: int,
        forced: Iterable[int] = (),
        overrides: dict[str, Any] | None = None,
        person: int | None = None,
    ) -> dict[str, Any]:
        """``custom_fields`` of one record: about half the fields set, some explicitly null,
        the rest absent; ``forced`` field positions always get a value, ``overrides`` fix a
        field's value (``None``: leave it out)."""
        values: dict[str, Any] = {}
        forced = set(forced)
        for position, field in enumerate(self.custom[entity]):
            roll = rng.random()
            if position in forced or roll < 0.55:
                if overrides and field.key in overrides:
                    if overrides[field.key] is not None:
                        values[field.key] = overrides[field.key]
                else:
                    values[field.key] = self.custom_value(rng, field, country, at, person)
            elif roll < 0.65:
                values[field.key] = None
        return values

    def address(self, rng: random.Random, country: str) -> dict[str, Any]:
        """An address object; one in seven was typed by hand and never geocoded (only
        ``value``)."""
        pool = self.pools[country]
        street, number = rng.choice(pool.streets), str(rng.randint(1, 180))
        city, region, postcode = (
            rng.choice(pool.cities),
            rng.choice(pool.regions),
            rng.choice(pool.postcodes),
        )
        subpremise = (
            f"оф. {rng.randint(1, 450)}"
            if country in ("RU", "UA", "KZ") and rng.random() < 0.4
            else None
        )
        name = _COUNTRY_NAMES[country]
        match country:
            case "US":
                formatted = f"{number} {street}, {city}, {region} {postcode}, USA"
            case "PL" | "DE":
                formatted = f"{street} {number}, {postcode} {city}, {name}"
            case _:
                office = f", {subpremise}" if subpremise else ""
                formatted = f"{street}, {number}{office}, {city}, {region}, {name}, {postcode}"
        if rng.random() < 0.15:
            typed = f"{city}, {street} {number}" + (f" {subpremise}" if subpremise else "")
            return {
                "value": typed,
                **dict.fromkeys(
                    ("route", "subpremise", "street_number", "locality", "sublocality",
                     "admin_area_level_1", "admin_area_level_2", "country", "postal_code",
                     "formatted_address"),
                ),
            }  # fmt: skip
        return {
            "value": formatted,
            "route": street,
            "subpremise": subpremise,
            "street_number": number,
            "locality": city,
            "sublocality": None,
            "admin_area_level_1": region,
            "admin_area_level_2": None,
            "country": name,
            "postal_code": postcode,
            "formatted_address": formatted,
        }

    def sentences(self, rng: random.Random, language: str, n: int, **names: str) -> str:
        """``n`` sentences: CRM phrases where we have them for the language, Faker's otherwise."""
        templates = _NOTE_TEMPLATES.get(language)
        when = _WHEN.get(language, _WHEN["en"])
        country = {"ru": "RU", "uk": "UA", "pl": "PL", "de": "DE", "en": "US"}[language]
        parts = []
        for _ in range(n):
            if templates and rng.random() < 0.7:
                parts.append(
                    rng.choice(templates).format(
                        person=names.get("person") or _SOMEONE[language],
                        org=names.get("org") or _SOMEONE[language],
                        when=rng.choice(when),
                        amount=f"{rng.randint(5, 900) * 1000:,}".replace(",", " "),
                        currency=rng.choice(("RUB", "USD", "EUR")),
                        pct=rng.choice((5, 7, 10, 15)),
                    )
                )
            else:
                parts.append(rng.choice(self.pools[country].sentences))
        return " ".join(parts)

    def live_org(self, rng: random.Random) -> int:
        while True:
            org = rng.randint(1, self.org_total)
            if org not in self.purged["organizations"]:
                return org

    def live_person(self, rng: random.Random) -> int:
        while True:
            person = rng.randint(1, self.person_total)
            if person not in self.purged["persons"]:
                return person

    @staticmethod
    def created(rng: random.Random, index: int, total: int) -> int:
        """Creation time of the ``index``-th of ``total`` contacts: the first fifth came in one
        import (50 a second, many identical timestamps), the rest spread over the years;
        non-decreasing in id, as in a real account."""
        imported = total // 5
        start = _ACCOUNT_START + 20 * _DAY
        if index <= imported:
            return start + index // 50
        step = (ANCHOR - 2 * _DAY - start - _DAY) / max(1, total - imported)
        return start + _DAY + int((index - imported - 1 + rng.random()) * step)

    @staticmethod
    def updated(rng: random.Random, added: int) -> int:
        return added if rng.random() < 0.3 else _between(rng, added, ANCHOR - _HOUR)

    # -- organizations -----------------------------------------------------------------------

    def org_core(self, rng: random.Random, country: str) -> str:
        """A company name stem no other real-world organization uses (up to case and
        punctuation), so only true duplicates share a normalised name."""
        pool = self.pools[country]
        core = ""
        for attempt in range(12):
            roll = rng.random()
            if roll < 0.35:
                core = rng.choice(_CORE_ROOTS[country]) + rng.choice(_CORE_SUFFIXES[country])
            elif roll < 0.6:
                core = rng.choice(pool.last[0])
            else:
                core = f"{rng.choice(pool.last[0])}-{rng.choice(pool.last[rng.randrange(2)])}"
            if attempt >= 4:
                core += rng.choice(_CORE_DISAMBIGUATORS)
            if attempt >= 8:
                core += f" {rng.randint(2, 999)}"
            if _slug(core) not in self.cores_taken:
                break
        self.cores_taken.add(_slug(core))
        return core

    def domain(self, core: str, country: str) -> str:
        base = _slug(core) or "company"
        domain, n = f"{base}.{_TLD[country]}", 1
        while domain in self.domains_taken:
            n += 1
            domain = f"{base}{n}.{_TLD[country]}"
        self.domains_taken.add(domain)
        return domain

    def new_org(self, rng: random.Random) -> _Org:
        country = _pick_country(rng)
        form = rng.choice(_LEGAL_FORMS[country])
        if form in _SOLE_TRADERS:
            pool = self.pools[country]
            last = rng.choice(pool.last[0])
            initials = (
                f"{rng.choice(pool.first[0])[0]}.{rng.choice(pool.middle[0] or pool.first[0])[0]}."
            )
            core = f"{last} {initials}"
            if _slug(core) in self.cores_taken:
                form, core = _LEGAL_FORMS[country][0], self.org_core(rng, country)
            self.cores_taken.add(_slug(core))
        else:
            core = self.org_core(rng, country)
        domain = self.domain(core.split(" ")[0] if form in _SOLE_TRADERS else core, country)
        return _Org(
            country=country,
            form=form,
            core=core,
            name=_org_name(rng, country, form, core),
            domain=domain,
            website=_website(rng, domain) if rng.random() < 0.7 else None,
            address=self.address(rng, country) if rng.random() < 0.75 else None,
            tax_id=_tax_id(rng, country) if rng.random() < 0.5 else None,
        )

    def org_duplicate(self, rng: random.Random, org: _Org) -> _Org:
        """The same organization entered again: it shares a website domain, an address, a tax
        id or its name up to legal form, quotes, case and spacing."""
        keys = ["name"]
        keys += [
            k
            for k, v in (("website", org.website), ("address", org.address), ("tax", org.tax_id))
            if v
        ]
        rng.shuffle(keys)
        keys = keys[: 1 if rng.random() < 0.6 else 2]
        form, core, country = org.form, org.core, org.country
        same_name = (
            core,
            f'{form} "{core}"' if country in ("RU", "UA", "KZ") else f"{core}, {form}",
            org.name.upper(),
            org.name + " ",
            org.name.replace(" ", "  ", 1),
            f"{_LEGAL_FORMS_SPELLED[form]} «{core}»"
            if form in _LEGAL_FORMS_SPELLED and country in ("RU", "UA", "KZ")
            else f"{core} {_LEGAL_FORMS_SPELLED.get(form, form)}",
        )
        if "name" in keys or rng.random() < 0.5:
            name = rng.choice(same_name)
        elif rng.random() < 0.6:
            name = _org_name(rng, country, form, _typo(rng, core))
        else:
            name = f"{_latin(core)} {rng.choice(('LLC', 'Ltd', 'OOO'))}"
        address = None
        if "address" in keys and org.address:
            address = dict(org.address)
            if rng.random() < 0.3:  # retyped by hand this time
                address = {k: (address["value"] if k == "value" else None) for k in address}
        return _Org(
            country=country,
            form=form,
            core=core,
            name=name,
            domain=org.domain,
            website=_website(rng, org.domain) if "website" in keys else None,
            address=address,
            tax_id=(org.tax_id.replace("-", "") if rng.random() < 0.3 else org.tax_id)
            if "tax" in keys and org.tax_id
            else None,
        )

    def organizations(self, n: int, purge: int) -> None:
        rng = self.rng("organizations")
        total = n + purge
        dup_of = _dup_plan(rng, total)
        members = set(dup_of) | set(dup_of.values())
        plain = [oid for oid in range(1, total + 1) if oid not in members]
        self.purged["organizations"] = set(rng.sample(plain, purge))
        self.org_total = total
        self.org_name = [""] * (total + 1)
        self.org_domain = [""] * (total + 1)
        self.org_country = [""] * (total + 1)
        self.org_duplicates: dict[int, list[int]] = defaultdict(list)
        for dup, original in sorted(dup_of.items()):
            self.org_duplicates[original].append(dup)
        pending = Counter(dup_of.values())
        originals: dict[int, _Org] = {}
        tax_field = self.custom["organization"][0].key

        def records() -> Iterator[dict[str, Any]]:
            for oid in range(1, total + 1):
                added = self.created(rng, oid, total)
                if oid in dup_of:
                    original = dup_of[oid]
                    org = self.org_duplicate(rng, originals[original])
                    pending[original] -= 1
                    if not pending[original]:
                        del originals[original]
                else:
                    org = self.new_org(rng)
                    if oid in pending:
                        originals[oid] = org
                self.org_name[oid], self.org_domain[oid] = org.name, org.domain
                self.org_country[oid] = org.country
                if oid in self.purged["organizations"]:
                    continue
                share = oid / total
                yield {
                    "id": oid,
                    "name": org.name,
                    "owner_id": self.owner(rng, share),
                    "add_time": _ts2(added),
                    "update_time": _ts2(self.updated(rng, added)),
                    "is_deleted": False,
                    "visible_to": rng.choice((3, 3, 3, 3, 1, 7)),
                    "label_ids": _labels(rng, self.label_ids["organization"]),
                    "address": org.address,
                    "website": org.website,
                    "linkedin": f"https://www.linkedin.com/company/{_slug(org.core)}"
                    if rng.random() < 0.1
                    else None,
                    "custom_fields": self.custom_fields(
                        rng,
                        "organization",
                        org.country,
                        added,
                        forced=(0,) if org.tax_id else (),
                        overrides={tax_field: org.tax_id},
                    )
                    if org.tax_id or rng.random() < 0.8
                    else {},
                }

        self.emit("organizations", records())
        self.truth["organizations"] = _clusters(dup_of)

    # -- persons -----------------------------------------------------------------------------

    def new_email(self, rng: random.Random, first: str, last: str, domain: str) -> str:
        """A fresh address nobody else in the account uses."""
        f, l = _slug(first).replace("-", ""), _slug(last).replace("-", "")  # noqa: E741
        if not f or not l:
            f, l = "contact", str(rng.randint(1, 9_999))  # noqa: E741
        local = rng.choice(
            (
                f"{f}.{l}",
                f"{f[0]}.{l}",
                f"{l}.{f}",
                f"{f}{l}",
                f"{f}_{l}",
                f"{f[0]}{l}",
                f"{l}{rng.randint(1, 99)}",
                f"{f}.{l}{rng.randint(70, 99)}",
            )
        )
        email = f"{local}@{domain}"
        while email in self.emails_taken:
            email = f"{local}{rng.randint(2, 9_999)}@{domain}"
        self.emails_taken.add(email)
        return email

    def email_domain(self, rng: random.Random, org: int | None, country: str) -> str:
        if org is not None and rng.random() < 0.6:
            return self.org_domain[org]
        return rng.choice(_FREE_MAIL[country])

    def pick_person_org(self, rng: random.Random) -> int | None:
        """Most persons belong to an organization, older organizations have more of them."""
        if rng.random() < 0.15:
            return None
        while True:
            org = 1 + int(self.org_total * rng.random() ** 1.4)
            if org not in self.purged["organizations"]:
                return org

    def new_person(
        self,
        rng: random.Random,
        needs_key: bool,
        namesake: tuple[str, int, str, str] | None,
        org: int | None,
    ) -> _Person:
        if org is not None and rng.random() < 0.85:
            country = self.org_country[org]
        else:
            country = _pick_country(rng)
        gender = rng.randrange(2)
        pool = self.pools[country]
        first, last = rng.choice(pool.first[gender]), rng.choice(pool.last[gender])
        if namesake:
            country, gender, first, last = namesake
        middle = rng.choice(pool.middle[gender]) if pool.middle[gender] else ""
        phones = [
            self.phone_book.issue(
                rng, country if k == 0 or rng.random() < 0.7 else _pick_country(rng)
            )
            for k in range(rng.choices((0, 1, 2), cum_weights=(12, 85, 100))[0])
        ]
        emails = [
            self.new_email(
                rng,
                first,
                last,
                self.email_domain(rng, org, country) if k == 0 else rng.choice(_FREE_MAIL[country]),
            )
            for k in range(rng.choices((0, 1, 2), cum_weights=(15, 90, 100))[0])
        ]
        if needs_key and not phones and not emails:
            phones.append(self.phone_book.issue(rng, country))
        return _Person(country, gender, first, last, middle, org, 0, phones, emails)

    def person_view(
        self,
        rng: random.Random,
        person: _Person,
        dirt: str | None,
        *,
        namesake: bool = False,
        original: bool = False,
    ) -> _PersonView:
        """An original record: name order as typed, phones in a local format, some dirt.
        ``dirt`` forces one kind of dirt (so tiny scales show every kind); a ``namesake`` keeps
        the plain "First Last" name; an ``original`` of a duplicate cluster keeps its first
        phone and e-mail usable (the duplicate may share nothing else)."""
        first, last, middle = person.first, person.last, person.middle
        roll = rng.random()
        if dirt == "role_contact":
            name = rng.choice(_ROLE_CONTACTS)
        elif namesake:
            name = f"{first} {last}"
        elif middle and roll < 0.1:
            name = f"{last} {first} {middle}"
        elif roll < 0.18:
            name = f"{last} {first}"
        else:
            name = f"{first} {last}"
        phones = []
        for phone in person.phones:
            extension = dirt == "phone_extension" or rng.random() < 0.03
            phones.append((_render_phone(rng, phone, extension), rng.choice(_PHONE_LABELS)))
        junk = dirt == "junk_phone" or (phones and rng.random() < 0.02)
        if junk and not (original and len(phones) < 2):
            phones[-1:] = [(rng.choice(_JUNK_PHONES), "work")]
        emails = []
        for k, email in enumerate(person.emails):
            kind = dirt if k == 0 and dirt and dirt.endswith("_email") else None
            if kind is None:
                kind = rng.choices(
                    ("mixed_case_email", "padded_email", "invalid_email", None),
                    cum_weights=(8, 11, 14, 100),
                )[0]
            if kind == "invalid_email" and original and k == 0:
                kind = None
            if kind == "mixed_case_email":
                value = _recased_email(rng, email)
            elif kind == "padded_email":
                value = rng.choice((f"{email} ", f" {email}", f"{email}  "))
            elif kind == "invalid_email":
                value = _invalid_email(rng, email)
            else:
                value = email
            emails.append((value, rng.choice(("work", "work", "home", "other"))))
        if dirt == "empty_email_entry":
            emails = [("", "")]  # how an emptied contact list comes back from the API
        return _PersonView(
            name=name,
            org=person.org,
            owner=person.owner,
            country=person.country,
            phones=phones,
            emails=emails,
            email=person.emails[0] if person.emails else None,
        )

    def person_duplicate(self, rng: random.Random, person: _Person) -> _PersonView:
        """The same person entered again. It shares the phone number (written another way),
        the e-mail address (up to case and spaces) or a near-identical name and the
        organization (or its duplicate); whatever it does not share differs or is missing."""
        available = [
            k
            for k, v in (("phone", person.phones), ("email", person.emails), ("org", person.org))
            if v
        ]
        rng.shuffle(available)
        keys = set(available[: 1 if rng.random() < 0.6 else 2])
        first, last, middle = person.first, person.last, person.middle
        variants = [
            f"{first} {last}",
            f"{first} {_typo(rng, last)}",
            f"{_typo(rng, first)} {last}",
            f"{last} {first}",
            f"{first} {last}".upper(),
            f"{first[0]}. {last}",
            f"{first}  {last}",
        ]
        if middle:
            variants.append(f"{last} {first} {middle}")
        if "org" not in keys:
            variants += [_latin(f"{first} {last}"), first, last]
        name = rng.choice(variants)
        phones = []
        if "phone" in keys:
            phones.append((_render_phone(rng, person.phones[0]), rng.choice(_PHONE_LABELS)))
        if ("phone" not in keys and rng.random() < 0.5) or rng.random() < 0.15:
            phones.append(
                (_render_phone(rng, self.phone_book.issue(rng, person.country)), "mobile")
            )
        emails, canonical = [], None
        if "email" in keys:
            email = canonical = person.emails[0]
            value = rng.choice((email, _recased_email(rng, email), f"{email} ", email.upper()))
            emails.append((value, "work"))
        if ("email" not in keys and rng.random() < 0.5) or rng.random() < 0.25:
            second = self.new_email(rng, first, last, rng.choice(_FREE_MAIL[person.country]))
            canonical = canonical or second
            emails.append((second, "home"))
        twins = self.org_duplicates.get(person.org or 0)
        roll = rng.random()
        if "org" in keys:
            org = rng.choice(twins) if twins and roll < 0.3 else person.org
        else:
            org = (
                person.org if roll < 0.5 else (rng.choice(twins) if twins and roll < 0.6 else None)
            )
        return _PersonView(
            name=name,
            org=org,
            owner=person.owner if rng.random() < 0.6 else rng.choice(self.active_users),
            country=person.country,
            phones=phones,
            emails=emails,
            email=canonical,
        )

    def persons(self, n: int, purge: int, index: bool) -> None:
        """Persons, streamed. With ``index`` the builder keeps what deals, notes and mail need
        (names, organizations, primary e-mails); without it only the truth."""
        rng = self.rng("persons")
        total = n + purge
        self.person_total = total
        dup_of = _dup_plan(rng, total)
        members = set(dup_of) | set(dup_of.values())
        plain = [pid for pid in range(1, total + 1) if pid not in members]
        pairs = max(1, total // 250)
        dirt_kinds = ("junk_phone", "phone_extension", "invalid_email", "mixed_case_email",
                      "padded_email", "empty_email_entry", "role_contact", "orphan")  # fmt: skip
        special = rng.sample(plain, min(len(plain), 2 * purge + 2 * pairs + len(dirt_kinds)))
        self.purged["persons"] = set(special[:purge])
        purged_orgs = sorted(self.purged["organizations"])
        forced_org = (
            {
                pid: purged_orgs[i % len(purged_orgs)]
                for i, pid in enumerate(special[purge : 2 * purge])
            }
            if purged_orgs
            else {}
        )
        namesake_ids = special[2 * purge : 2 * purge + 2 * pairs]
        namesake_of = {
            pid: _NAMESAKES[(i // 2) % len(_NAMESAKES)] for i, pid in enumerate(namesake_ids)
        }
        dirt = dict(zip(special[2 * purge + 2 * pairs :], dirt_kinds, strict=False))
        pending = Counter(dup_of.values())
        originals: dict[int, _Person] = {}
        if index:
            self.person_name = [""] * (total + 1)
            self.person_org = [0] * (total + 1)
            self.person_email: list[str | None] = [None] * (total + 1)
            self.person_country = [""] * (total + 1)
            self.org_persons: dict[int, list[int]] = defaultdict(list)
            self.orgless_persons: list[int] = []

        def records() -> Iterator[dict[str, Any]]:
            for pid in range(1, total + 1):
                added = self.created(rng, pid, total)
                if pid in dup_of:
                    original = dup_of[pid]
                    view = self.person_duplicate(rng, originals[original])
                    pending[original] -= 1
                    if not pending[original]:
                        del originals[original]
                else:
                    org = forced_org.get(pid) or (
                        None if dirt.get(pid) == "orphan" else self.pick_person_org(rng)
                    )
                    person = self.new_person(rng, pid in pending, namesake_of.get(pid), org)
                    person.owner = self.owner(rng, pid / total)
                    if dirt.get(pid) in ("junk_phone", "phone_extension") and not person.phones:
                        person.phones.append(self.phone_book.issue(rng, person.country))
                    if dirt.get(pid) in ("invalid_email", "mixed_case_email", "padded_email"):
                        if not person.emails:
                            domain = rng.choice(_FREE_MAIL[person.country])
                            person.emails.append(
                                self.new_email(rng, person.first, person.last, domain)
                            )
                    if pid in pending:
                        originals[pid] = person
                    view = self.person_view(
                        rng,
                        person,
                        dirt.get(pid),
                        namesake=pid in namesake_of,
                        original=pid in pending,
                    )
                if index:
                    self.person_name[pid], self.person_org[pid] = view.name, view.org or 0
                    self.person_email[pid], self.person_country[pid] = view.email, view.country
                if pid in self.purged["persons"]:
                    continue
                if index and dirt.get(pid) != "orphan":
                    if view.org is None:
                        self.orgless_persons.append(pid)
                    elif view.org not in self.purged["organizations"]:
                        self.org_persons[view.org].append(pid)
                yield self.person_record(rng, pid, view, added)

        self.emit("persons", records())
        self.truth["persons"] = _clusters(dup_of)
        groups: dict[str, list[int]] = defaultdict(list)
        for pid, (_, _, first, last) in namesake_of.items():
            groups[f"{first} {last}"].append(pid)
        self.truth["person_namesakes"] = sorted(sorted(g) for g in groups.values() if len(g) > 1)

    def person_record(
        self, rng: random.Random, pid: int, view: _PersonView, added: int
    ) -> dict[str, Any]:
        first, _, rest = view.name.strip().partition(" ")
        return {
            "id": pid,
            "name": view.name,
            "first_name": first,
            "last_name": rest.strip() or None,
            "owner_id": view.owner,
            "org_id": view.org,
            "add_time": _ts2(added),
            "update_time": _ts2(self.updated(rng, added)),
            "emails": [
                {"value": value, "primary": i == 0, "label": label}
                for i, (value, label) in enumerate(view.emails)
            ],
            "phones": [
                {"value": value, "primary": i == 0, "label": label}
                for i, (value, label) in enumerate(view.phones)
            ],
            "is_deleted": False,
            "visible_to": rng.choice((3, 3, 3, 3, 1, 7)),
            "label_ids": _labels(rng, self.label_ids["person"]),
            "picture_id": None,
            "custom_fields": self.custom_fields(rng, "person", view.country, added)
            if rng.random() < 0.7
            else {},
        }

    # -- deals -------------------------------------------------------------------------------

    def deal_org(self, rng: random.Random, share: float, with_persons: bool) -> int:
        """Key accounts get many deals; otherwise any organization that existed by then."""
        n = self.org_total
        org = 0
        for _ in range(6):
            if rng.random() < 0.2:
                org = rng.randint(1, max(3, n // 50))
            else:
                org = rng.randint(1, max(1, int(n * (0.3 + 0.7 * share))))
            if org in self.purged["organizations"]:
                continue
            if not with_persons or self.org_persons.get(org):
                break
        while org in self.purged["organizations"]:
            org = self.live_org(rng)
        return org

    def deals(self, scale: Scale) -> None:
        rng = self.rng("deals")
        total = scale.deals + scale.broken_references
        purged = set(rng.sample(range(1, total + 1), scale.broken_references))
        self.purged["deals"] = purged
        written = [i for i in range(1, total + 1) if i not in purged]
        # Plans drawn up front so tiny scales can be made to cover every case.
        shares = [i / total for i in written]
        statuses = [
            rng.choices(
                ("open", "won", "lost", "deleted"),
                cum_weights=(20, 50, 95, 100) if s < 0.7 else (55, 70, 95, 100),
            )[0]
            for s in shares
        ]
        _ensure_each(rng, statuses, ("open", "won", "lost", "deleted"))
        currencies = [
            rng.choices(_DEAL_CURRENCIES, cum_weights=_DEAL_CURRENCY_WEIGHTS)[0] for _ in written
        ]
        _ensure_each(rng, currencies, _DEAL_CURRENCIES)
        pipelines = [rng.choices((1, 2, 3), cum_weights=_PIPELINE_WEIGHTS)[0] for _ in written]
        _ensure_each(rng, pipelines, (1, 2, 3))
        links = [
            rng.choices(("both", "org", "person"), cum_weights=(75, 88, 100))[0] for _ in written
        ]
        _ensure_each(rng, links, ("both", "org", "person"))
        archived = [
            status != "deleted"
            and rng.random() < (0.4 if status in ("won", "lost") and s < 0.6 else 0.03)
            for status, s in zip(statuses, shares, strict=True)
        ]
        _ensure_each(rng, archived, (True, False), lambda i: statuses[i] != "deleted")
        forced_fields: dict[int, list[int]] = defaultdict(list)
        for position in range(len(self.custom["deal"])):
            forced_fields[rng.choice(written)].append(position)
        orphan_deals = dict(
            zip(
                rng.sample(written, len(self.purged["persons"])),
                sorted(self.purged["persons"]),
                strict=True,
            )
        )
        self.deal_list: list[_Deal] = []
        self.truth["deleted_deal_ids"], self.truth["archived_deal_ids"] = [], []
        plans = iter(zip(statuses, currencies, pipelines, links, archived, strict=True))

        def records() -> Iterator[dict[str, Any]]:
            for did in range(1, total + 1):
                share = did / total
                start = _DEALS_START + int(
                    (did - 1 + rng.random()) * (ANCHOR - 10 * _DAY - _DEALS_START) / total
                )
                if did in purged:  # only notes and activities of it survive
                    self.deal_list.append(self.purged_deal(rng, did, start, share))
                    continue
                status, currency, pipeline, link, is_archived = next(plans)
                plan = _DealPlan(
                    status,
                    currency,
                    pipeline,
                    link,
                    is_archived,
                    forced_fields.get(did, []),
                    orphan_deals.get(did),
                )
                yield self.deal_record(rng, did, share, start, plan)

        self.emit("deals", records())

    def deal_parties(
        self, rng: random.Random, share: float, link: str
    ) -> tuple[int | None, int | None]:
        if link == "person":
            if self.orgless_persons:
                return rng.choice(self.orgless_persons), None
            link = "both"
        org = self.deal_org(rng, share, with_persons=link == "both")
        members = self.org_persons.get(org)
        if link == "both" and members:
            return rng.choice(members), org
        return None, org

    def purged_deal(self, rng: random.Random, did: int, start: int, share: float) -> _Deal:
        person, org = self.deal_parties(rng, share, "both")
        end = _between(rng, start, ANCHOR - _DAY)
        title = f"{self.org_name[org or 0] or 'Сделка'} deal"
        return _Deal(
            did, title, self.owner(rng, share), person, org, start, end, "deleted", "RUB", True
        )

    def deal_record(
        self, rng: random.Random, did: int, share: float, start: int, plan: _DealPlan
    ) -> dict[str, Any]:
        status, currency, is_archived = plan.status, plan.currency, plan.archived
        orphan_person = plan.orphan_person
        if orphan_person is not None:  # this deal's person was deleted and purged since
            person, org = orphan_person, self.person_org[orphan_person] or None
        else:
            person, org = self.deal_parties(rng, share, plan.link)
        stages = self.stages[plan.pipeline]
        if status == "open":
            stage, probability = stages[
                min(int(rng.random() ** 1.5 * len(stages)), len(stages) - 1)
            ]
        elif status == "won":
            stage, probability = stages[-1]
        else:
            stage, probability = rng.choice(stages)
        latest = ANCHOR - _HOUR
        close = None
        if status in ("won", "lost"):
            close = min(start + _HOUR + int(rng.expovariate(1 / (45 * _DAY))), latest - _DAY)
            close = max(close, start + 60)
        end = close or (_between(rng, start, latest) if status == "deleted" else latest)
        stage_change = _between(rng, start, end)
        updated = min(
            max(stage_change, end if status != "open" else stage_change) + rng.randrange(3 * _DAY),
            latest,
        )
        archive_time = None
        if is_archived:
            archive_time = min(
                max(updated, (close or start) + rng.randrange(30 * _DAY, _YEAR)), latest
            )
            updated = archive_time
            self.truth["archived_deal_ids"].append(did)
        if status == "deleted":
            self.truth["deleted_deal_ids"].append(did)
        mu, sigma = _VALUE_LOGNORMAL[currency]
        value = 0.0 if rng.random() < 0.05 else round(rng.lognormvariate(mu, sigma), 2)
        if rng.random() < 0.4:
            value = float(round(value, -3))
        org_name = self.org_name[org] if org else None
        person_name = self.person_name[person] if person else None
        product = rng.choice(_PRODUCTS)[0]
        title = rng.choice(
            [
                f"{org_name or person_name} deal",
                f"{product} — {org_name or person_name}",
                f"Поставка: {product}",
                f"{person_name or org_name}: {product}",
                f"🔥 {product} для {org_name or person_name}",
                f"Renewal {_date(start)[:4]} {org_name or person_name}",
            ]
        )
        # The oldest deal belongs to the user who has left since.
        owner = self.inactive_user if did == 1 else self.owner(rng, share)
        country = self.org_country[org] if org else self.person_country[person or 0] or "RU"
        self.deal_list.append(
            _Deal(
                did,
                title,
                owner,
                None if person in self.purged["persons"] else person,
                org,
                start,
                end,
                status,
                currency,
                False,
            )
        )
        won = close if status == "won" else None
        lost = close if status == "lost" else None

        def local(t: int | None) -> str | None:
            return _date(t + _LOCAL_OFFSET) if t else None

        return {
            "id": did,
            "title": title,
            "owner_id": owner,
            "creator_user_id": owner if rng.random() < 0.8 else rng.choice(self.active_users),
            "person_id": person,
            "org_id": org,
            "pipeline_id": plan.pipeline,
            "stage_id": stage,
            "value": value,
            "currency": currency,
            "add_time": _ts2(start),
            "update_time": _ts2(updated),
            "stage_change_time": _ts2(stage_change),
            "is_deleted": status == "deleted",
            "is_archived": is_archived,
            "archive_time": _ts2(archive_time) if archive_time else None,
            "status": status,
            "probability": probability if rng.random() < 0.3 else None,
            "lost_reason": rng.choice(_LOST_REASONS) if lost and rng.random() < 0.85 else None,
            "visible_to": rng.choice((3, 3, 3, 1, 7)),
            "close_time": _ts2(close) if close else None,
            "won_time": _ts2(won) if won else None,
            "lost_time": _ts2(lost) if lost else None,
            "local_won_date": local(won),
            "local_lost_date": local(lost),
            "local_close_date": local(close),
            "expected_close_date": _date(start + rng.randrange(7, 120) * _DAY)
            if rng.random() < 0.6
            else None,
            "label_ids": _labels(rng, self.label_ids["deal"]),
            "origin": rng.choice(_ORIGINS),
            "origin_id": None,
            "channel": None,
            "channel_id": None,
            "custom_fields": self.custom_fields(
                rng,
                "deal",
                country,
                start,
                plan.forced_fields,
                person=None if orphan_person else person,
            ),
        }

    # -- leads and products ------------------------------------------------------------------

    def leads(self, n: int) -> None:
        """Leads inbox (v1): UUID ids, ``organization_id``, ``value {amount, currency}``, deal
        custom fields at the root in the v1 format, some archived."""
        rng = self.rng("leads")
        labels = {
            str(uuid.UUID(int=rng.getrandbits(128), version=4)): name
            for name in ("Горячий", "Тёплый", "Холодный")
        }
        self.truth["lead_labels"] = labels
        v1_fields = [
            f
            for f in self.custom["deal"]
            if f.field_type in ("varchar", "enum", "set", "double", "date", "monetary")
        ]
        self.lead_list: list[_Lead] = []
        archived = [rng.random() < 0.2 for _ in range(n)]
        _ensure_each(rng, archived, (True, False))

        def records() -> Iterator[dict[str, Any]]:
            for i in range(n):
                lid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                added = ANCHOR - 540 * _DAY + int((i + rng.random()) * 530 * _DAY / max(1, n))
                person = self.live_person(rng) if rng.random() < 0.7 else None
                org = (self.person_org[person] or None) if person else None
                if org in self.purged["organizations"]:
                    org = None
                if person is None or (org is None and rng.random() < 0.3):
                    org = org or self.live_org(rng)
                owner = rng.choice(self.active_users)
                self.lead_list.append(_Lead(lid, person, org, added))
                currency = rng.choice(("RUB", "USD", "EUR"))
                record: dict[str, Any] = {
                    "id": lid,
                    "title": rng.choice(
                        ("Заявка с сайта", "Входящий звонок", "Запрос КП", "Webinar signup")
                    )
                    + f" — {self.org_name[org] if org else self.person_name[person or 0]}",
                    "owner_id": owner,
                    "creator_id": owner if rng.random() < 0.7 else rng.choice(self.active_users),
                    "label_ids": sorted(rng.sample(sorted(labels), rng.randint(0, 1))),
                    "person_id": person,
                    "organization_id": org,
                    "source_name": rng.choice(("API", "Manually created")),
                    "origin": rng.choice(("ManuallyCreated", "API", "WebForms", "Prospector")),
                    "origin_id": None,
                    "channel": None,
                    "channel_id": None,
                    "source_deal_id": None,
                    "is_archived": archived[i],
                    "was_seen": rng.random() < 0.8,
                    "value": {
                        "amount": round(rng.lognormvariate(*_VALUE_LOGNORMAL[currency]), 2),
                        "currency": currency,
                    }
                    if rng.random() < 0.6
                    else None,
                    "expected_close_date": _date(added + rng.randrange(10, 90) * _DAY)
                    if rng.random() < 0.4
                    else None,
                    "next_activity_id": None,
                    "add_time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(added)),
                    "update_time": time.strftime(
                        "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.updated(rng, added))
                    ),
                    "visible_to": "3",
                    "cc_email": f"severnyveter+{lid[:8]}@pipedrivemail.com",
                }
                for field in v1_fields:  # v1: unset fields are omitted
                    if rng.random() < 0.4:
                        record.update(
                            _v1_value(rng, field, self.custom_value(rng, field, "RU", added))
                        )
                yield record

        self.emit("leads", records())

    def products(self, n: int) -> None:
        rng = self.rng("products")
        line = self.custom["product"][0]
        records = []
        for pid in range(1, n + 1):
            name, unit, price = _PRODUCTS[(pid - 1) % len(_PRODUCTS)]
            if pid > len(_PRODUCTS):
                name = f"{name} v{pid // len(_PRODUCTS) + 1}"
            added = _ACCOUNT_START + rng.randrange(4 * _YEAR)
            records.append(
                {
                    "id": pid,
                    "name": name,
                    "code": f"SKU-{1000 + pid}",
                    "description": self.sentences(rng, "ru", 1) if rng.random() < 0.6 else None,
                    "unit": unit,
                    "tax": rng.choice((0, 0, 20, 12)),
                    "category": None,
                    "is_linkable": True,
                    "is_deleted": False,
                    "visible_to": 3,
                    "owner_id": rng.choice(self.active_users),
                    "add_time": _ts2(added),
                    "update_time": _ts2(self.updated(rng, added)),
                    "billing_frequency": rng.choice(
                        ("one-time", "one-time", "monthly", "annually")
                    ),
                    "billing_frequency_cycles": None,
                    "prices": [
                        {
                            "product_id": pid,
                            "price": float(price),
                            "currency": "RUB",
                            "cost": float(price // 2),
                            "direct_cost": None,
                            "notes": "",
                        },
                        {
                            "product_id": pid,
                            "price": round(price / 92.5, 2),
                            "currency": "USD",
                            "cost": 0.0,
                            "direct_cost": None,
                            "notes": "",
                        },
                    ],
                    "custom_fields": {line.key: rng.choice(line.option_ids)}
                    if rng.random() < 0.7
                    else {},
                }
            )
        self.emit("products", records)

    # -- per-deal sub-resources --------------------------------------------------------------

    def live_deals(self) -> Iterator[_Deal]:
        return (deal for deal in self.deal_list if not deal.purged)

    def participants(self) -> None:
        """The deal's person plus extra participants: colleagues from the same organization and
        people from other organizations (a subcontractor, a consultant)."""
        rng = self.rng("participants")
        ids = iter(range(1, 10**9))
        need_foreign = True  # the first deal with a person always gets an outsider

        def records() -> Iterator[dict[str, Any]]:
            nonlocal need_foreign
            for deal in self.live_deals():
                people = [deal.person] if deal.person else []
                extra = rng.choices((0, 1, 2, 3), cum_weights=(60, 85, 95, 100))[0]
                foreign = bool(need_foreign and deal.person)
                for k in range(max(extra, foreign)):
                    colleagues = self.org_persons.get(deal.org or 0, [])
                    if colleagues and rng.random() < 0.6 and not (foreign and k == 0):
                        candidate = rng.choice(colleagues)
                    else:
                        candidate = self.live_person(rng)
                        if foreign and k == 0:
                            while self.person_org[candidate] in (0, deal.org):
                                candidate = self.live_person(rng)
                            need_foreign = False
                    if candidate not in people:
                        people.append(candidate)
                for person in people:
                    yield {
                        "id": next(ids),
                        "deal_id": deal.id,
                        "person_id": person,
                        "add_time": _ts1(_between(rng, deal.start, deal.end)),
                        "active_flag": rng.random() < 0.97,
                        "added_by_user_id": deal.owner
                        if rng.random() < 0.8
                        else rng.choice(self.active_users),
                    }

        self.emit("deal_participants", records())

    def followers(self) -> None:
        """The owner follows every deal (Pipedrive adds them); a manager follows some more."""
        rng = self.rng("followers")
        ids = iter(range(1, 10**9))

        def records() -> Iterator[dict[str, Any]]:
            for deal in self.live_deals():
                users = [deal.owner]
                for _ in range(rng.choices((0, 1, 2), cum_weights=(55, 90, 100))[0]):
                    user = rng.choice(self.active_users)
                    if user not in users:
                        users.append(user)
                for k, user in enumerate(users):
                    yield {
                        "id": next(ids),
                        "user_id": user,
                        "deal_id": deal.id,
                        "add_time": _ts1(
                            deal.start if k == 0 else _between(rng, deal.start, deal.end)
                        ),
                    }

        self.emit("deal_followers", records())

    def mail(self, share: float) -> None:
        """Threads of mail on deals with a person who has an e-mail address: alternating
        outgoing and incoming messages, HTML bodies with signatures and quotes."""
        rng = self.rng("mail")
        ids, threads, parties = iter(range(1, 10**9)), iter(range(1, 10**9)), iter(range(1, 10**9))
        first = True

        def party(email: str, name: str, person: int | None) -> dict[str, Any]:
            return {
                "id": next(parties),
                "email_address": email,
                "name": name,
                "linked_person_id": person,
                "linked_person_name": name if person else None,
                "mail_message_party_id": next(parties),
            }

        def colleague(user: int) -> dict[str, Any]:
            return party(self.user_email[user], self.user_name[user], None)

        def records() -> Iterator[dict[str, Any]]:
            nonlocal first
            for deal in self.live_deals():
                email = self.person_email[deal.person] if deal.person else None
                if not email or not (first or rng.random() < share):
                    continue
                first = False
                person_name = self.person_name[deal.person or 0]
                language = _LANGUAGE[self.person_country[deal.person or 0]]
                for _ in range(rng.choices((1, 2, 3), cum_weights=(70, 95, 100))[0]):
                    thread = next(threads)
                    subject = rng.choice(_MAIL_SUBJECTS).format(
                        org=self.org_name[deal.org or 0] or person_name, n=rng.randint(100, 9_999)
                    )
                    at = _between(rng, deal.start, deal.end)
                    outgoing = rng.random() < 0.6
                    quoted = ""
                    for k in range(rng.randint(1, 5)):
                        if at >= ANCHOR - _HOUR:
                            break
                        user_party = colleague(deal.owner)
                        person_party = party(email, person_name, deal.person)
                        text = self.sentences(rng, language, rng.randint(2, 6), person=person_name)
                        if rng.random() < 0.05:
                            text += " " + rng.choice(_EMOJI)
                        # Both sides write in the client's language.
                        if outgoing:
                            addressee, signature = (
                                person_name,
                                (
                                    f"{self.user_name[deal.owner]}<br>Северный ветер<br>"
                                    f'<a href="https://{_COMPANY_DOMAIN}">{_COMPANY_DOMAIN}</a>'
                                ),
                            )
                        else:
                            addressee = self.user_name[deal.owner]
                            signature = f"{person_name}<br>{self.org_name[deal.org or 0]}"
                        greeting = _GREETINGS[language].format(name=addressee.split(" ")[0])
                        body = (
                            f"<html><body><p>{greeting}</p><p>{text}</p>"
                            f"<p>--<br>{signature}</p>{quoted}</body></html>"
                        )
                        has_body = rng.random() > 0.03
                        yield {
                            "id": next(ids),
                            "from": [user_party if outgoing else person_party],
                            "to": [person_party if outgoing else user_party],
                            "cc": [colleague(rng.choice(self.active_users))]
                            if rng.random() < 0.15
                            else [],
                            "bcc": [],
                            "subject": subject if k == 0 else f"Re: {subject}",
                            "snippet": re.sub(r"\s+", " ", f"{greeting} {text}")[:225],
                            "body": body if has_body else None,
                            "mail_thread_id": thread,
                            "user_id": deal.owner,
                            "account_id": f"acc-{deal.owner}",
                            "message_time": _ts1(at),
                            "add_time": _ts1(at + rng.randrange(5, 120)),
                            "update_time": _ts1(at + rng.randrange(120, 3_600)),
                            "read_flag": 1 if outgoing or rng.random() < 0.9 else 0,
                            "draft_flag": 0,
                            "sent_flag": 1 if outgoing else 0,
                            "sent_from_pipedrive_flag": 1 if outgoing and rng.random() < 0.5 else 0,
                            "deleted_flag": 0,
                            "has_body_flag": 1 if has_body else 0,
                            "has_attachments_flag": 1 if rng.random() < 0.2 else 0,
                            "has_real_attachments_flag": 0,
                            "smart_bcc_flag": 0,
                            "synced_flag": 1,
                            "mail_tracking_status": rng.choice((None, "opened", "not opened"))
                            if outgoing
                            else None,
                            "deal_id": deal.id,
                        }
                        quoted = f"<blockquote>{text}</blockquote>"
                        outgoing = not outgoing
                        at += rng.randrange(_HOUR, 5 * _DAY)

        self.emit("deal_mail_messages", records())

    # -- activities and notes: planned as stubs, sorted by creation time, then expanded ------

    def stubs(
        self,
        rng: random.Random,
        per_deal: float,
        per_person: float,
        per_org: float,
        per_lead: float,
    ) -> list[tuple[int, int, str, Any]]:
        """(created, own seed, target kind, target) for every activity or note: deals get a
        heavy-tailed number of them (a few get hundreds), some contacts and leads get a few."""
        stubs: list[tuple[int, int, str, Any]] = []
        for deal in self.deal_list:
            count = int(rng.expovariate(1 / per_deal)) if per_deal else 0
            if rng.random() < 0.01:
                count *= 10
            for _ in range(count):
                stubs.append(
                    (
                        _between(rng, deal.start, min(deal.end, ANCHOR - _HOUR)),
                        rng.getrandbits(63),
                        "deal",
                        deal,
                    )
                )
        for kind, rate, total in (
            ("person", per_person, self.person_total),
            ("org", per_org, self.org_total),
        ):
            for _ in range(int(rate * total)):
                target = self.live_person(rng) if kind == "person" else self.live_org(rng)
                stubs.append(
                    (
                        _between(rng, _ACCOUNT_START + 30 * _DAY, ANCHOR - _HOUR),
                        rng.getrandbits(63),
                        kind,
                        target,
                    )
                )
        for position, lead in enumerate(self.lead_list):
            if rng.random() < per_lead or position == 0:
                stubs.append(
                    (_between(rng, lead.added, ANCHOR - _HOUR), rng.getrandbits(63), "lead", lead)
                )
        stubs.sort(key=lambda stub: (stub[0], stub[1]))
        return stubs

    def links(
        self, kind: str, target: Any
    ) -> tuple[int | None, int | None, int | None, str | None]:
        """(deal, person, org, lead) an activity or note about ``target`` points at."""
        if kind == "deal":
            return target.id, target.person, target.org, None
        if kind == "person":
            org = self.person_org[target] or None
            return None, target, None if org in self.purged["organizations"] else org, None
        if kind == "org":
            return None, None, target, None
        return None, target.person, target.org, target.id

    def activities(self, per_deal: float) -> None:
        rng = self.rng("activities")
        stubs = self.stubs(rng, per_deal, 0.02, 0.2, 0.5)
        weights = [spec[5] for spec in _ACTIVITY_TYPES]
        forced: dict[int, dict[str, Any]] = {}
        positions = rng.sample(range(len(stubs)), min(len(stubs), len(_ACTIVITY_TYPES) + 2))
        for position, spec in zip(positions, _ACTIVITY_TYPES, strict=False):
            forced[position] = {"type": spec[0]}
        if len(positions) > len(_ACTIVITY_TYPES):
            forced[positions[-2]] = {"done": True}
            forced[positions[-1]] = {"done": False}

        def records() -> Iterator[dict[str, Any]]:
            for aid, (added, own_seed, kind, target) in enumerate(stubs, start=1):
                r = random.Random(own_seed)
                force = forced.get(aid - 1, {})
                deal, person, org, lead = self.links(kind, target)
                owner = (
                    target.owner
                    if kind == "deal" and r.random() < 0.8
                    else r.choice(self.active_users)
                )
                type_key = (
                    force.get("type")
                    or r.choices([spec[0] for spec in _ACTIVITY_TYPES], weights)[0]
                )
                due = added + r.randrange(0, 14 * _DAY)
                done = force.get("done", due < ANCHOR and r.random() < 0.88)
                if force.get("done") is False:
                    due = ANCHOR + r.randrange(_DAY, 30 * _DAY)
                marked = min(due + r.randrange(0, 2 * _DAY), ANCHOR - 60) if done else None
                names = {
                    "person": self.person_name[person] if person else "",
                    "org": self.org_name[org] if org else "",
                }
                subject = r.choice(_ACTIVITY_SUBJECTS[type_key]).format(
                    person=names["person"] or names["org"] or "клиент",
                    org=names["org"] or names["person"] or "клиент",
                )
                timed = r.random() < 0.7
                yield {
                    "id": aid,
                    "subject": subject,
                    "type": type_key,
                    "owner_id": owner,
                    "creator_user_id": owner if r.random() < 0.85 else r.choice(self.active_users),
                    "is_deleted": False,
                    "add_time": _ts2(added),
                    "update_time": _ts2(max(added, marked or added)),
                    "deal_id": deal,
                    "lead_id": lead,
                    "person_id": person,
                    "org_id": org,
                    "project_id": None,
                    "due_date": _date(due),
                    "due_time": f"{r.randint(6, 16):02d}:{r.choice((0, 15, 30, 45)):02d}"
                    if timed
                    else None,
                    "duration": r.choice(("00:15", "00:30", "01:00", "01:30"))
                    if timed and type_key in ("call", "meeting", "lunch", "demo")
                    else None,
                    "busy": type_key in ("meeting", "lunch", "demo"),
                    "done": done,
                    "marked_as_done_time": _ts2(marked) if marked else None,
                    "location": self.address(r, self.org_country[org] if org else "RU")
                    if type_key == "meeting" and r.random() < 0.3
                    else None,
                    "participants": [{"person_id": person, "primary": True}] if person else [],
                    "public_description": None,
                    "priority": r.choice((*self.priority_ids, None, None, None)),
                    "note": self.note_content(r, "html", names) if r.random() < 0.35 else None,
                }

        self.emit("activities", records())

    def note_content(self, r: random.Random, kind: str, names: dict[str, str]) -> str:
        """A note as Pipedrive stores it (HTML): plain, formatted, very long, with emoji, or
        with markup that must never be rendered as is."""
        language = r.choices(("ru", "en", "uk"), cum_weights=(75, 90, 100))[0]
        text = self.sentences(r, language, r.randint(1, 4), **names)
        if kind == "plain":
            return text
        if kind == "emoji":
            return f"{r.choice(_EMOJI)} {text} {r.choice(_EMOJI)}"
        parts = [f"<p>{text}</p>"]
        if r.random() < 0.5:
            parts.append(
                f"<p><b>Итог:</b> {self.sentences(r, language, 1, **names)}<br>{self.sentences(r, 'ru', 1)}</p>"
            )
        if r.random() < 0.3:
            items = "".join(
                f"<li>{self.sentences(r, language, 1)}</li>" for _ in range(r.randint(2, 4))
            )
            parts.append(f"<ul>{items}</ul>")
        if r.random() < 0.2:
            parts.append(
                f'<p>Материалы: <a href="https://{_COMPANY_DOMAIN}/files/{r.randrange(10**6)}">ссылка</a>&nbsp;</p>'
            )
        if kind == "script":
            parts.insert(r.randint(0, len(parts)), r.choice(_SCRIPTS))
        if kind == "long":  # a pasted e-mail thread or contract: 10k–30k characters
            target = 10_000 + r.randrange(20_000)
            size = sum(map(len, parts))
            while size < target:
                paragraph = f"<p>{self.sentences(r, r.choice(('ru', 'en')), 8)}</p>"
                parts.append(paragraph)
                size += len(paragraph)
        return "".join(parts)

    def notes(self, per_deal: float) -> None:
        rng = self.rng("notes")
        stubs = self.stubs(rng, per_deal, 0.25, 0.25, 0.5)
        kinds = ("plain", "html", "long", "script", "emoji")
        forced = dict(
            zip(
                rng.sample(range(len(stubs)), min(len(stubs), 3)),
                ("long", "script", "emoji"),
                strict=False,
            )
        )

        def records() -> Iterator[dict[str, Any]]:
            for nid, (added, own_seed, kind, target) in enumerate(stubs, start=1):
                r = random.Random(own_seed)
                deal, person, org, lead = self.links(kind, target)
                user = (
                    target.owner
                    if kind == "deal" and r.random() < 0.8
                    else r.choice(self.active_users)
                )
                names = {
                    "person": self.person_name[person] if person else "",
                    "org": self.org_name[org] if org else "",
                }
                content_kind = (
                    forced.get(nid - 1)
                    or r.choices(kinds, cum_weights=(35, 93, 93.5, 93.7, 100))[0]
                )
                editor = user if r.random() < 0.9 else r.choice(self.active_users)
                yield {
                    "id": nid,
                    "user_id": user,
                    "deal_id": deal,
                    "person_id": person,
                    "org_id": org,
                    "lead_id": lead,
                    "project_id": None,
                    "content": self.note_content(r, content_kind, names),
                    "add_time": _ts1(added),
                    "update_time": _ts1(self.updated(r, added)),
                    "active_flag": True,
                    "pinned_to_deal_flag": kind == "deal" and r.random() < 0.03,
                    "pinned_to_person_flag": kind == "person" and r.random() < 0.03,
                    "pinned_to_organization_flag": kind == "org" and r.random() < 0.03,
                    "pinned_to_lead_flag": False,
                    "last_update_user_id": editor,
                    "deal": {"title": target.title} if kind == "deal" else None,
                    "person": {"name": names["person"]} if person else None,
                    "organization": {"name": names["org"]} if org else None,
                    "user": {
                        "email": self.user_email[user],
                        "icon_url": None,
                        "is_you": user == self.user_ids[0],
                        "name": self.user_name[user],
                    },
                }

        self.emit("notes", records())

    # -- truth and manifest ------------------------------------------------------------------

    def finish(self, scale: str) -> dict[str, int]:
        """Write truth.json, then manifest.json last; return the counts in file order."""
        self.truth["purged"] = {entity: sorted(ids) for entity, ids in self.purged.items()}
        self.truth["broken_references"] = self.broken
        (self.out / "truth.json").write_text(
            json.dumps(self.truth, ensure_ascii=False, separators=(",", ":")) + "\n",
            encoding="utf-8",
        )
        counts = {entity: self.counts[entity] for entity in ENTITY_FILES if entity in self.counts}
        manifest = {
            "scale": scale,
            "seed": self.seed,
            "counts": counts,
            "generator_version": GENERATOR_VERSION,
        }
        (self.out / "manifest.json").write_text(
            json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
        )
        return counts


def _field_definition(
    rng: random.Random,
    field_id: int,
    order: int,
    key: str,
    name: str,
    field_type: str,
    options: list[dict[str, Any]] | None,
    added: int,
) -> dict[str, Any]:
    """A field definition as ``GET /api/v1/<entity>Fields`` returns it; custom fields are the
    ones with a 40-hex key, and only they have ``edit_flag`` true."""
    return {
        "id": field_id,
        "key": key,
        "name": name,
        "order_nr": order,
        "field_type": field_type,
        "add_time": _ts1(added),
        "update_time": _ts1(added + rng.randrange(30 * _DAY)),
        "active_flag": True,
        "edit_flag": len(key) == 40,
        # Added after most deals existed: mandatory, yet many deals lack it.
        "mandatory_flag": name == "Тип клиента",
        "options": options,
    }


def _labels(rng: random.Random, ids: tuple[int, ...]) -> list[int]:
    roll = rng.random()
    if roll < 0.7:
        return []
    return sorted(rng.sample(ids, 1 if roll < 0.95 else 2))


def _v1_value(rng: random.Random, field: _Field, value: Any) -> dict[str, Any]:
    """A custom-field value in the v1 root format (leads): enum ids as strings, sets as comma
    strings, monetary split into ``<key>`` and ``<key>_currency``."""
    match field.field_type:
        case "enum":
            return {field.key: str(value)}
        case "set":
            return {field.key: ",".join(map(str, value))}
        case "monetary":
            return {field.key: value["value"], f"{field.key}_currency": value["currency"]}
        case _:
            return {field.key: value}


def _dup_plan(rng: random.Random, total: int) -> dict[int, int]:
    """Which ids re-enter an earlier record: ``{duplicate id: original id}``. A duplicate is
    created later, so its id is higher; an original is never itself a duplicate; about one
    cluster in seven gets a third member."""
    dup_of: dict[int, int] = {}
    originals: list[int] = []
    for rid in range(2, total + 1):
        if rng.random() >= _DUP_RATE:
            continue
        if originals and rng.random() < 0.15:
            dup_of[rid] = rng.choice(originals)
            continue
        original = rng.randrange(1, rid)
        if original in dup_of:
            continue
        dup_of[rid] = original
        originals.append(original)
    if not dup_of and total >= 2:
        dup_of[total] = 1
    return dup_of


def _clusters(dup_of: dict[int, int]) -> list[list[int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for dup, original in dup_of.items():
        members[original].append(dup)
    return [[original, *sorted(members[original])] for original in sorted(members)]


def _scale(scale: str | Scale) -> Scale:
    if isinstance(scale, Scale):
        return scale
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}") from None


# ---------------------------------------------------------------------------------------------
# Public API.


def generate(scale: str | Scale, seed: int, out_dir: Path) -> dict[str, int]:
    """Write a complete account of ``scale`` (a name in :data:`SCALES` or a :class:`Scale`)
    into ``out_dir``: every entity file, ``truth.json``, then ``manifest.json``. Returns the
    record count per entity. Same (scale, seed) → byte-identical files."""
    spec = _scale(scale)
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = _Builder(seed, out_dir)
    builder.users(spec.users)
    builder.reference_data()
    builder.fields(f"{e}_fields" for e in ("deal", "person", "organization", "activity", "product"))
    builder.organizations(spec.organizations, spec.broken_references)
    builder.persons(spec.persons, spec.broken_references, index=True)
    builder.deals(spec)
    builder.leads(spec.leads)
    builder.products(spec.products)
    builder.participants()
    builder.followers()
    builder.mail(spec.mail_deal_share)
    builder.activities(spec.activities_per_deal)
    builder.notes(spec.notes_per_deal)
    return builder.finish(spec.name)


def generate_contacts(n_persons: int, n_orgs: int, seed: int, out_dir: Path) -> dict[str, int]:
    """Persons and organizations only, for the dedup benchmark: the same dirt and duplicate
    truth as :func:`generate` at any size (1 M persons stream to disk in about a minute). Also
    writes the users and field definitions those records refer to, so the folder can be served;
    the manifest's scale is ``"contacts"``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = _Builder(seed, out_dir)
    builder.users(SCALES["seed"].users)
    builder.fields(("person_fields", "organization_fields"))
    builder.organizations(n_orgs, 0)
    builder.persons(n_persons, 0, index=False)
    return builder.finish("contacts")


def ensure_dataset(root: Path, scale: str, seed: int) -> Path:
    """``root / f"{scale}-seed{seed}-v{GENERATOR_VERSION}"``, generated first if it has no
    manifest. The generator's version is in the name, so a changed generator never serves a
    dataset cached by an older one.

    Safe when several processes race: each generates into its own temporary folder inside
    ``root`` and renames it into place; whoever renames second finds the target taken and
    throws its copy away (both copies are identical anyway). A finished dataset always has
    ``manifest.json``, written last."""
    target = root / f"{scale}-seed{seed}-v{GENERATOR_VERSION}"
    if (target / "manifest.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        generate(scale, seed, scratch)
        try:
            os.rename(scratch, target)
        except OSError:
            if not (target / "manifest.json").exists():
                raise RuntimeError(
                    f"{target} exists but holds no finished dataset (no manifest.json); "
                    "delete it to regenerate"
                ) from None
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target
