-- Selection of notes. A note hangs on its deal, else its lead, else its person, else its
-- organization. Deleted ones never migrate; with notes policy `attached` a note of a
-- migrating parent migrates and one of a non-migrating parent follows it; policy `none`
-- archives every note.
create or replace temp table selected_notes as
with notes as (
    select
        n.*,
        case
            when n.deal_id is not null then 'deal'
            when n.lead_id is not null then 'lead'
            when n.person_id is not null then 'person'
            when n.org_id is not null then 'organization'
        end as parent_kind,
        coalesce(n.deal_id::VARCHAR, n.lead_id, n.person_id::VARCHAR, n.org_id::VARCHAR)
            as parent_id
    from clean.notes n
),
rules as (
    select
        n.id,
        n.active_flag,
        n.parent_kind,
        n.parent_id,
        n.problems,
        r.notes_policy,
        blocked_by(n.parent_kind, n.parent_id, p.decision, p.reason) as blocked
    from notes n
    cross join clean.selection_rules r
    left join selected_parents p on p.kind = n.parent_kind and p.id = n.parent_id
)
select
    id,
    case
        when not active_flag or notes_policy = 'none' or parent_kind is null then 'archive'
        when blocked is not null then blocked.decision
        else 'migrate'
    end as decision,
    case
        when not active_flag then 'deleted in Pipedrive'
        when notes_policy = 'none' then 'notes policy: none'
        when parent_kind is null
            then coalesce(problems[1], 'not linked to a deal, lead, person or organization')
        when blocked is not null then blocked.reason
        else format('note of migrating {} {}', parent_kind, parent_id)
    end as reason
from rules
