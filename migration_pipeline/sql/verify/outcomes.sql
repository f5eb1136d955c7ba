-- report.outcomes: where every extracted record ended, one row each: `migrated` (with its
-- amoCRM id), `merged` (into a survivor), `archived` (by the selection policy, exported),
-- `failed` (with the reason: the selection's, amoCRM's, or the load's state) or `quarantined`
-- (at extraction: no usable key, or a repeated copy of a key).
--
-- A record the selection migrates is `migrated` when the ledger holds what it became as
-- created: a deal or leads-inbox lead → lead, a person → contact, an organization → company,
-- an activity → task, a note or e-mail → note, a deal's followers → the one followers note on
-- its lead, a participant → the link of its contact on the deal's lead (both created).
create or replace table report.outcomes as
with
targets as (
    select s.entity, s.record_id,
        case s.entity
            when 'deals' then 'lead' when 'leads' then 'lead'
            when 'persons' then 'contact' when 'organizations' then 'company'
            when 'activities' then 'task' else 'note'
        end as kind,
        case s.entity
            when 'leads' then 'lead:' || s.record_id
            when 'notes' then 'note:' || s.record_id
            when 'mail_messages' then 'mail:' || s.record_id
            when 'deal_followers' then 'followers:' || split_part(s.record_id, ':', 1)
            else s.record_id
        end as source_key
    from clean.selection s
    where s.decision = 'migrate' and s.entity <> 'deal_participants'
),
loaded as (
    select t.entity, t.record_id, l.state, l.amo_id, l.error
    from targets t
    left join ledger.entities l on l.kind = t.kind and l.source_key = t.source_key
    union all
    select s.entity, s.record_id,
        case when lead.state = 'created' and contact.state = 'created' then 'created'
            else coalesce(nullif(lead.state, 'created'), nullif(contact.state, 'created'))
        end,
        lead.amo_id,
        case
            when lead.state = 'failed' then 'its lead failed: ' || lead.error
            when contact.state = 'failed' then 'its contact failed: ' || contact.error
        end
    from clean.selection s
    join clean.deal_participants p on p.id::varchar = s.record_id
    left join ledger.entities lead on lead.kind = 'lead' and lead.source_key = p.deal_id::varchar
    left join ledger.entities contact
        on contact.kind = 'contact' and contact.source_key = p.person_id::varchar
    where s.entity = 'deal_participants' and s.decision = 'migrate'
)
select s.entity, s.record_id,
    case
        when s.decision = 'merged' then 'merged'
        when s.decision = 'archive' then 'archived'
        when s.decision = 'failed' then 'failed'
        when l.state = 'created' then 'migrated'
        else 'failed'
    end as outcome,
    case
        when s.decision <> 'migrate' then s.reason
        when l.state = 'created' then null
        when l.state = 'failed' then coalesce(l.error, 'amoCRM rejected it')
        when l.state is null then 'selected to migrate but not loaded yet: run its load partition'
        else 'not loaded yet (ledger: ' || l.state || '): re-run its load partition'
    end as reason,
    s.merged_into,
    l.amo_id
from clean.selection s
left join loaded l on l.entity = s.entity and l.record_id = s.record_id
union all
select tbl, coalesce(record_key, '(no key)'), 'quarantined', reason, null, null
from raw.quarantine
order by all
