"""The pipeline's SQL files, one ``create or replace table`` each, read by name.

Values always travel as ``?`` parameters. The only text ever put into a file is an identifier
from our own constants (``{{entity}}`` placeholders, e.g. ``person`` or ``organization``),
checked to be a plain identifier before it is substituted.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@cache
def _text(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


def read_sql(name: str, **identifiers: str) -> str:
    """The SQL of ``name`` (e.g. ``cleanse/phones.sql``) with ``{{key}}`` placeholders replaced
    by ``identifiers``; a placeholder left without a value is an error."""
    for key, value in identifiers.items():
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{key}={value!r} is not a plain SQL identifier")

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in identifiers:
            raise KeyError(f"{name}: no value for placeholder {{{{{key}}}}}")
        return identifiers[key]

    return _PLACEHOLDER.sub(substitute, _text(name))
