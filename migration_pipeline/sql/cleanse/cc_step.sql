-- Connected components, one step: each record takes the smallest label among itself and its
-- neighbours, then the label of that label (pointer jumping, so long chains converge in a
-- logarithmic number of steps). Repeated until nothing changes; the label of a component is
-- then the smallest id in it, whatever order the edges came in.
create or replace temp table cc_next as
with hop as (
    select l.node, least(l.label, min(n.label)) as label
    from cc_labels l
    join cc_edges e on e.a = l.node
    join cc_labels n on n.node = e.b
    group by l.node, l.label
)
select h.node, least(h.label, j.label) as label
from hop h
join hop j on j.node = h.label
