-- Selection of activities. An activity hangs on its deal, else its lead, else its person,
-- else its organization (the first it has). Deleted ones never migrate; one whose parent
-- does not migrate follows it (archived, or failed with it); open activities of migrating
-- parents always migrate; done ones by the window (marked done, else due date).
create or replace temp table selected_activities as
with activities as (
    select
        a.*,
        case
            when a.deal_id is not null then 'deal'
            when a.lead_id is not null then 'lead'
            when a.person_id is not null then 'person'
            when a.org_id is not null then 'organization'
        end as parent_kind,
        coalesce(a.deal_id::VARCHAR, a.lead_id, a.person_id::VARCHAR, a.org_id::VARCHAR)
            as parent_id
    from clean.activities a
),
rules as (
    select
        a.id,
        a.is_deleted,
        a.done,
        a.parent_kind,
        a.parent_id,
        a.problems,
        blocked_by(a.parent_kind, a.parent_id, p.decision, p.reason) as blocked,
        window_rule(
            format('done activity of migrating {} {}, done', a.parent_kind, a.parent_id),
            r.activities_done_policy, r.activities_done_months,
            coalesce(utc_day(a.marked_as_done_time), a.due_date), r.reference_date
        ) as done_rule
    from activities a
    cross join clean.selection_rules r
    left join selected_parents p on p.kind = a.parent_kind and p.id = a.parent_id
)
select
    id,
    case
        when is_deleted or parent_kind is null then 'archive'
        when blocked is not null then blocked.decision
        when not done or done_rule.migrate then 'migrate'
        else 'archive'
    end as decision,
    case
        when is_deleted then 'deleted in Pipedrive'
        when parent_kind is null
            then coalesce(problems[1], 'not linked to a deal, lead, person or organization')
        when blocked is not null then blocked.reason
        when not done then format('open activity of migrating {} {}', parent_kind, parent_id)
        else done_rule.reason
    end as reason
from rules
