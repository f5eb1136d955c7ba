-- One row per entry of a person's `emails` list (a plain string entry is its own value).
create or replace temp table email_entries as
select
    p.id as person_id,
    (item.pos - 1)::INTEGER as position,
    case json_type(item.entry)
        when 'OBJECT' then item.entry ->> '$.value'
        else item.entry ->> '$'
    end as raw_value,
    case json_type(item.entry) when 'OBJECT' then item.entry ->> '$.label' end as label,
    coalesce(
        case json_type(item.entry) when 'OBJECT' then try_cast(item.entry ->> '$.primary' as BOOLEAN) end,
        false
    ) as is_primary
from raw.persons p, unnest(json_extract(p.emails, '$[*]')) with ordinality as item(entry, pos)
where json_type(p.emails) = 'ARRAY'
