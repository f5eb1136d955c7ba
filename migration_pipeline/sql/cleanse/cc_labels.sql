-- Connected components, start: every record on a merge edge is labelled with its own id.
create or replace temp table cc_labels as
select distinct a as node, a as label from cc_edges
