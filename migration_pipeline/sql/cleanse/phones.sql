-- clean.phones: one row per phone entry of a person, in E.164 when it can be, with the
-- original value, the region it was read in and where that region came from (an address,
-- the e-mail domain, the default or a fallback), the amoCRM PHONE enum code and one problem
-- code (see cleanse/phones.py). Inputs: phone_entries, phone_values (the distinct values as
-- Python read them) and phone_labels (label → enum code).
create or replace table clean.phones as
select
    e.person_id,
    e.position,
    e.is_primary,
    e.label,
    l.amocrm_type as phone_type,
    e.raw_value as original,
    v.region,
    v.region_source,
    v.e164,
    v.calling_code,
    v.extension,
    v.problem
from phone_entries e
join phone_values v
    on v.raw_value is not distinct from e.raw_value
    and v.person_address_region = e.person_address_region
    and v.organization_address_region = e.organization_address_region
    and v.email_domain_region = e.email_domain_region
join phone_labels l on l.label is not distinct from e.label
order by e.person_id, e.position
