-- clean.currency_rates: one row per currency the config gives a rate for, plus the account
-- currency itself (rate 1): how many units of the amoCRM account currency one unit buys, on
-- which date, from which source. Parameters: account currency, then parallel lists of
-- currencies, rates (as text, read exactly as DECIMAL), dates and sources.
create or replace table clean.currency_rates as
select
    currency,
    rate::DECIMAL(28, 10) as rate,
    rate_date,
    source,
    account_currency
from (
    select
        unnest(?::VARCHAR[]) as currency,
        unnest(?::VARCHAR[]) as rate,
        unnest(?::DATE[]) as rate_date,
        unnest(?::VARCHAR[]) as source
)
cross join (select ?::VARCHAR as account_currency)
order by currency
