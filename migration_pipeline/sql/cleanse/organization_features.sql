-- One row per organization that takes part in duplicate detection (deleted ones do not),
-- with what it is compared on: name and address as written, the text its country is read
-- from (country field, else the address), website, tax ids (custom fields whose name matches
-- parameter 1, letters and digits only) and the corporate e-mail domains of its persons
-- (people of one company write from its domain; free-mail domains say nothing).
create or replace temp table organization_features as
with person_domains as (
    select p.org_id as id, list_sort(list_distinct(list(e.domain))) as domains
    from raw.persons p
    join clean.emails e on e.person_id = p.id
    where p.org_id is not null
        and e.domain is not null
        and not e.is_free_mail
        and not coalesce(p.is_deleted, false)
    group by p.org_id
),
tax_fields as (
    select key from raw.organization_fields where regexp_matches(name, ?)
),
tax_ids as (
    select id, list_sort(list_distinct(list(tax_id))) as tax_ids
    from (
        select
            o.id,
            regexp_replace(upper(o.custom_fields ->> ('$."' || f.key || '"')), '[^0-9A-Z]', '', 'g')
                as tax_id
        from raw.organizations o
        cross join tax_fields f
    )
    where length(tax_id) >= 5
    group by id
)
select
    o.id,
    nullif(trim(o.name), '') as display_name,
    nullif(trim(o.address), '') as address,
    coalesce(nullif(trim(o.address_country), ''), nullif(trim(o.address), '')) as country_text,
    nullif(trim(o.address_country), '') is not null as country_from_field,
    nullif(trim(o.website), '') as website,
    coalesce(t.tax_ids, []) as tax_ids,
    coalesce(d.domains, []) as domains
from raw.organizations o
left join person_domains d on d.id = o.id
left join tax_ids t on t.id = o.id
where not coalesce(o.is_deleted, false)
