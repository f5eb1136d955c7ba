-- Selection of persons: merged ones are `merged` into their survivor; deleted ones never
-- migrate; a person migrates when something migrating needs it (the contact of a deal or
-- lead, a participant of a deal: the first need is the reason) or by the persons policy
-- (`all`, or `with_contact`: a valid phone or e-mail); otherwise it is archived.
create or replace temp table selected_persons as
with needs as (
    select d.person_id as id, format('contact of deal {}', d.id) as need, 1 as kind, d.id as n
    from clean.deals d
    join selected_deals s on s.id = d.id
    where s.decision = 'migrate' and d.person_id is not null
    union all
    select p.person_id, format('participant of deal {}', p.deal_id), 2, p.deal_id
    from clean.deal_participants p
    join selected_deals s on s.id = p.deal_id
    where s.decision = 'migrate' and p.active_flag and p.person_id is not null
    union all
    select l.person_id, format('contact of lead {}', l.id), 3, null
    from clean.leads l
    join selected_leads s on s.id = l.id
    where s.decision = 'migrate' and l.person_id is not null
),
first_need as (
    select id, need
    from needs
    qualify row_number() over (partition by id order by kind, n, need) = 1
)
select
    p.id,
    case
        when p.status = 'merged' then 'merged'
        when p.status = 'deleted' then 'archive'
        when f.need is not null or r.persons_policy = 'all' then 'migrate'
        when r.persons_policy = 'with_contact' and (len(p.phones) > 0 or len(p.emails) > 0)
            then 'migrate'
        else 'archive'
    end as decision,
    case
        when p.status = 'merged' then format('merged into person {}', p.survivor_id)
        when p.status = 'deleted' then 'deleted in Pipedrive'
        when f.need is not null then f.need
        when r.persons_policy = 'all' then 'persons policy: all'
        when r.persons_policy = 'with_contact' and (len(p.phones) > 0 or len(p.emails) > 0)
            then 'has a valid phone or e-mail (persons policy: with_contact)'
        else format('nothing migrating needs it (persons policy: {})', r.persons_policy)
    end as reason,
    case when p.status = 'merged' then p.survivor_id::VARCHAR end as merged_into
from clean.persons p
cross join clean.selection_rules r
left join first_need f on f.id = p.id
