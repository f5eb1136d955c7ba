-- Selection of e-mails linked to deals (each becomes a note on the lead): with mail policy
-- `attached` an e-mail migrates with its deal; policy `none` archives every e-mail.
create or replace temp table selected_mail_messages as
with rules as (
    select
        m.id,
        m.deal_id,
        r.mail_messages_policy,
        blocked_by('deal', m.deal_id::VARCHAR, s.decision, s.reason) as blocked
    from raw.mail_messages m
    cross join clean.selection_rules r
    left join selected_deals s on s.id = m.deal_id
)
select
    id,
    case
        when mail_messages_policy = 'none' then 'archive'
        else coalesce(blocked.decision, 'migrate')
    end as decision,
    case
        when mail_messages_policy = 'none' then 'mail_messages policy: none'
        else coalesce(blocked.reason, format('e-mail of migrating deal {} (a note on the lead)', deal_id))
    end as reason
from rules
