-- clean.{{entity}}_pairs: one row per candidate pair of {{entity}}s (from {{entity}}_scored),
-- with its decision: `merge` at a score of at least parameter 1 (merge_score), `review` at
-- least parameter 2 (review_score), else `distinct`.
--
-- An ambiguous merge becomes `review`: when a record would merge with two records that were
-- compared with each other and found `apart` (evidence of two different people or
-- companies, e.g. "M. Sheremeta" matches both Makar and Martin Sheremeta, whose names differ
-- and who share no phone or e-mail), merging would chain the two together, so neither of
-- its merges is made and `reason` says why. Two variants of one record that merely fail to
-- match each other (two typos apart) are not apart: they still merge through the original.
create or replace table clean.{{entity}}_pairs as
with provisional as (
    select
        *,
        case when score >= ? then 'merge' when score >= ? then 'review' else 'distinct' end
            as provisional
    from {{entity}}_scored
),
directed as (
    select id_l as a, id_r as b, provisional, apart from provisional
    union all
    select id_r, id_l, provisional, apart from provisional
),
ambiguous as (
    -- a merges with b and with c, and b, c are apart: the merge a–b is ambiguous
    select m.a, m.b, min(other.b) as other
    from directed m
    join directed other on other.a = m.a and other.b <> m.b and other.provisional = 'merge'
    join directed two on two.a = m.b and two.b = other.b and two.apart
    where m.provisional = 'merge'
    group by m.a, m.b
)
select
    p.id_l,
    p.id_r,
    p.name_l,
    p.name_r,
    p.score,
    case when coalesce(al.a, ar.a) is not null then 'review' else p.provisional end
        as decision,
    case
        when al.a is not null then p.reason || format(
            '; not merged: {} also matches {}, which differs from {}', al.a, al.other, al.b
        )
        when ar.a is not null then p.reason || format(
            '; not merged: {} also matches {}, which differs from {}', ar.a, ar.other, ar.b
        )
        else p.reason
    end as reason,
    p.* exclude (id_l, id_r, name_l, name_r, score, reason, provisional)
from provisional p
left join ambiguous al on al.a = p.id_l and al.b = p.id_r
left join ambiguous ar on ar.a = p.id_r and ar.b = p.id_l
order by p.id_l, p.id_r
