"""A Pipedrive account on disk: one JSON Lines file per entity, records in the API's own shape.

The generator writes this format and the fake Pipedrive serves it; ``--from-dir DIR`` serves a
folder a user made (an exported snapshot, a catalogue of bad records). Which shape each file
holds is the shape of the endpoint that serves it:

======================== =============================================================== =====
file                     record shape                                                    API
======================== =============================================================== =====
users.jsonl              user (``GET /api/v1/users``)                                    v1
currencies.jsonl         currency                                                        v1
activity_types.jsonl     activity type                                                   v1
pipelines.jsonl          pipeline                                                        v2
stages.jsonl             stage                                                           v2
deal_fields.jsonl        field definition (``GET /api/v1/dealFields``; v2 is derived)    v1
person_fields.jsonl      field definition                                                v1
organization_fields.jsonl field definition                                               v1
activity_fields.jsonl    field definition                                                v1
product_fields.jsonl     field definition                                                v1
deals.jsonl              deal, incl. ``is_archived`` and ``status: "deleted"`` ones      v2
organizations.jsonl      organization                                                    v2
persons.jsonl            person                                                          v2
activities.jsonl         activity                                                        v2
products.jsonl           product                                                         v2
notes.jsonl              note                                                            v1
leads.jsonl              lead, incl. ``is_archived`` ones                                v1
deal_participants.jsonl  participant item (``person_id`` a plain id) + ``deal_id``       v1
deal_followers.jsonl     follower ``{id, user_id, deal_id, add_time}``                   v1
deal_mail_messages.jsonl mail message ``data`` incl. ``body`` + ``deal_id``              v1
======================== =============================================================== =====

Every file is optional (a missing one is an empty entity). ``truth.json`` and
``manifest.json`` beside them are the generator's and are never served.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ENTITY_FILES: tuple[str, ...] = (
    "users",
    "currencies",
    "activity_types",
    "pipelines",
    "stages",
    "deal_fields",
    "person_fields",
    "organization_fields",
    "activity_fields",
    "product_fields",
    "deals",
    "organizations",
    "persons",
    "activities",
    "products",
    "notes",
    "leads",
    "deal_participants",
    "deal_followers",
    "deal_mail_messages",
)


class DatasetError(ValueError):
    """A dataset file that cannot be served; the message names the file and line."""


def read_entity(directory: Path, entity: str) -> list[dict[str, Any]]:
    """The records of one entity, in file order. A missing file is an empty entity; a line that
    is not a JSON object raises :class:`DatasetError` naming the file and the line number."""
    if entity not in ENTITY_FILES:
        raise KeyError(f"unknown entity {entity!r}")
    path = directory / f"{entity}.jsonl"
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DatasetError(
                    f"{path}:{number}: expected a JSON object, got {type(record).__name__}"
                )
            records.append(record)
    return records


def write_entity(directory: Path, entity: str, records: Iterable[dict[str, Any]]) -> None:
    """Write one entity file (UTF-8, one compact JSON object per line, keys in given order)."""
    if entity not in ENTITY_FILES:
        raise KeyError(f"unknown entity {entity!r}")
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{entity}.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            handle.write("\n")
