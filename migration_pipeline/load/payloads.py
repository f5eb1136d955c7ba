"""Render cleansed Pipedrive records as amoCRM API payloads (pure functions, no I/O).

amoCRM wants Unix seconds for dates, integer prices, at most 256 characters in a ``text``
custom field and plain text in notes; Pipedrive gives RFC 3339 times, HTML notes and custom
fields keyed by 40-character hashes. Everything that crosses that gap is here, so it can be
tested value by value.
"""

from __future__ import annotations

import html
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


def epoch(value: datetime | date | str | None) -> int | None:
    """Unix seconds (UTC) of a timestamp, a date (midnight UTC) or an ISO string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
    return int(datetime.combine(value, time(), tzinfo=UTC).timestamp())


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def html_to_text(content: str | None) -> str:
    """Plain text of a Pipedrive HTML note: scripts dropped, breaks kept, entities decoded."""
    if not content:
        return ""
    text = _SCRIPT.sub("", content)
    text = _BREAK.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
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
            return [{"value": float(number)}]
        except (TypeError, ValueError):
            return None
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
