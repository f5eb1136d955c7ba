-- The merge decisions of clean.{{entity}}_pairs as an undirected edge list (both directions),
-- the input of the connected-components steps (cc_labels.sql, cc_step.sql).
create or replace temp table cc_edges as
select id_l as a, id_r as b from clean.{{entity}}_pairs where decision = 'merge'
union all
select id_r, id_l from clean.{{entity}}_pairs where decision = 'merge'
