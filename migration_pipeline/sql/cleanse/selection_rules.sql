-- clean.selection_rules: the rules the selection applies, in one row, as configured: so a
-- reader of clean.selection can see every threshold. The reference date is the configured
-- one (parameter 1) or, when none is, the UTC day of the newest update_time in the
-- extracted data: never the wall clock, so re-running on the same data decides the same.
create or replace table clean.selection_rules as
with newest as (
    select max(newest) as newest
    from (
        select max(update_time) as newest from raw.deals
        union all select max(update_time) from raw.leads
        union all select max(update_time) from raw.persons
        union all select max(update_time) from raw.organizations
        union all select max(update_time) from raw.activities
        union all select max(update_time) from raw.notes
    )
),
configured as (select ?::DATE as reference_date)
select
    coalesce(c.reference_date, timezone('UTC', n.newest)::DATE) as reference_date,
    case when c.reference_date is not null then 'config'
        else 'newest update_time in the data' end as reference_date_source,
    ?::VARCHAR as deals_won_policy,
    ?::INTEGER as deals_won_months,
    ?::VARCHAR as deals_lost_policy,
    ?::INTEGER as deals_lost_months,
    ?::VARCHAR as deals_archived_policy,
    ?::INTEGER as deals_archived_months,
    ?::VARCHAR as leads_archived_policy,
    ?::INTEGER as leads_archived_months,
    ?::VARCHAR as persons_policy,
    ?::VARCHAR as organizations_policy,
    ?::VARCHAR as activities_done_policy,
    ?::INTEGER as activities_done_months,
    ?::VARCHAR as notes_policy,
    ?::VARCHAR as mail_messages_policy
from configured c
cross join newest n
