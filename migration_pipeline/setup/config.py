"""The ``[mapping]`` section of the migration's TOML file: how Pipedrive users and pipelines
find their amoCRM counterparts, and whether what is missing in amoCRM may be created.

::

    [mapping]
    default_user_email = "sales.lead@acme.ru"     # owner of records whose user has no match
    create_missing = true                         # false: fail, listing what is missing
    user_overrides = { "old.rep@acme.com" = "rep@acme.ru" }   # Pipedrive e-mail → amoCRM e-mail
    pipeline_overrides = { "Sales" = "Воронка" }               # Pipedrive name → amoCRM name

The file is the one :func:`migration_pipeline.config.config_path` names (``MIGRATION_CONFIG``,
else ``<project root>/migration.toml``, else the packaged defaults). E-mails and names are
compared trimmed and case-insensitively, so the keys here are normalised the same way, and
two keys that normalise alike are an error rather than a silent choice.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


def normalise(text: str) -> str:
    """How names and e-mails are compared: trimmed, inner whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def _email(value: str) -> str:
    email = normalise(value)
    if "@" not in email or " " in email:
        raise ValueError(f"{value!r} is not an e-mail address")
    return email


def _unique_keys(pairs: dict[str, str], what: str) -> None:
    seen: dict[str, str] = {}
    for key in pairs:
        normal = normalise(key)
        if normal in seen:
            raise ValueError(
                f"{what} {seen[normal]!r} and {key!r} are the same once trimmed and "
                "lower-cased; keep one"
            )
        seen[normal] = key


class MappingConfig(BaseModel):
    """How the target account is mapped (see the module docstring for the TOML)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_user_email: str | None = Field(
        None,
        description="amoCRM user who owns records of unmatched Pipedrive users; unset: the "
        "account's current user (the token's owner)",
    )
    user_overrides: dict[str, str] = Field(
        default_factory=dict, description="Pipedrive user e-mail → amoCRM user e-mail"
    )
    pipeline_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Pipedrive pipeline name → amoCRM pipeline name (created when missing)",
    )
    create_missing: bool = Field(
        True,
        description="create missing pipelines, statuses, loss reasons and custom fields; "
        "false: fail before anything is sent, listing what is missing",
    )

    @field_validator("default_user_email")
    @classmethod
    def _default_is_email(cls, value: str | None) -> str | None:
        return None if value is None else _email(value)

    @field_validator("user_overrides")
    @classmethod
    def _overrides_are_emails(cls, value: dict[str, str]) -> dict[str, str]:
        _unique_keys(value, "user_overrides keys")
        return {_email(source): _email(target) for source, target in value.items()}

    @field_validator("pipeline_overrides")
    @classmethod
    def _overrides_are_names(cls, value: dict[str, str]) -> dict[str, str]:
        _unique_keys(value, "pipeline_overrides keys")
        for source, target in value.items():
            if not source.strip() or not target.strip():
                raise ValueError(f"empty pipeline name in {source!r} = {target!r}")
        return {normalise(source): " ".join(target.split()) for source, target in value.items()}
