-- Selection of deal followers (no amoCRM equivalent: kept on the lead): a follower migrates
-- with its deal. Record id: `deal_id:user_id`.
create or replace temp table selected_deal_followers as
with rules as (
    select
        f.deal_id,
        f.user_id,
        blocked_by('deal', f.deal_id::VARCHAR, s.decision, s.reason) as blocked
    from raw.deal_followers f
    left join selected_deals s on s.id = f.deal_id
)
select
    deal_id::VARCHAR || ':' || user_id::VARCHAR as id,
    coalesce(blocked.decision, 'migrate') as decision,
    coalesce(blocked.reason, format('follower of migrating deal {} (kept on the lead)', deal_id))
        as reason
from rules
