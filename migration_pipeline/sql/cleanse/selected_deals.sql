-- Selection of deals: deleted ones never migrate; archived ones by the archived window
-- (archive time); open ones always; won and lost ones by their windows (close time). A deal
-- that would migrate but has no place in amoCRM (placement_error) or whose value cannot be
-- converted fails with that error.
create or replace temp table selected_deals as
with rules as (
    select
        d.id,
        coalesce(d.placement_error, d.conversion_error) as error,
        case
            when d.is_deleted then {'migrate': false, 'reason': 'deleted in Pipedrive'}
            when d.is_archived then window_rule(
                'archived in Pipedrive', r.deals_archived_policy, r.deals_archived_months,
                utc_day(coalesce(d.archive_time, d.update_time)), r.reference_date
            )
            when d.status = 'open' then {'migrate': true, 'reason': 'open deal'}
            when d.status = 'won' then window_rule(
                'won', r.deals_won_policy, r.deals_won_months,
                utc_day(coalesce(d.won_time, d.close_time)), r.reference_date
            )
            when d.status = 'lost' then window_rule(
                'lost', r.deals_lost_policy, r.deals_lost_months,
                utc_day(coalesce(d.lost_time, d.close_time)), r.reference_date
            )
            else {'migrate': false, 'reason': format('unknown status {}', d.status)}
        end as rule
    from clean.deals d
    cross join clean.selection_rules r
)
select
    id,
    case
        when not rule.migrate then 'archive'
        when error is not null then 'failed'
        else 'migrate'
    end as decision,
    case when rule.migrate and error is not null then error else rule.reason end as reason
from rules
