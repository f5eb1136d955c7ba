"""Money: the SQL conversion rounds like the documented rule; unknown currencies are errors."""

from __future__ import annotations

import random
from decimal import Decimal

import duckdb
import pytest

from migration_pipeline.cleanse.currency import build_currency_rates, to_account_currency
from migration_pipeline.config import CurrencyConfig, Rate
from migration_pipeline.sql import read_sql


@pytest.mark.parametrize(
    ("value", "rate", "price"),
    [
        (2.5, "1", 3),
        (-2.5, "1", -3),
        (0.5, "1", 1),
        (1.49, "1", 1),
        (2.675, "100", 268),  # 2.675 read as a decimal, not as 2.67499999… in binary
        (1000.50, "80.5", 80540),
        (1, "0.162", 0),
        (3.1, "0.162", 1),  # 0.5022
        (0, "93.2", 0),
    ],
)
def test_rounding_rule(value: float, rate: str, price: int):
    assert to_account_currency(value, rate) == price


def test_sql_matches_the_rule_on_random_values():
    rng = random.Random(5)
    rates = [
        Rate(currency=code, rate=Decimal(rate), date="2026-11-01", source="test")
        for code, rate in (("USD", "80.5"), ("KZT", "0.162"), ("EUR", "93.2"), ("JPY", "0.5"))
    ]
    values = [round(rng.uniform(-10_000, 10_000), rng.choice((0, 1, 2))) for _ in range(2000)]
    values += [v + 0.5 for v in range(-20, 20)]  # exact ties
    currencies = [rng.choice(["USD", "KZT", "EUR", "JPY", "RUB"]) for _ in values]
    con = duckdb.connect()
    con.execute("create schema clean")
    con.execute("create schema raw")
    con.execute("create table raw.deals (id BIGINT, value DOUBLE, currency VARCHAR)")
    con.execute("create table raw.leads (id VARCHAR, value_amount DOUBLE, value_currency VARCHAR)")
    con.executemany(
        "insert into raw.deals values (?, ?, ?)",
        [(i, v, c) for i, (v, c) in enumerate(zip(values, currencies, strict=True))],
    )
    build_currency_rates(con, CurrencyConfig(account_currency="RUB", rates=tuple(rates)))
    con.execute(read_sql("cleanse/amounts.sql"))
    by_code = {rate.currency: rate.rate for rate in rates} | {"RUB": Decimal(1)}
    rows = con.execute("select record_id::BIGINT, price from clean.amounts").fetchall()
    for record_id, price in rows:
        assert price == to_account_currency(values[record_id], by_code[currencies[record_id]])


def test_unknown_and_missing_currencies_are_errors_not_zeros():
    con = duckdb.connect()
    con.execute("create schema clean")
    con.execute("create schema raw")
    con.execute("create table raw.deals (id BIGINT, value DOUBLE, currency VARCHAR)")
    con.execute("create table raw.leads (id VARCHAR, value_amount DOUBLE, value_currency VARCHAR)")
    con.execute(
        "insert into raw.deals values (1, 10, 'xyz'), (2, 10, null), (3, 0, null), (4, null, 'XYZ')"
    )
    build_currency_rates(con, CurrencyConfig(account_currency="RUB"))
    con.execute(read_sql("cleanse/amounts.sql"))
    rows = con.execute("select record_id, price, error from clean.amounts order by all").fetchall()
    assert rows == [
        ("1", None, "unknown currency XYZ: add a rate to the config"),
        ("2", None, "value 10.0 without a currency: set one in Pipedrive or add it here"),
        ("3", None, None),
        ("4", None, None),
    ]


def test_budgets_amocrm_cannot_hold_are_errors_and_never_stop_the_table():
    # A lead's budget is a whole number from 0 to 2^31-1. 1e20 × 80.5 overflows DECIMAL(38):
    # one such deal used to fail the whole of clean.amounts, and with it the cleanse.
    con = duckdb.connect()
    con.execute("create schema clean")
    con.execute("create schema raw")
    con.execute("create table raw.deals (id BIGINT, value DOUBLE, currency VARCHAR)")
    con.execute("create table raw.leads (id VARCHAR, value_amount DOUBLE, value_currency VARCHAR)")
    con.execute(
        "insert into raw.deals values (1, 2147483647, 'RUB'), (2, 2147483648, 'RUB'), "
        "(3, -1, 'RUB'), (4, 1e20, 'USD'), (5, 1e30, 'RUB'), (6, 30000000, 'USD'), (7, -0.4, 'RUB')"
    )
    rates = (Rate(currency="USD", rate=Decimal("80.5"), date="2026-11-01", source="test"),)
    build_currency_rates(con, CurrencyConfig(account_currency="RUB", rates=rates))
    con.execute(read_sql("cleanse/amounts.sql"))
    rows = con.execute("select record_id, price, error from clean.amounts order by all").fetchall()
    too_large = "is over the largest amoCRM budget (2147483647 RUB) once converted"
    assert rows == [
        ("1", 2147483647, None),
        ("2", 2147483648, f"value 2147483648.0 RUB {too_large}"),
        (
            "3",
            -1,
            "negative value -1.0 RUB: an amoCRM budget cannot be negative; fix it in Pipedrive",
        ),
        ("4", None, f"value 1e+20 USD {too_large}"),
        ("5", None, f"value 1e+30 RUB {too_large}"),
        ("6", 2415000000, f"value 30000000.0 USD {too_large}"),
        ("7", 0, None),  # rounds to 0: a budget amoCRM holds
    ]
