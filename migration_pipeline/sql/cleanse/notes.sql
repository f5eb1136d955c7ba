-- clean.notes: one row per note, person and organization re-pointed to the survivors
-- (originals beside them); `problems` lists references that cannot be kept.
create or replace table clean.notes as
select
    n.id,
    n.content,
    n.deal_id,
    n.lead_id,
    p.survivor_id as person_id,
    n.person_id as source_person_id,
    o.survivor_id as org_id,
    n.org_id as source_org_id,
    n.user_id,
    coalesce(n.active_flag, true) as active_flag,
    n.add_time,
    n.update_time,
    list_filter(
        [
            case when n.deal_id is not null and d.id is null
                then format('deal {} not found', n.deal_id) end,
            reference_problem('person', n.person_id, p.status),
            reference_problem('organization', n.org_id, o.status)
        ],
        lambda problem: problem is not null
    ) as problems
from raw.notes n
left join raw.deals d on d.id = n.deal_id
left join clean.persons p on p.id = n.person_id
left join clean.organizations o on o.id = n.org_id
order by n.id
