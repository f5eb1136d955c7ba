-- clean.{{entity}}_review: borderline pairs (score between review_score and merge_score)
-- whose records did not end up in one cluster anyway: for a human to look at; they are NOT
-- merged. Highest scores first.
create or replace table clean.{{entity}}_review as
select
    p.id_l,
    p.id_r,
    p.name_l,
    p.name_r,
    p.score,
    p.reason,
    coalesce(dl.survivor_id, p.id_l) as survivor_l,
    coalesce(dr.survivor_id, p.id_r) as survivor_r
from clean.{{entity}}_pairs p
left join clean.{{entity}}_duplicates dl on dl.id = p.id_l
left join clean.{{entity}}_duplicates dr on dr.id = p.id_r
where p.decision = 'review'
    and coalesce(dl.survivor_id, p.id_l) <> coalesce(dr.survivor_id, p.id_r)
order by p.score desc, p.id_l, p.id_r
