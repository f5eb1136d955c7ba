-- clean.leads: one row per leads-inbox lead, person and organization re-pointed to the
-- survivors, value converted (clean.amounts); `problems` as in clean.deals.
create or replace table clean.leads as
select
    l.id,
    l.title,
    l.owner_id,
    p.survivor_id as person_id,
    l.person_id as source_person_id,
    o.survivor_id as org_id,
    l.organization_id as source_org_id,
    coalesce(l.is_archived, false) as is_archived,
    l.source,
    a.value,
    a.currency,
    a.rate,
    a.rate_date,
    a.rate_source,
    a.account_currency,
    a.price,
    a.error as conversion_error,
    l.add_time,
    l.update_time,
    list_filter(
        [
            reference_problem('person', l.person_id, p.status),
            reference_problem('organization', l.organization_id, o.status),
            a.error
        ],
        lambda problem: problem is not null
    ) as problems
from raw.leads l
left join clean.persons p on p.id = l.person_id
left join clean.organizations o on o.id = l.organization_id
left join clean.amounts a on a.entity = 'leads' and a.record_id = l.id
order by l.id
