-- Selection of organizations: merged ones are `merged` into their survivor; deleted ones
-- never migrate; one migrates when a migrating deal, lead or person belongs to it (the first
-- is the reason) or by the organizations policy (`all`); otherwise it is archived.
create or replace temp table selected_organizations as
with needs as (
    select d.org_id as id, format('organization of deal {}', d.id) as need, 1 as kind, d.id as n
    from clean.deals d
    join selected_deals s on s.id = d.id
    where s.decision = 'migrate' and d.org_id is not null
    union all
    select l.org_id, format('organization of lead {}', l.id), 2, null
    from clean.leads l
    join selected_leads s on s.id = l.id
    where s.decision = 'migrate' and l.org_id is not null
    union all
    select p.org_id, format('organization of person {}', p.id), 3, p.id
    from clean.persons p
    join selected_persons s on s.id = p.id
    where s.decision = 'migrate' and p.org_id is not null
),
first_need as (
    select id, need
    from needs
    qualify row_number() over (partition by id order by kind, n, need) = 1
)
select
    o.id,
    case
        when o.status = 'merged' then 'merged'
        when o.status = 'deleted' then 'archive'
        when f.need is not null or r.organizations_policy = 'all' then 'migrate'
        else 'archive'
    end as decision,
    case
        when o.status = 'merged' then format('merged into organization {}', o.survivor_id)
        when o.status = 'deleted' then 'deleted in Pipedrive'
        when f.need is not null then f.need
        when r.organizations_policy = 'all' then 'organizations policy: all'
        else format(
            'nothing migrating needs it (organizations policy: {})', r.organizations_policy
        )
    end as reason,
    case when o.status = 'merged' then o.survivor_id::VARCHAR end as merged_into
from clean.organizations o
cross join clean.selection_rules r
left join first_need f on f.id = o.id
