-- clean.amounts: one row per deal and per leads-inbox lead: its value converted to the
-- amoCRM account currency at the recorded rate, next to the original value, currency, rate,
-- rate date and source.
--
-- Rounding rule: amoCRM prices are whole units, so value x rate is computed in exact decimal
-- arithmetic (value read as DECIMAL(38, 8): 2.675 stays 2.675, not 2.67499…) and rounded half
-- away from zero (2.5 → 3, -2.5 → -3). No value → no price, and no error.
--
-- A value whose currency has no rate is an error for that record, never a silent zero:
-- "unknown currency XYZ: add a rate to the config". The selection marks it failed.
create or replace table clean.amounts as
with amounts as (
    select 'deals' as entity, id::VARCHAR as record_id, value,
        nullif(upper(trim(currency)), '') as currency
    from raw.deals
    union all
    select 'leads', id, value_amount, nullif(upper(trim(value_currency)), '')
    from raw.leads
)
select
    a.entity,
    a.record_id,
    a.value,
    a.currency,
    r.rate,
    r.rate_date,
    r.source as rate_source,
    r.account_currency,
    case
        when a.value is not null and r.rate is not null
            then round(a.value::DECIMAL(38, 8) * r.rate)::BIGINT
    end as price,
    case
        when a.value is null then null
        when a.currency is null and a.value <> 0
            then format('value {} without a currency: set one in Pipedrive or add it here', a.value)
        when a.currency is null then null
        when r.rate is null then format('unknown currency {}: add a rate to the config', a.currency)
    end as error
from amounts a
left join clean.currency_rates r on r.currency = a.currency
order by a.entity, a.record_id
