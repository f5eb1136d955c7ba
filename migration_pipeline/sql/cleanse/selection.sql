-- clean.selection: one row per extracted record of every entity the migration handles (the
-- raw table's name in `entity`): `migrate`, `archive` (by policy, exported for the customer),
-- `merged` (into `merged_into`: a surviving person, organization or participant) or `failed`
-- (an error that must be fixed, e.g. an unknown currency), always with the reason. Every raw
-- record appears exactly once (the asset's blocking check proves it).
create or replace table clean.selection as
select entity, record_id, decision, reason, merged_into
from (
    select 'deals' as entity, id::VARCHAR as record_id, decision, reason,
        null::VARCHAR as merged_into, id as n
    from selected_deals
    union all
    select 'leads', id, decision, reason, null, null from selected_leads
    union all
    select 'persons', id::VARCHAR, decision, reason, merged_into, id from selected_persons
    union all
    select 'organizations', id::VARCHAR, decision, reason, merged_into, id
    from selected_organizations
    union all
    select 'activities', id::VARCHAR, decision, reason, null, id from selected_activities
    union all
    select 'notes', id::VARCHAR, decision, reason, null, id from selected_notes
    union all
    select 'deal_participants', id::VARCHAR, decision, reason, merged_into, id
    from selected_deal_participants
    union all
    select 'deal_followers', id, decision, reason, null, null from selected_deal_followers
    union all
    select 'mail_messages', id::VARCHAR, decision, reason, null, id from selected_mail_messages
)
order by entity, n, record_id
