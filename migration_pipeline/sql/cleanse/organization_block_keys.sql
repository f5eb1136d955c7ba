-- Blocking rules for organizations: two are compared only if their names sound alike (legal
-- form dropped, transliterated, sound-squashed), or they share a tax id, a domain (website
-- or persons' corporate e-mail domain) or an address key. Inputs: organization_features,
-- organization_names, organization_addresses, organization_sites.
create or replace temp table organization_block_keys as
select 'name' as rule, n.sound_key as key, f.id
from organization_features f
join organization_names n on n.raw_name = f.display_name
union all
select 'tax_id', unnest(tax_ids), id from organization_features
union all
select 'domain', s.site, f.id
from organization_features f
join organization_sites s on s.raw_website = f.website
union all
select 'domain', unnest(domains), id from organization_features
union all
select 'address', a.name_key, f.id
from organization_features f
join organization_addresses a on a.raw_name = f.address
