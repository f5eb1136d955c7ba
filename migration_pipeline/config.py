"""The migration's settings: one TOML file the user edits, validated by :class:`MigrationConfig`.

Which file: ``MIGRATION_CONFIG`` if set, else ``<project root>/migration.toml`` if it exists,
else the packaged defaults (``migration_pipeline/default_config.toml``, made for the sandbox).
The file is read when a stage runs, never at import, so a changed file applies to the next run.

Sections (later stages add their own next to these):

* ``[warehouse]``: how much memory DuckDB may use before it spills to disk.
* ``[phones]``: the region that numbers without a country code belong to.
* ``[currency]``: the amoCRM account currency and the rates deal values are converted at.
* ``[dedup]``: the score thresholds of duplicate detection.
* ``[selection]``: what migrates and what is archived.
* ``[mapping]``: how users and pipelines map onto the amoCRM account (the setup stage's
  :class:`~migration_pipeline.setup.config.MappingConfig`).

Every model forbids unknown keys, so a typo is an error naming the key, not a silent default.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from . import settings
from .setup.config import MappingConfig

CONFIG_ENV = "MIGRATION_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "default_config.toml"

CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file, each bad key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _region(value: str) -> str:
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. RU, UA, KZ, DE)")
    return region


Region = Annotated[str, AfterValidator(_region), Field(description="ISO 3166-1 alpha-2")]


class PhonesConfig(_Section):
    """How phone numbers are read. A number written with its country code is read as it is.
    One written without is tried in these regions, in order, and the first valid reading wins:
    the country of the person's address, of its organization's address, of its e-mail
    domain (``.ua``, ``ukr.net``…) when ``infer_region`` is on; then ``default_region``; then
    ``fallback_regions`` (the other countries the account deals with)."""

    default_region: Region = "RU"
    infer_region: bool = True
    fallback_regions: tuple[Region, ...] = ()


class Rate(_Section):
    """``rate`` units of the account currency buy one unit of ``currency`` (on ``date``)."""

    currency: CurrencyCode
    rate: Decimal = Field(gt=0, max_digits=20, decimal_places=10)
    date: dt.date
    source: str = Field(min_length=1)


class CurrencyConfig(_Section):
    """amoCRM keeps one currency per account and integer prices: every deal and lead value is
    converted to ``account_currency`` at the rate listed for its currency, then rounded half
    away from zero to whole units. The account currency itself needs no rate (it is 1)."""

    account_currency: CurrencyCode = "RUB"
    rates: tuple[Rate, ...] = ()

    @model_validator(mode="after")
    def _one_rate_per_currency(self) -> CurrencyConfig:
        seen: set[str] = set()
        for rate in self.rates:
            if rate.currency in seen:
                raise ValueError(f"currency {rate.currency} has more than one rate; keep one")
            seen.add(rate.currency)
            if rate.currency == self.account_currency and rate.rate != 1:
                raise ValueError(
                    f"the account currency {rate.currency} must have rate 1, not {rate.rate}"
                )
        return self


class DedupConfig(_Section):
    """Duplicate detection. A candidate pair scoring at least ``merge_score`` is merged, one
    scoring at least ``review_score`` goes to the review table (not merged). The scores are
    sums of the comparison levels documented in :mod:`migration_pipeline.cleanse.dedup`."""

    merge_score: float = 6.0
    review_score: float = 3.0
    max_block_size: int = Field(
        200, ge=2, description="blocks with more records than this are not compared pairwise"
    )
    extra_free_mail_domains: tuple[str, ...] = Field(
        (), description="domains shared by unrelated people, added to the built-in list"
    )
    tax_id_field_pattern: str = Field(
        r"(?i)(инн|tax ?id|vat|nip|єдрпоу|едрпоу|edrpou|бин|ust-?id|registration n)",
        description="organization custom fields whose name matches hold a tax/registration id",
    )

    @field_validator("tax_id_field_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> DedupConfig:
        if self.review_score > self.merge_score:
            raise ValueError("review_score must not be above merge_score")
        return self


class Window(_Section):
    """A rule for closed records: ``all`` migrate, ``none`` do, or those closed ``within``
    ``months`` months before the reference date."""

    policy: Literal["all", "within", "none"]
    months: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _months_when_within(self) -> Window:
        if self.policy == "within" and self.months is None:
            raise ValueError("policy 'within' needs 'months'")
        return self


class DealsSelection(_Section):
    """Open deals always migrate and deleted ones never do; won, lost and archived deals by
    their window (measured from close time, archive time for archived ones)."""

    won: Window = Window(policy="within", months=24)
    lost: Window = Window(policy="within", months=12)
    archived: Window = Window(policy="none")


class LeadsSelection(_Section):
    """Leads-inbox leads: open ones always migrate; archived ones by their window (measured
    from their last update)."""

    archived: Window = Window(policy="none")


class PersonsSelection(_Section):
    """``needed``: persons that a migrating deal, lead or participant needs; ``with_contact``:
    those and every person with a valid phone or e-mail; ``all``: every person not deleted."""

    policy: Literal["needed", "with_contact", "all"] = "needed"


class OrganizationsSelection(_Section):
    """``needed``: organizations of migrating deals, leads and persons; ``all``: every one
    not deleted."""

    policy: Literal["needed", "all"] = "needed"


class ActivitiesSelection(_Section):
    """Open activities of migrating records always migrate; done ones by the window (measured
    from when they were marked done, else their due date)."""

    done: Window = Window(policy="within", months=12)


class AttachedSelection(_Section):
    """``attached``: records attached to something that migrates; ``none``: archive all."""

    policy: Literal["attached", "none"] = "attached"


class SelectionConfig(_Section):
    """What migrates. Windows count back from ``reference_date``; left out, it is the date of
    the newest ``update_time`` in the extracted data (never the wall clock, so a re-run
    decides the same)."""

    reference_date: dt.date | None = None
    deals: DealsSelection = DealsSelection()
    leads: LeadsSelection = LeadsSelection()
    persons: PersonsSelection = PersonsSelection()
    organizations: OrganizationsSelection = OrganizationsSelection()
    activities: ActivitiesSelection = ActivitiesSelection()
    notes: AttachedSelection = AttachedSelection()
    mail_messages: AttachedSelection = AttachedSelection()


class WarehouseConfig(_Section):
    """How the stages use the DuckDB file. DuckDB spills to disk beyond ``memory_limit``, so a
    small limit costs some speed, never correctness; DuckDB's own default (80 % of the
    machine's memory) would let one stage crowd out everything else."""

    memory_limit: str = Field("2GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


class MigrationConfig(_Section):
    """The whole file. Every section has defaults, so an empty file is valid."""

    warehouse: WarehouseConfig = WarehouseConfig()
    phones: PhonesConfig = PhonesConfig()
    currency: CurrencyConfig = CurrencyConfig()
    dedup: DedupConfig = DedupConfig()
    selection: SelectionConfig = SelectionConfig()
    mapping: MappingConfig = MappingConfig()


def config_path() -> Path:
    """The file :func:`load_config` reads (see the module docstring for the order)."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser().resolve()
    project_file = settings.PROJECT_ROOT / "migration.toml"
    return project_file if project_file.exists() else DEFAULT_CONFIG


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key (check the spelling; see default_config.toml)"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    return f"{where}: {message} (got {error['input']!r})"


def parse_config(text: str, origin: str = "<string>") -> MigrationConfig:
    """Validate TOML ``text``; errors name ``origin``, every bad key and why."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return MigrationConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  {_describe(error)}" for error in exc.errors())
        raise ConfigError(f"{origin}: invalid migration config:\n{problems}") from None


def load_config(path: Path | None = None) -> MigrationConfig:
    """Read and validate the config file (``path``, else :func:`config_path`)."""
    path = path or config_path()
    if not path.exists():
        raise ConfigError(f"{path}: config file not found (set {CONFIG_ENV} or create it)")
    return parse_config(path.read_text(encoding="utf-8"), str(path))
