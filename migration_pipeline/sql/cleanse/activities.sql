-- clean.activities: one row per activity, person and organization re-pointed to the
-- survivors (originals beside them); `problems` lists references that cannot be kept (a
-- deal, person or organization missing or deleted).
create or replace table clean.activities as
select
    a.id,
    a.subject,
    a.type,
    a.owner_id,
    a.deal_id,
    a.lead_id,
    p.survivor_id as person_id,
    a.person_id as source_person_id,
    o.survivor_id as org_id,
    a.org_id as source_org_id,
    coalesce(a.done, false) as done,
    a.due_date,
    a.due_time,
    a.duration,
    a.marked_as_done_time,
    a.note,
    coalesce(a.is_deleted, false) as is_deleted,
    a.add_time,
    a.update_time,
    list_filter(
        [
            case when a.deal_id is not null and d.id is null
                then format('deal {} not found', a.deal_id) end,
            reference_problem('person', a.person_id, p.status),
            reference_problem('organization', a.org_id, o.status)
        ],
        lambda problem: problem is not null
    ) as problems
from raw.activities a
left join raw.deals d on d.id = a.deal_id
left join clean.persons p on p.id = a.person_id
left join clean.organizations o on o.id = a.org_id
order by a.id
