-- Every candidate pair of organizations, scored like person pairs (ordered levels, fixed
-- points, score = their sum, every level in `reason`; pairs.sql then decides).
--
--   tax id  shared +8 | both have one, none shared -6 | unknown 0
--   name    exact (up to legal form, case, quotes, script, spelling variants) +6 |
--           sounds alike (Junken ~ Juncken) +3 | one typo apart as written (macros.sql) +3 |
--           one name's words contain the other's +2 | different -4 | unknown 0
--   website same site +4 | both have one, different -2 | unknown 0
--   domain  the websites or persons' corporate e-mail domains overlap (sites not equal) +3
--   address same words (Jaccard >= 0.8) +3 | similar (>= 0.5) +1 | different -2 | unknown 0
--   country different (address country, else website country) -3 | else 0
--
-- A name equal up to legal form, quotes, case and script merges on its own unless something
-- disagrees: two companies called "Вектор" at different addresses (6 - 2), in different
-- countries or with different tax ids stay apart and go to review.
create or replace temp table organization_scored as
with pairs as (
    select
        c.id_l,
        c.id_r,
        c.rules,
        l.display_name as name_l,
        r.display_name as name_r,
        nl.name_key as key_l,
        nr.name_key as key_r,
        nl.sound_key as sound_l,
        nr.sound_key as sound_r,
        nl.tokens as tokens_l,
        nr.tokens as tokens_r,
        nl.plain[1] as plain_l,
        nr.plain[1] as plain_r,
        len(list_intersect(l.tax_ids, r.tax_ids)) as shared_tax_ids,
        len(l.tax_ids) > 0 and len(r.tax_ids) > 0 as both_tax_ids,
        sl.site as site_l,
        sr.site as site_r,
        len(list_intersect(
            list_concat(l.domains, [sl.site]), list_concat(r.domains, [sr.site])
        )) as shared_domains,
        al.tokens as address_l,
        ar.tokens as address_r,
        coalesce(cl.region, sl.region) as country_l,
        coalesce(cr.region, sr.region) as country_r
    from organization_candidates c
    join organization_features l on l.id = c.id_l
    join organization_features r on r.id = c.id_r
    left join organization_names nl on nl.raw_name = l.display_name
    left join organization_names nr on nr.raw_name = r.display_name
    left join organization_sites sl on sl.raw_website = l.website
    left join organization_sites sr on sr.raw_website = r.website
    left join organization_addresses al on al.raw_name = l.address
    left join organization_addresses ar on ar.raw_name = r.address
    left join organization_countries cl
        on cl.country_text = l.country_text and cl.from_field = l.country_from_field
    left join organization_countries cr
        on cr.country_text = r.country_text and cr.from_field = r.country_from_field
),
levels as (
    select
        *,
        case
            when shared_tax_ids > 0 then 'shared'
            when both_tax_ids then 'different'
            else 'unknown'
        end as tax_level,
        case
            when key_l is null or key_r is null then 'unknown'
            when key_l = key_r then 'exact'
            when sound_l = sound_r then 'sounds alike'
            when one_typo(plain_l, plain_r) then 'typo'
            when list_has_all(tokens_l, tokens_r) or list_has_all(tokens_r, tokens_l)
                then 'contained'
            else 'different'
        end as name_level,
        case
            when site_l is null or site_r is null then 'unknown'
            when site_l = site_r then 'same'
            else 'different'
        end as website_level,
        case
            when coalesce(site_l = site_r, false) then 'unknown'
            when shared_domains > 0 then 'shared'
            else 'unknown'
        end as domain_level,
        case
            when len(coalesce(address_l, [])) = 0 or len(coalesce(address_r, [])) = 0
                then 'unknown'
            when len(list_intersect(address_l, address_r))
                >= 0.8 * len(list_distinct(list_concat(address_l, address_r))) then 'same'
            when len(list_intersect(address_l, address_r))
                >= 0.5 * len(list_distinct(list_concat(address_l, address_r))) then 'similar'
            else 'different'
        end as address_level,
        case
            when country_l is not null and country_r is not null and country_l <> country_r
                then 'different'
            else 'unknown'
        end as country_level
    from pairs
),
points as (
    select
        *,
        case tax_level when 'shared' then 8 when 'different' then -6 else 0 end as tax_points,
        case name_level
            when 'exact' then 6 when 'sounds alike' then 3 when 'typo' then 3
            when 'contained' then 2
            when 'different' then -4 else 0
        end as name_points,
        case website_level when 'same' then 4 when 'different' then -2 else 0 end
            as website_points,
        case domain_level when 'shared' then 3 else 0 end as domain_points,
        case address_level
            when 'same' then 3 when 'similar' then 1 when 'different' then -2 else 0
        end as address_points,
        case country_level when 'different' then -3 else 0 end as country_points
    from levels
),
scored as (
    select
        *,
        tax_points + name_points + website_points + domain_points + address_points
            + country_points as score
    from points
)
select
    id_l,
    id_r,
    name_l,
    name_r,
    score,
    concat_ws(
        ', ',
        format('tax id {} ({:+d})', tax_level, tax_points),
        format('name {} ({:+d})', name_level, name_points),
        format('website {} ({:+d})', website_level, website_points),
        format('domain {} ({:+d})', domain_level, domain_points),
        format('address {} ({:+d})', address_level, address_points),
        format('country {} ({:+d})', country_level, country_points)
    ) as reason,
    tax_level,
    name_level,
    website_level,
    domain_level,
    address_level,
    country_level,
    -- evidence of two different companies: other tax ids or countries, or names that do not
    -- match with no tax id, website, domain or address shared
    tax_level = 'different' or country_level = 'different' or (
        name_level = 'different' and tax_level <> 'shared' and website_level <> 'same'
        and domain_level <> 'shared' and address_level <> 'same'
    ) as apart,
    rules as blocked_by
from scored
