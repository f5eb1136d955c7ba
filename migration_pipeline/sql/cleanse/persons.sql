-- clean.persons: one row per extracted person. `status`: `active` (migrates as itself, or as
-- the survivor of its duplicates), `merged` (its data lives on in `survivor_id`) or `deleted`
-- (deleted in Pipedrive: never migrates). A survivor carries the union of its cluster's
-- valid phones (E.164, amoCRM type), valid e-mails and labels, its own first, each value
-- once; other rows carry their own. `org_id` is re-pointed to the surviving organization;
-- a reference that cannot be kept (organization missing or deleted) is null, and
-- `problems` says why, next to the phone and e-mail problems of the person's own values.
create or replace table clean.persons as
with members as (
    select
        p.id,
        case
            when coalesce(p.is_deleted, false) then 'deleted'
            when d.survivor_id is not null and d.survivor_id <> p.id then 'merged'
            else 'active'
        end as status,
        case when not coalesce(p.is_deleted, false) then coalesce(d.survivor_id, p.id) end
            as survivor_id
    from raw.persons p
    left join clean.person_duplicates d on d.id = p.id
),
carriers as (
    select survivor_id as carrier, id as member from members where status <> 'deleted'
    union all
    select id, id from members where status <> 'active'
),
phones as (
    select carrier as id, list({
        'value': e164, 'type': phone_type, 'original': original, 'person_id': person_id
    } order by own desc, is_primary desc, person_id, position) as phones
    from (
        select c.carrier, p.*, p.person_id = c.carrier as own
        from carriers c
        join clean.phones p on p.person_id = c.member
        where p.e164 is not null
        qualify row_number() over (
            partition by c.carrier, p.e164
            order by p.person_id = c.carrier desc, p.is_primary desc, p.person_id, p.position
        ) = 1
    )
    group by carrier
),
emails as (
    select carrier as id, list({
        'value': email, 'type': email_type, 'original': original, 'person_id': person_id
    } order by own desc, is_primary desc, person_id, position, part) as emails
    from (
        select c.carrier, e.*, e.person_id = c.carrier as own
        from carriers c
        join clean.emails e on e.person_id = c.member
        where e.email is not null
        qualify row_number() over (
            partition by c.carrier, e.match_key
            order by e.person_id = c.carrier desc, e.is_primary desc, e.person_id, e.position,
                e.part
        ) = 1
    )
    group by carrier
),
labels as (
    select
        c.carrier as id,
        list_sort(list_distinct(flatten(list(try_cast(p.label_ids as BIGINT[]))))) as label_ids,
        list_sort(list(c.member) filter (where c.member <> c.carrier)) as merged_ids
    from carriers c
    join raw.persons p on p.id = c.member
    group by c.carrier
),
value_problems as (
    select person_id as id, list(problem order by position, part, problem) as problems
    from (
        select person_id, position, 0 as part, format('phone {}: {}', original, problem) as problem
        from clean.phones where problem is not null
        union all
        select person_id, position, part, format('e-mail {}: {}', coalesce(original, ''), problem)
        from clean.emails where problem is not null
    )
    group by person_id
)
select
    p.id,
    m.status,
    m.survivor_id,
    p.name,
    p.first_name,
    p.last_name,
    p.owner_id,
    o.survivor_id as org_id,
    p.org_id as source_org_id,
    coalesce(ph.phones, []) as phones,
    coalesce(em.emails, []) as emails,
    coalesce(l.label_ids, []) as label_ids,
    coalesce(l.merged_ids, []) as merged_ids,
    p.custom_fields,
    p.add_time,
    p.update_time,
    list_concat(
        case
            when p.org_id is not null and o.id is null
                then [format('organization {} not found', p.org_id)]
            when o.status = 'deleted'
                then [format('organization {} is deleted in Pipedrive', p.org_id)]
            else []
        end,
        coalesce(vp.problems, [])
    ) as problems
from raw.persons p
join members m on m.id = p.id
left join clean.organizations o on o.id = p.org_id
left join phones ph on ph.id = p.id
left join emails em on em.id = p.id
left join labels l on l.id = p.id
left join value_problems vp on vp.id = p.id
order by p.id
