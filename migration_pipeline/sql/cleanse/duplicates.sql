-- clean.{{entity}}_duplicates: one row per {{entity}} in a cluster of duplicates (a
-- connected component of merge decisions), with the cluster's survivor and why.
--
-- Survivor: the most complete record, then the most recently updated, then the most linked;
-- a tie left after that goes to the lowest id. `survivor_rank` 1 is the survivor.
-- Match: the merge pair that put the record in the cluster, preferring its pair with the
-- survivor, else its highest-scoring one (ties: lowest other id), with score and reason.
create or replace table clean.{{entity}}_duplicates as
with ranked as (
    select
        c.node as id,
        c.label as cluster_key,
        p.completeness,
        p.update_time,
        p.links,
        row_number() over (
            partition by c.label
            order by p.completeness desc, p.update_time desc nulls last, p.links desc, c.node
        ) as survivor_rank,
        count(*) over (partition by c.label) as cluster_size
    from cc_labels c
    join {{entity}}_profile p on p.id = c.node
),
survivors as (
    select cluster_key, id as survivor_id from ranked where survivor_rank = 1
),
edges as (
    select id_l as a, id_r as b, score, reason
    from clean.{{entity}}_pairs where decision = 'merge'
    union all
    select id_r, id_l, score, reason
    from clean.{{entity}}_pairs where decision = 'merge'
),
best as (
    select e.a as id, e.b as matched_with, e.score, e.reason
    from edges e
    join ranked r on r.id = e.a
    join survivors s on s.cluster_key = r.cluster_key
    qualify row_number() over (
        partition by e.a order by (e.b = s.survivor_id) desc, e.score desc, e.b
    ) = 1
)
select
    r.id,
    s.survivor_id,
    r.id = s.survivor_id as is_survivor,
    r.cluster_size,
    r.survivor_rank,
    r.completeness,
    r.update_time,
    r.links,
    b.matched_with,
    b.score as match_score,
    b.reason as match_reason
from ranked r
join survivors s on s.cluster_key = r.cluster_key
join best b on b.id = r.id
order by s.survivor_id, r.survivor_rank
