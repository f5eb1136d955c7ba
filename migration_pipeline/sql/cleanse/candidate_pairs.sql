-- Candidate pairs of {{entity}}s: every two records sharing a blocking key, once per pair
-- (id_l < id_r), with the rules that paired them. A key shared by more records than the
-- configured maximum (parameter 1) is skipped: a switchboard number or a generic name shared
-- by hundreds says nothing about who is who, and would cost n² comparisons.
create or replace temp table {{entity}}_candidates as
with keys as (
    select distinct rule, key, id
    from {{entity}}_block_keys
    where key is not null and key <> ''
),
usable as (
    select rule, key, id
    from keys
    qualify count(*) over (partition by rule, key) between 2 and ?
)
select l.id as id_l, r.id as id_r, list_sort(list_distinct(list(l.rule))) as rules
from usable l
join usable r on r.rule = l.rule and r.key = l.key and l.id < r.id
group by l.id, r.id
