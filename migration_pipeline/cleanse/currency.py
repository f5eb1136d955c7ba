"""Money in the amoCRM account currency: the rates table from the config, and every deal and
lead value converted at it (``sql/cleanse/amounts.sql``).

amoCRM has one currency per account and integer prices; Pipedrive has one currency per deal.
A value is converted as ``value × rate`` in exact decimal arithmetic and rounded **half away
from zero** to whole units of the account currency (2.5 → 3, −2.5 → −3), the rule people
expect from paper and the one DuckDB's ``round`` applies to decimals. The original value,
currency, rate, rate date and source stay beside the result. A currency without a rate is a
per-record error ("unknown currency XYZ: add a rate to the config"), never a silent zero.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import duckdb

from ..config import CurrencyConfig
from ..sql import read_sql

VALUE_SCALE = Decimal("0.00000001")  # values are read as DECIMAL(38, 8), as the SQL does


def to_account_currency(value: Decimal | float | str, rate: Decimal | str) -> int:
    """``value`` (in its currency) × ``rate`` (account units per unit), rounded half away from
    zero to a whole unit: the rule ``amounts.sql`` applies, here for tests and reasoning.
    (``ROUND_HALF_UP`` in :mod:`decimal` rounds ties away from zero for negatives too.)"""
    exact = Decimal(str(value)).quantize(VALUE_SCALE) * Decimal(str(rate))
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def build_currency_rates(con: duckdb.DuckDBPyConnection, config: CurrencyConfig) -> int:
    """Create ``clean.currency_rates`` from the config (plus the account currency at rate 1
    when the config does not list it). Returns the number of currencies."""
    rates = {rate.currency: rate for rate in config.rates}
    rows = [(r.currency, str(r.rate), r.date, r.source) for r in rates.values()]
    if config.account_currency not in rates:
        rows.append((config.account_currency, "1", None, "account currency"))
    rows.sort()
    currencies, values, dates, sources = (list(column) for column in zip(*rows, strict=True))
    con.execute(
        read_sql("cleanse/currency_rates.sql"),
        [currencies, values, dates, sources, config.account_currency],
    )
    return len(rows)


def build_amounts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Create ``clean.amounts``; returns how many values were converted and how many failed."""
    con.execute(read_sql("cleanse/amounts.sql"))
    converted, failed = con.execute(
        "select count(price), count(error) from clean.amounts"
    ).fetchall()[0]
    return {"converted": int(converted), "conversion_errors": int(failed)}
