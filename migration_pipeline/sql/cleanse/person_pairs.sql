-- Every candidate pair of persons, scored (pairs.sql then decides). Each comparison has
-- ordered levels (the first that holds wins) worth fixed points; the score is their sum and
-- `reason` spells out every level.
--
--   name   exact key +5 | the shorter name's words (2+) all among the other's +4 |
--          fuzzy: every word of one name (2+) equals, is one typo from or is the initial
--          of a word of the other, one word equal (macros.sql: words_covered) +4 |
--          partial (a one-word name found in the other) +1 | different -12 | unknown 0
--   email  shared +6 | both have e-mails, none shared -1 | unknown 0
--   phone  shared +6 | both have phones, none shared -1 | unknown 0
--   org    same organization +4 | different -3 | unknown 0
--   domain a shared corporate e-mail domain (when no e-mail is shared) +1 | else 0
--
-- A different name never merges (colleagues share a switchboard and an info@ mailbox:
-- -12 + 6 + 6 + 4 = 4). A matching name merges with one more sign: a shared phone or e-mail,
-- or the same organization (people add a new phone or a private e-mail, so a different one
-- costs little). Two people with one common name at different organizations, with other
-- phones and e-mails, stay apart (5 - 3 - 1 - 1 = 0).
create or replace temp table person_scored as
with pairs as (
    select
        c.id_l,
        c.id_r,
        c.rules,
        l.display_name as name_l,
        r.display_name as name_r,
        nl.name_key as key_l,
        nr.name_key as key_r,
        nl.tokens as tokens_l,
        nr.tokens as tokens_r,
        nl.plain as plain_l,
        nr.plain as plain_r,
        len(list_intersect(l.emails, r.emails)) as shared_emails,
        len(l.emails) > 0 and len(r.emails) > 0 as both_emails,
        len(list_intersect(l.phones, r.phones)) as shared_phones,
        len(l.phones) > 0 and len(r.phones) > 0 as both_phones,
        len(list_intersect(l.domains, r.domains)) as shared_domains,
        l.org_id as org_l,
        r.org_id as org_r
    from person_candidates c
    join person_features l on l.id = c.id_l
    join person_features r on r.id = c.id_r
    left join person_names nl on nl.raw_name = l.display_name
    left join person_names nr on nr.raw_name = r.display_name
),
levels as (
    select
        *,
        case
            when key_l is null or key_r is null then 'unknown'
            when key_l = key_r then 'exact'
            when (len(tokens_l) >= 2 and list_has_all(tokens_r, tokens_l))
                or (len(tokens_r) >= 2 and list_has_all(tokens_l, tokens_r))
                then 'contained'
            when words_covered(tokens_l, plain_l, tokens_r, plain_r)
                or words_covered(tokens_r, plain_r, tokens_l, plain_l)
                then 'fuzzy'
            when (len(tokens_l) = 1 and list_contains(tokens_r, tokens_l[1]))
                or (len(tokens_r) = 1 and list_contains(tokens_l, tokens_r[1]))
                then 'partial'
            else 'different'
        end as name_level,
        case
            when shared_emails > 0 then 'shared'
            when both_emails then 'different'
            else 'unknown'
        end as email_level,
        case
            when shared_phones > 0 then 'shared'
            when both_phones then 'different'
            else 'unknown'
        end as phone_level,
        case
            when org_l is null or org_r is null then 'unknown'
            when org_l = org_r then 'same'
            else 'different'
        end as org_level,
        case
            when shared_emails = 0 and shared_domains > 0 then 'shared'
            else 'unknown'
        end as domain_level
    from pairs
),
points as (
    select
        *,
        case name_level
            when 'exact' then 5 when 'contained' then 4 when 'fuzzy' then 4
            when 'partial' then 1 when 'different' then -12 else 0
        end as name_points,
        case email_level when 'shared' then 6 when 'different' then -1 else 0 end as email_points,
        case phone_level when 'shared' then 6 when 'different' then -1 else 0 end as phone_points,
        case org_level when 'same' then 4 when 'different' then -3 else 0 end as org_points,
        case domain_level when 'shared' then 1 else 0 end as domain_points
    from levels
),
scored as (
    select
        *,
        name_points + email_points + phone_points + org_points + domain_points as score
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
        format('name {} ({:+d})', name_level, name_points),
        format('email {} ({:+d})', email_level, email_points),
        format('phone {} ({:+d})', phone_level, phone_points),
        format('organization {} ({:+d})', org_level, org_points),
        format('e-mail domain {} ({:+d})', domain_level, domain_points)
    ) as reason,
    name_level,
    email_level,
    phone_level,
    org_level,
    domain_level,
    -- evidence of two different people: names that do not match and no phone or e-mail shared
    name_level = 'different' and email_level <> 'shared' and phone_level <> 'shared' as apart,
    rules as blocked_by
from scored
