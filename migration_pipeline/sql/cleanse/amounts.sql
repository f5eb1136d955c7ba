-- clean.amounts: one row per deal and per leads-inbox lead: its value converted to the
-- amoCRM account currency at the recorded rate, next to the original value, currency, rate,
-- rate date and source.
--
-- Rounding rule: amoCRM prices are whole units, so value x rate is computed in exact decimal
-- arithmetic (value read as DECIMAL(38, 8): 2.675 stays 2.675, not 2.67499…) and rounded half
-- away from zero (2.5 → 3, -2.5 → -3). No value → no price, and no error.
--
-- A value whose currency has no rate is an error for that record, never a silent zero:
-- "unknown currency XYZ: add a rate to the config". So is a price amoCRM cannot store: a lead's
-- budget is a whole number from 0 to 2,147,483,647 (a signed 32-bit integer). A value too
-- large for exact arithmetic (|value × rate| ≥ 10^15, e.g. a mistyped 1e18) has no price at
-- all rather than failing the whole table. The selection marks such records failed.
create or replace table clean.amounts as
with amounts as (
    select 'deals' as entity, id::VARCHAR as record_id, value,
        nullif(upper(trim(currency)), '') as currency
    from raw.deals
    union all
    select 'leads', id, value_amount, nullif(upper(trim(value_currency)), '')
    from raw.leads
),
converted as (
    select
        a.*,
        r.rate,
        r.rate_date,
        r.source as rate_source,
        r.account_currency,
        case
            when a.value is not null and r.rate is not null and isfinite(a.value)
                and abs(a.value * r.rate::DOUBLE) < 1e15
                then round(a.value::DECIMAL(38, 8) * r.rate)::BIGINT
        end as price
    from amounts a
    left join clean.currency_rates r on r.currency = a.currency
)
select
    entity,
    record_id,
    value,
    currency,
    rate,
    rate_date,
    rate_source,
    account_currency,
    price,
    case
        when value is null then null
        when currency is null and value <> 0
            then format('value {} without a currency: set one in Pipedrive or add it here', value)
        when currency is null then null
        when rate is null then format('unknown currency {}: add a rate to the config', currency)
        when price is null or price > 2147483647 then format(
            'value {} {} is over the largest amoCRM budget (2147483647 {}) once converted',
            value, currency, account_currency
        )
        when price < 0 then format(
            'negative value {} {}: an amoCRM budget cannot be negative; fix it in Pipedrive',
            value, currency
        )
    end as error
from converted
order by entity, record_id
