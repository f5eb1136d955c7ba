"""The migration config: packaged defaults, the file the environment names, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_pipeline import settings
from migration_pipeline.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ConfigError,
    MigrationConfig,
    config_path,
    load_config,
    parse_config,
)


def test_packaged_defaults_are_valid_and_cover_the_sandbox_currencies():
    config = load_config(DEFAULT_CONFIG)
    assert config.currency.account_currency == "RUB"
    rated = {rate.currency for rate in config.currency.rates}
    assert {"USD", "EUR", "UAH", "KZT", "PLN", "GBP"} <= rated
    assert {rate.source for rate in config.currency.rates} == {"sandbox defaults"}
    assert config.selection.reference_date is None  # derived from the data, not the clock


def test_an_empty_file_means_every_default():
    assert parse_config("") == MigrationConfig()


def test_which_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    project_file = settings.PROJECT_ROOT / "migration.toml"
    assert config_path() == (project_file if project_file.exists() else DEFAULT_CONFIG)
    named = tmp_path / "mine.toml"
    named.write_text('[phones]\ndefault_region = "UA"\n', encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(named))
    assert config_path() == named
    assert load_config().phones.default_region == "UA"


def test_missing_file_says_how_to_fix(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[phones]\ndefault_region = 'XX'", "phones.default_region: 'XX' is not a region"),
        ("[phones]\nfallback_regions = ['UA', 'ZZ']", "phones.fallback_regions.1"),
        ("[selection.deals]\nwon = { policy = 'within' }", "selection.deals.won: policy 'within' needs 'months'"),
        ("[selection.deals]\nwon = { policy = 'sometimes' }", "selection.deals.won.policy"),
        ("[selection.deals]\nlsot = { policy = 'all' }", "selection.deals.lsot: unknown key"),
        ("[selection.persons]\npolicy = 'everyone'", "selection.persons.policy"),
        ("[currency]\naccount_currency = 'rub'", "currency.account_currency"),
        ("[[currency.rates]]\ncurrency = 'USD'\nrate = -1\ndate = 2026-01-01\nsource = 'x'",
         "currency.rates.0.rate: Input should be greater than 0"),
        ("[[currency.rates]]\ncurrency = 'USD'\nrate = 90\nsource = 'x'",
         "currency.rates.0.date: required key is missing"),
        ("[[currency.rates]]\ncurrency = 'USD'\nrate = 1\ndate = 2026-01-01\nsource = 'a'\n"
         "[[currency.rates]]\ncurrency = 'USD'\nrate = 2\ndate = 2026-01-01\nsource = 'b'",
         "currency USD has more than one rate"),
        ("[dedup]\nmerge_score = 2\nreview_score = 5", "review_score must not be above merge_score"),
        ("[dedup]\ntax_id_field_pattern = '('", "not a valid regular expression"),
        ("[warehouse]\nmemory_limit = 'lots'", "warehouse.memory_limit"),
        ("[mapping]\nuser_overrides = { 'rep' = 'x@y.ru' }", "mapping.user_overrides"),
        ("[phones\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_errors_name_the_key_and_the_reason(text: str, message: str):
    with pytest.raises(ConfigError) as error:
        parse_config(text, "my.toml")
    assert str(error.value).startswith("my.toml: ")
    assert message in str(error.value)


def test_all_errors_are_reported_at_once():
    text = "[phones]\ndefault_region = 'XX'\n[selection.persons]\npolicy = 'everyone'\n"
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    assert "phones.default_region" in str(error.value)
    assert "selection.persons.policy" in str(error.value)
