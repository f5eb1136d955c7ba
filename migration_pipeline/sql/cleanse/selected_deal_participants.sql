-- Selection of deal participants: one migrates (as an extra contact linked to the lead) when
-- its deal migrates, it is still active, and its person exists; one that merging made the
-- same contact as another participant of the deal is `merged` into that one.
create or replace temp table selected_deal_participants as
with rules as (
    select
        dp.*,
        blocked_by('deal', dp.deal_id::VARCHAR, s.decision, s.reason) as blocked
    from clean.deal_participants dp
    left join selected_deals s on s.id = dp.deal_id
)
select
    id,
    case
        when blocked is not null then blocked.decision
        when not active_flag or person_id is null then 'archive'
        when duplicate_of is not null then 'merged'
        else 'migrate'
    end as decision,
    case
        when blocked is not null then blocked.reason
        when not active_flag then 'removed from the deal in Pipedrive'
        when person_id is null then coalesce(problems[1], 'no person')
        when duplicate_of is not null
            then format('same contact as participant {} after merging duplicates', duplicate_of)
        else format('participant of migrating deal {}', deal_id)
    end as reason,
    case when blocked is null and active_flag and person_id is not null
        then duplicate_of::VARCHAR end as merged_into
from rules
