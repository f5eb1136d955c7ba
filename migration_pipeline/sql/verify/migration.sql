-- report.migration: per extracted entity type, extracted = migrated + merged + archived +
-- failed + quarantined; `adds_up` says whether it does (the report's check fails otherwise).
-- `extracted` counts the raw table's rows plus what extraction quarantined for it, so the
-- sum is proved against what Pipedrive served, not against the outcomes themselves.
create or replace table report.migration as
with
extracted as (
    select 'deals' as entity, count(*) as n from raw.deals
    union all select 'leads', count(*) from raw.leads
    union all select 'persons', count(*) from raw.persons
    union all select 'organizations', count(*) from raw.organizations
    union all select 'activities', count(*) from raw.activities
    union all select 'notes', count(*) from raw.notes
    union all select 'deal_participants', count(*) from raw.deal_participants
    union all select 'deal_followers', count(*) from raw.deal_followers
    union all select 'mail_messages', count(*) from raw.mail_messages
),
quarantined as (
    select tbl as entity, count(*) as n from raw.quarantine group by all
),
outcomes as (
    select entity,
        count(*) filter (where outcome = 'migrated') as migrated,
        count(*) filter (where outcome = 'merged') as merged,
        count(*) filter (where outcome = 'archived') as archived,
        count(*) filter (where outcome = 'failed') as failed,
        count(*) filter (where outcome = 'quarantined') as quarantined
    from report.outcomes group by all
)
select e.entity,
    e.n + coalesce(q.n, 0) as extracted,
    coalesce(o.migrated, 0) as migrated,
    coalesce(o.merged, 0) as merged,
    coalesce(o.archived, 0) as archived,
    coalesce(o.failed, 0) as failed,
    coalesce(o.quarantined, 0) as quarantined,
    e.n + coalesce(q.n, 0) = coalesce(o.migrated, 0) + coalesce(o.merged, 0)
        + coalesce(o.archived, 0) + coalesce(o.failed, 0) + coalesce(o.quarantined, 0) as adds_up
from extracted e
left join quarantined q using (entity)
left join outcomes o using (entity)
order by e.entity
