"""Render cleansed Pipedrive records as amoCRM API payloads (pure functions, no I/O).

amoCRM wants Unix seconds for dates, integer prices, at most 256 characters in a ``text``
custom field and plain text in notes; Pipedrive gives RFC 3339 times, HTML notes and custom
fields keyed by 40-character hashes. Everything that crosses that gap is here, so it can be
tested value by value.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

TEXT_MAX = 256
NAME_MAX = 255
NOTE_MAX = 65_535
_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"(?i)<\s*(br|/p|/div|/li|/h[1-6])\s*/?>")
_SCRIPT = re.compile(r"(?is)<(script|style)\b.*?</\1\s*>")
# C0 and C1 control characters except tab, newline and carriage return: NUL, BEL, ESC… come
# from broken imports and bad copy-paste; they are invisible at best in amoCRM.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TIME_OF_DAY = re.compile(r"\s*([01]?\d|2[0-3]):([0-5]\d)(?::[0-5]\d)?\s*")


def epoch(value: datetime | date | str | None) -> int | None:
    """Unix seconds (UTC) of a timestamp, a date (midnight UTC) or an ISO string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
    return int(datetime.combine(value, time(), tzinfo=UTC).timestamp())


def time_of_day(text: str | None) -> int | None:
    """Seconds after midnight of a Pipedrive ``due_time`` (``HH:MM``, seconds ignored), or None
    when it is missing or not a time of day: the field is free text in imports and old
    records ("noon", "25:99"), and one such value must not stop the plan."""
    found = _TIME_OF_DAY.fullmatch(text or "")
    return None if found is None else int(found[1]) * 3600 + int(found[2]) * 60


def without_controls(text: str) -> str:
    """``text`` without control characters (tabs and line breaks stay)."""
    return _CONTROL.sub("", text)


def one_line(value: str | None, fallback: str, limit: int = NAME_MAX) -> str:
    """A name or subject as amoCRM should show it: control characters dropped, runs of
    whitespace (line breaks, tabs, no-break spaces) made one space, cut to ``limit``; a value
    left empty (none, "", only spaces) becomes ``fallback``, so nothing is created nameless."""
    text = " ".join(without_controls(value or "").split())
    return clip(text or fallback, limit)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def html_to_text(content: str | None) -> str:
    """Plain text of a Pipedrive HTML note: scripts dropped, breaks kept, entities decoded,
    control characters dropped."""
    if not content:
        return ""
    text = _SCRIPT.sub("", content)
    text = _BREAK.sub("\n", text)
    text = without_controls(html.unescape(_TAG.sub("", text)))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line).strip()


def _text_of(value: Any, pipedrive_type: str, names: Mapping[str, Mapping[int, str]]) -> str | None:
    """A Pipedrive custom value rendered as text (for types amoCRM has no twin of)."""
    if isinstance(value, dict):
        if pipedrive_type == "address":
            return value.get("formatted_address") or value.get("value")
        start, until = value.get("value"), value.get("until")
        return f"{start} – {until}" if until else (None if start is None else str(start))
    if pipedrive_type in ("user", "org", "people"):
        table = {"user": "users", "org": "organizations", "people": "persons"}[pipedrive_type]
        try:
            return names[table].get(int(value), f"#{value}")
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def custom_value(
    value: Any, field: Mapping[str, Any], names: Mapping[str, Mapping[int, str]]
) -> list[dict[str, Any]] | None:
    """``values`` for one amoCRM custom field from one Pipedrive value, or None to skip.

    ``field`` is a ``map.fields`` row (``pipedrive_type``, ``amo_field_type``, ``enum_map``).
    """
    if value is None or value == "" or value == []:
        return None
    kind = field["amo_field_type"]
    pipedrive_type = field["pipedrive_type"]
    if kind in ("select", "multiselect", "radiobutton"):
        enum_map = field.get("enum_map") or {}
        ids = value if isinstance(value, list) else [value]
        if isinstance(value, str) and "," in value:  # v1's comma-joined sets
            ids = value.split(",")
        enums = [enum_map.get(str(option).strip()) for option in ids]
        values = [{"enum_id": int(e)} for e in enums if e is not None]
        return (values[:1] if kind != "multiselect" else values) or None
    if kind in ("numeric", "monetary"):
        number = value.get("value") if isinstance(value, dict) else value
        try:
            parsed = float(number)
        except (TypeError, ValueError):
            return None
        # float() reads "NaN" and "inf", which no JSON body may carry: skip them like text.
        return [{"value": parsed}] if math.isfinite(parsed) else None
    if kind in ("date", "date_time", "birthday"):
        text = value.get("value") if isinstance(value, dict) else value
        try:
            return [{"value": epoch(str(text))}]
        except ValueError:
            return None
    text = _text_of(value, pipedrive_type, names)
    if text is None:
        return None
    return [{"value": clip(text, NOTE_MAX if kind == "textarea" else TEXT_MAX)}]


def field_value(field_id: int, values: list[dict[str, Any]]) -> dict[str, Any]:
    return {"field_id": int(field_id), "values": values}
