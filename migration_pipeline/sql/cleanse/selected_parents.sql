-- Every record an activity or note can hang on (deal, lead, person, organization) with its
-- decision: what activities and notes follow.
create or replace temp table selected_parents as
select 'deal' as kind, id::VARCHAR as id, decision, reason from selected_deals
union all
select 'lead', id, decision, reason from selected_leads
union all
select 'person', id::VARCHAR, decision, reason from selected_persons
union all
select 'organization', id::VARCHAR, decision, reason from selected_organizations
