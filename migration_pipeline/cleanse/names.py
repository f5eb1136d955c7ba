"""Name keys for duplicate detection: the same person or company written in another script,
case, order or legal form gets the same key.

A key is built in steps, each for a reason:

1. Unicode NFKC and case folding: ``ＡＣＭＥ`` and ``Acme`` are one name.
2. For organizations, legal forms are dropped wherever they stand (``ООО «Ромашка»``,
   ``Romashka LLC``, ``ТОВ Ромашка``, ``Acme Sp. z o.o.``, ``ACME GmbH``): the form is often
   left out or written differently in a duplicate.
3. Cyrillic is transliterated (one scheme for Russian and Ukrainian) and accents are dropped
   (``Łódź`` → ``lodz``), so ``Иван Петров`` meets ``Ivan Petrov``.
4. Each word is squashed to a rough sound (``x``→``ks``, ``w``→``v``, ``y``/``j``→``i``,
   ``g``→``h``, ``kh``→``h``, ``ue``→``u``, for persons doubled letters single…), so
   transliteration variants (``Aleksandr``/``Alexander``, ``Yuriy``/``Jurij``,
   ``Ihor``/``Igor``, ``Müller``/``Mueller``) meet too.
5. A person's words are sorted (``Petrov Ivan`` is ``Ivan Petrov``); an organization's are
   joined without spaces in their order (``Gertz-Paffrath`` and ``GertzPaffrath`` are one
   company, and a typo moving a hyphen does not reorder words). For organizations step 4 only
   makes a weaker "sounds alike" key; their exact key unifies spelling variants alone
   (``Stroykomplekt``/``Стройкомплект``), as companies whose names merely sound alike
   (``Junken``/``Juncken``, ``Wagner``/``Wähner``) are common.

Keys are only ever compared with each other (blocking, similarity); they are never shown as
the name that migrates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

import pyarrow as pa

from .phones import region_for_domain

_CYRILLIC = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "ґ": "g",
    "д": "d",
    "е": "e",
    "ё": "e",
    "є": "ie",
    "ж": "zh",
    "з": "z",
    "и": "i",
    "і": "i",
    "ї": "yi",
    "й": "i",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ў": "u",
    "ф": "f",
    "х": "kh",
    "ц": "ts",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ъ": "",
    "ы": "y",
    "ь": "",
    "э": "e",
    "ю": "iu",
    "я": "ia",
    "қ": "k",
    "ғ": "g",
    "ң": "n",
    "ө": "o",
    "ұ": "u",
    "ү": "u",
    "һ": "h",
    "ә": "a",
}
_LATIN_EXTRA = {"ł": "l", "ß": "ss", "ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ı": "i", "þ": "th"}
_TRANSLATE = str.maketrans({**_CYRILLIC, **_LATIN_EXTRA})

# Sound squashing, applied in order to each transliterated word.
_SQUASH: tuple[tuple[str, str], ...] = (
    ("shch", "sh"),
    ("sch", "sh"),
    ("tsch", "ch"),
    ("ue", "u"),
    ("oe", "o"),
    ("ae", "a"),
    ("x", "ks"),
    ("ph", "f"),
    ("ck", "k"),
    ("q", "k"),
    ("w", "v"),
    ("kh", "h"),
    ("g", "h"),
    ("tz", "c"),
    ("ts", "c"),
    ("cz", "ch"),
    ("y", "i"),
    ("j", "i"),
)
# Spelling variants of one transliteration (й/ы/ю/я as y or i; ä/ö/ü as ae/oe/ue or a/o/u):
# organizations equal after these alone have the same name.
_SPELLING: tuple[tuple[str, str], ...] = (("ue", "u"), ("oe", "o"), ("ae", "a"), ("y", "i"))
_DOUBLED = re.compile(r"(.)\1+")
_NOT_WORD = re.compile(r"[^\w]+|_")

# Legal forms, written as they appear after punctuation became spaces; matched as whole words.
LEGAL_FORMS: tuple[str, ...] = (
    # Russia, Kazakhstan, Belarus
    "общество с ограниченной ответственностью",
    "товарищество с ограниченной ответственностью",
    "акционерное общество",
    "публичное акционерное общество",
    "закрытое акционерное общество",
    "открытое акционерное общество",
    "индивидуальный предприниматель",
    "ооо",
    "оао",
    "зао",
    "пао",
    "ао",
    "ип",
    "тоо",
    "чп",
    "одо",
    "ooo",
    "zao",
    "oao",
    "pao",
    "too",
    # Ukraine
    "товариство з обмеженою відповідальністю",
    "приватне акціонерне товариство",
    "приватне підприємство",
    "фізична особа підприємець",
    "тов",
    "пп",
    "прат",
    "пат",
    "фоп",
    "tov",
    "fop",
    # English
    "limited liability company",
    "llc",
    "l l c",
    "inc",
    "incorporated",
    "ltd",
    "limited",
    "corp",
    "corporation",
    "plc",
    "llp",
    "co",
    "company",
    # German, Austrian, Swiss
    "gesellschaft mit beschränkter haftung",
    "gmbh co kg",
    "gmbh",
    "ag",
    "kg",
    "ohg",
    "ug",
    "e k",
    "e v",
    # Polish, Czech, Slovak
    "spółka z ograniczoną odpowiedzialnością",
    "sp z o o",
    "sp j",
    "s c",
    "s a",
    "sa",
    "s r o",
    "a s",
    # French, Dutch, Nordic
    "sarl",
    "sas",
    "bv",
    "b v",
    "nv",
    "oy",
    "ab",
)
"""Legal forms, written as they appear after punctuation became spaces (``Sp. z o.o.`` →
``sp z o o``); removed wherever they stand as whole words."""
_LEGAL_FORM = re.compile(
    r"(?<!\w)(?:"
    + "|".join(re.escape(f) for f in sorted(LEGAL_FORMS, key=len, reverse=True))
    + r")(?!\w)"
)
_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "herr", "frau", "pan", "pani"})

# Words that say what kind of place an address part is, not which place: dropped.
_ADDRESS_WORDS = frozenset(
    {
        "ul",
        "ulitsa",
        "ulica",
        "vul",
        "vulitsa",
        "street",
        "st",
        "str",
        "strasse",
        "strase",
        "pr",
        "prt",
        "prosp",
        "prospekt",
        "avenue",
        "ave",
        "av",
        "d",
        "dom",
        "bld",
        "building",
        "office",
        "of",
        "ofis",
        "kv",
        "pom",
        "k",
        "korp",
        "g",
        "gor",
        "gorod",
        "m",
        "city",
        "obl",
        "oblast",
        "region",
        "r",
        "n",
        "raion",
        "rn",
        "pl",
        "ploshchad",
        "square",
        "sq",
        "bul",
        "bulvar",
        "blvd",
        "boulevard",
        "per",
        "pereulok",
        "lane",
        "ln",
        "road",
        "rd",
        "suite",
        "ste",
        "floor",
        "fl",
        "etazh",
        "et",
        "no",
        "nr",
    }
)

NAME_SCHEMA = pa.schema(
    [
        ("raw_name", pa.string()),
        ("name_key", pa.string()),
        ("sound_key", pa.string()),
        ("tokens", pa.list_(pa.string())),
        ("plain", pa.list_(pa.string())),
    ]
)
"""The Arrow table the name mappers fill: one row per distinct raw name. ``tokens`` are the
sound-words, ``plain`` the same words as written (case-folded, same order): typos are
compared on ``plain``, where one slip stays one edit (transliteration and squashing may turn
``Ковалюк``/``Ковалк`` or ``Putz``/``Puzt`` into two)."""

WEBSITE_SCHEMA = pa.schema(
    [("raw_website", pa.string()), ("site", pa.string()), ("region", pa.string())]
)


def _fold(text: str) -> str:
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _latin(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLATE))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def spelling(word: str) -> str:
    """A transliterated word with its spelling variants unified (``Stroykomplekt`` and
    ``Стройкомплект`` → ``stroikomplekt``), nothing more: an organization's exact name."""
    for old, new in _SPELLING:
        word = word.replace(old, new)
    return word


def squash(word: str, *, collapse_doubles: bool = True) -> str:
    """A transliterated word reduced to a rough sound (see the module docstring, step 4).
    Organizations keep doubled letters: ``Агрогруп`` and ``Агрогрупп`` may be two companies."""
    for old, new in _SQUASH:
        word = word.replace(old, new)
    return _DOUBLED.sub(r"\1", word) if collapse_doubles else word


def person_words(name: str | None) -> list[tuple[str, str]]:
    """(sound-word, word as written, case-folded) of a person's name, sorted, honorifics
    dropped."""
    words = ((squash(_latin(word)), word) for word in _fold(name or "").split())
    return sorted(pair for pair in words if pair[0] not in _HONORIFICS)


def organization_words(name: str | None) -> list[tuple[str, str, str]]:
    """(spelling, sound-word, word as written, case-folded) of an organization's name words
    in their order, legal forms dropped (a name that is only a legal form keeps it)."""
    folded = _fold(name or "")
    stripped = " ".join(_LEGAL_FORM.sub(" ", folded).split()) or folded
    words = []
    for word in stripped.split():
        latin = _latin(word)
        words.append((spelling(latin), squash(latin, collapse_doubles=False), word))
    return words


def address_tokens(address: str | None) -> list[str]:
    """The sorted distinct sound-words of an address, without words like ``ул.``/``street``
    (``ул. Ленина, д. 5, Москва`` and ``Moscow, Lenina st 5`` share ``lenina``, ``5``)."""
    words = _latin(_fold(address or "")).split()
    return sorted({squash(word) for word in words if word not in _ADDRESS_WORDS})


def website_site(url: str | None) -> str | None:
    """The host of a website without ``www.`` (``https://WWW.Acme.com/about`` → ``acme.com``)."""
    text = (url or "").strip().lower()
    if not text:
        return None
    host = urlsplit(text if "//" in text else "//" + text).hostname or ""
    host = host.removeprefix("www.").strip(".")
    return host if "." in host else None


def person_name_keys(rows: Iterable[tuple[str | None]]) -> list[tuple]:
    """Rows of :data:`NAME_SCHEMA` for distinct person names (1-tuples): both keys = the
    sorted sound-words joined by spaces (a person's name varies too much for less)."""
    out = []
    for (raw,) in rows:
        words = person_words(raw)
        tokens = [token for token, _ in words]
        key = " ".join(tokens) or None
        out.append((raw, key, key, tokens, [plain for _, plain in words]))
    return out


def organization_name_keys(rows: Iterable[tuple[str | None]]) -> list[tuple]:
    """Rows of :data:`NAME_SCHEMA` for distinct organization names (1-tuples): name_key = the
    spelling-unified words joined without spaces, in their order (an exact name); sound_key
    = the same with sound-words (names that merely sound alike: Junken and Juncken are two
    companies); tokens = the distinct sound-words sorted; plain = the name as written."""
    out = []
    for (raw,) in rows:
        words = organization_words(raw)
        key = "".join(word for word, _, _ in words) or None
        sound = "".join(token for _, token, _ in words) or None
        plain = ["".join(written for _, _, written in words)] if words else []
        out.append((raw, key, sound, sorted({token for _, token, _ in words}), plain))
    return out


def address_keys(rows: Iterable[tuple[str | None]]) -> list[tuple]:
    """Rows of :data:`NAME_SCHEMA` for distinct addresses (1-tuples): both keys = the sorted
    distinct words joined by spaces."""
    out = []
    for (raw,) in rows:
        tokens = address_tokens(raw)
        key = " ".join(tokens) or None
        out.append((raw, key, key, tokens, tokens))
    return out


def websites(rows: Iterable[tuple[str | None]]) -> list[tuple[str | None, ...]]:
    """Rows of :data:`WEBSITE_SCHEMA` for distinct website values (1-tuples): the site and
    the country its domain names (``.com.ua`` → UA), if any."""
    out = []
    for (raw,) in rows:
        site = website_site(raw)
        out.append((raw, site, region_for_domain(site)))
    return out
