-- Selection of leads-inbox leads: open ones always migrate, archived ones by the archived
-- window (their last update); a value that cannot be converted fails the lead.
create or replace temp table selected_leads as
with rules as (
    select
        l.id,
        l.conversion_error,
        case
            when l.is_archived then window_rule(
                'archived in Pipedrive', r.leads_archived_policy, r.leads_archived_months,
                utc_day(l.update_time), r.reference_date
            )
            else {'migrate': true, 'reason': 'open lead'}
        end as rule
    from clean.leads l
    cross join clean.selection_rules r
)
select
    id,
    case
        when not rule.migrate then 'archive'
        when conversion_error is not null then 'failed'
        else 'migrate'
    end as decision,
    case when rule.migrate and conversion_error is not null then conversion_error
        else rule.reason end as reason
from rules
