-- One row per entry of a person's `phones` list, with the hints of the region its number
-- belongs to ('' for none), when inferring (parameter 1): the country of the person's
-- address, of its organization's address, and of its first e-mail domain that names one.
-- Python tries them in that order, then the configured default and fallback regions.
create or replace temp table phone_entries as
with entries as (
    select
        p.id as person_id,
        p.org_id,
        (item.pos - 1)::INTEGER as position,
        case json_type(item.entry)
            when 'OBJECT' then item.entry ->> '$.value'
            else item.entry ->> '$'
        end as raw_value,
        case json_type(item.entry) when 'OBJECT' then item.entry ->> '$.label' end as label,
        coalesce(
            case json_type(item.entry)
                when 'OBJECT' then try_cast(item.entry ->> '$.primary' as BOOLEAN)
            end,
            false
        ) as is_primary
    from raw.persons p, unnest(json_extract(p.phones, '$[*]')) with ordinality as item(entry, pos)
    where json_type(p.phones) = 'ARRAY'
),
email_regions as (
    select e.person_id, d.region
    from clean.emails e
    join domain_regions d on d.domain = e.domain
    where d.region is not null
    qualify row_number() over (
        partition by e.person_id order by e.is_primary desc, e.position, e.part
    ) = 1
)
select
    e.*,
    case when s.infer then coalesce(pr.region, '') else '' end as person_address_region,
    case when s.infer then coalesce(orr.region, '') else '' end as organization_address_region,
    case when s.infer then coalesce(er.region, '') else '' end as email_domain_region
from entries e
cross join (select ?::BOOLEAN as infer) s
left join address_countries pc on pc.owner_kind = 'person' and pc.owner_id = e.person_id
left join address_regions pr
    on pr.country_text = pc.country_text and pr.from_field = pc.from_field
left join address_countries oc on oc.owner_kind = 'organization' and oc.owner_id = e.org_id
left join address_regions orr
    on orr.country_text = oc.country_text and orr.from_field = oc.from_field
left join email_regions er on er.person_id = e.person_id
