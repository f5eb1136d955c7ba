-- clean.organizations: one row per extracted organization. `status` says what became of it:
-- `active` (migrates as itself, or as the survivor of its duplicates), `merged` (its data
-- lives on in `survivor_id`) or `deleted` (deleted in Pipedrive: no survivor, never
-- migrates). A survivor carries the union of its cluster's labels and lists `merged_ids`.
create or replace table clean.organizations as
with members as (
    select
        o.id,
        case
            when coalesce(o.is_deleted, false) then 'deleted'
            when d.survivor_id is not null and d.survivor_id <> o.id then 'merged'
            else 'active'
        end as status,
        case when not coalesce(o.is_deleted, false) then coalesce(d.survivor_id, o.id) end
            as survivor_id
    from raw.organizations o
    left join clean.organization_duplicates d on d.id = o.id
),
-- whose values each row carries: a survivor its whole cluster's, any other row its own
carriers as (
    select survivor_id as carrier, id as member from members where status <> 'deleted'
    union all
    select id, id from members where status <> 'active'
),
labels as (
    select
        c.carrier as id,
        list_sort(list_distinct(flatten(list(try_cast(o.label_ids as BIGINT[]))))) as label_ids,
        list_sort(list(c.member) filter (where c.member <> c.carrier)) as merged_ids
    from carriers c
    join raw.organizations o on o.id = c.member
    group by c.carrier
)
select
    o.id,
    m.status,
    m.survivor_id,
    o.name,
    o.owner_id,
    o.address,
    o.address_country,
    o.website,
    coalesce(l.label_ids, []) as label_ids,
    coalesce(l.merged_ids, []) as merged_ids,
    o.custom_fields,
    o.add_time,
    o.update_time
from raw.organizations o
join members m on m.id = o.id
left join labels l on l.id = o.id
order by o.id
