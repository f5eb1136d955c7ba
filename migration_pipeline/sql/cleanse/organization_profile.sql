-- What the survivor of an organization cluster is chosen by, for every clustered one:
-- completeness (name, address, country, website, labels, filled custom fields), the last
-- update, and links (persons, deals, leads, activities, notes).
create or replace temp table organization_profile as
with links as (
    select org_id as id, count(*) as links
    from (
        select org_id from raw.persons
        union all select org_id from raw.deals
        union all select organization_id from raw.leads
        union all select org_id from raw.activities
        union all select org_id from raw.notes
    )
    where org_id is not null
    group by org_id
)
select
    o.id,
    (nullif(trim(o.name), '') is not null)::INTEGER
        + (nullif(trim(o.address), '') is not null)::INTEGER
        + (nullif(trim(o.address_country), '') is not null)::INTEGER
        + (nullif(trim(o.website), '') is not null)::INTEGER
        + (coalesce(json_array_length(o.label_ids), 0) > 0)::INTEGER
        + coalesce(len(list_filter(
            json_keys(o.custom_fields),
            lambda k: json_type(o.custom_fields, '$."' || k || '"') <> 'NULL'
        )), 0) as completeness,
    o.update_time,
    coalesce(l.links, 0) as links
from raw.organizations o
join (select distinct node from cc_labels) c on c.node = o.id
left join links l on l.id = o.id
