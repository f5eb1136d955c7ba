-- What the survivor of a person cluster is chosen by, for every clustered person:
-- completeness (name parts, organization, valid phones and e-mails, labels, filled custom
-- fields), the last update, and links (deals, leads, activities, notes, participations).
create or replace temp table person_profile as
with links as (
    select person_id as id, count(*) as links
    from (
        select person_id from raw.deals
        union all select person_id from raw.leads
        union all select person_id from raw.activities
        union all select person_id from raw.notes
        union all select person_id from raw.deal_participants
    )
    where person_id is not null
    group by person_id
),
phones as (
    select person_id as id, count(distinct e164) as n
    from clean.phones where e164 is not null group by person_id
),
emails as (
    select person_id as id, count(distinct lower(email)) as n
    from clean.emails where email is not null group by person_id
)
select
    p.id,
    (nullif(trim(p.name), '') is not null)::INTEGER
        + (nullif(trim(p.first_name), '') is not null)::INTEGER
        + (nullif(trim(p.last_name), '') is not null)::INTEGER
        + (p.org_id is not null)::INTEGER
        + coalesce(ph.n, 0)
        + coalesce(em.n, 0)
        + (coalesce(json_array_length(p.label_ids), 0) > 0)::INTEGER
        + coalesce(len(list_filter(
            json_keys(p.custom_fields),
            lambda k: json_type(p.custom_fields, '$."' || k || '"') <> 'NULL'
        )), 0) as completeness,
    p.update_time,
    coalesce(l.links, 0) as links
from raw.persons p
join (select distinct node from cc_labels) c on c.node = p.id
left join links l on l.id = p.id
left join phones ph on ph.id = p.id
left join emails em on em.id = p.id
