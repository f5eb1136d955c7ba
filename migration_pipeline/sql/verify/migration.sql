-- report.migration: per extracted entity type, extracted = migrated + merged + archived +
-- failed + quarantined; `adds_up` says whether it does (the report's check fails otherwise).
-- `extracted` counts the raw table's rows (as the pre-migration report counted them) plus
-- what extraction quarantined for it, so the sum is proved against what Pipedrive served, not
-- against the outcomes themselves.
create or replace table report.migration as
with
extracted as (
    select item as entity, value as n from report.pre_migration
    where section = 'extracted records'
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
