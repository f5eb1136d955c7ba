-- One row per person that takes part in duplicate detection (deleted persons do not: they
-- never migrate), with what it is compared on: its name as written, its organization (the
-- surviving one, so persons of two merged companies count as colleagues), its phones (the
-- last 9 digits of the E.164 number: a national number read in the wrong region still meets
-- its correctly read copy, and 10^9 endings rarely collide),
-- its e-mails (lower case; an invalid one by its repair suggestion, if any) and their
-- corporate domains (free-mail ones say nothing).
create or replace temp table person_features as
with phones as (
    select person_id, list_sort(list_distinct(list(right(e164, 9)))) as phones
    from clean.phones
    where e164 is not null
    group by person_id
),
emails as (
    select
        person_id,
        list_sort(list_distinct(list(match_key))) as emails,
        list_sort(list_distinct(
            list(domain) filter (where domain is not null and not is_free_mail)
        )) as domains
    from clean.emails
    where match_key is not null
    group by person_id
)
select
    p.id,
    coalesce(
        nullif(trim(p.name), ''), nullif(trim(concat_ws(' ', p.first_name, p.last_name)), '')
    ) as display_name,
    coalesce(o.survivor_id, p.org_id) as org_id,
    coalesce(ph.phones, []) as phones,
    coalesce(em.emails, []) as emails,
    coalesce(em.domains, []) as domains
from raw.persons p
left join clean.organization_duplicates o on o.id = p.org_id
left join phones ph on ph.person_id = p.id
left join emails em on em.person_id = p.id
where not coalesce(p.is_deleted, false)
