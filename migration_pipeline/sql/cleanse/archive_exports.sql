-- clean.archive_exports: one row per entity (parameter 1: the entities exported): how many of
-- its records do not migrate, by decision, and the files they were exported to under
-- <data dir>/exports/archive/ (Parquet with the original API record, CSV without it).
create or replace table clean.archive_exports as
select
    e.entity,
    count(s.record_id) filter (where s.decision <> 'migrate') as records,
    count(s.record_id) filter (where s.decision = 'archive') as archived,
    count(s.record_id) filter (where s.decision = 'merged') as merged,
    count(s.record_id) filter (where s.decision = 'failed') as failed,
    e.entity || '.parquet' as parquet_file,
    e.entity || '.csv' as csv_file
from (select unnest(?::VARCHAR[]) as entity) e
left join clean.selection s on s.entity = e.entity
group by e.entity
order by e.entity
