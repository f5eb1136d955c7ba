-- One row per person or organization whose address may name its country, and where the
-- text comes from: a country field (`from_field`: an ISO code or a name) or else the whole
-- address text (there only a comma-separated part that is a full country name counts).
-- Python maps each distinct text to a phone region (address_regions).
create or replace temp table address_countries as
select owner_kind, owner_id, coalesce(field, text) as country_text, field is not null as from_field
from (
    select
        'person' as owner_kind,
        id as owner_id,
        nullif(trim(address ->> '$.country'), '') as field,
        nullif(trim(
            case json_type(address) when 'VARCHAR' then address ->> '$' else address ->> '$.value' end
        ), '') as text
    from (select id, record -> '$.postal_address' as address from raw.persons)
    where address is not null
    union all
    select 'organization', id, nullif(trim(address_country), ''), nullif(trim(address), '')
    from raw.organizations
)
where coalesce(field, text) is not null
