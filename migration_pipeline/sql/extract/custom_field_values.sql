-- raw.custom_field_values: one row per custom-field value of a deal, person or organization,
-- readable by name. Pipedrive keys custom fields by 40-character hashes; the field definitions
-- (raw.*_fields, edit_flag = true) give each its name and type, and enum/set option ids their
-- labels. `value` is the value as the API sent it; `value_text` a readable rendering.
create or replace table raw.custom_field_values as
with entries as (
    select 'deal' as entity, d.id as record_id, k.key as field_key,
        d.custom_fields -> ('$."' || k.key || '"') as value
    from raw.deals d, unnest(json_keys(d.custom_fields)) as k(key)
    where d.custom_fields is not null
    union all
    select 'person', p.id, k.key, p.custom_fields -> ('$."' || k.key || '"')
    from raw.persons p, unnest(json_keys(p.custom_fields)) as k(key)
    where p.custom_fields is not null
    union all
    select 'organization', o.id, k.key, o.custom_fields -> ('$."' || k.key || '"')
    from raw.organizations o, unnest(json_keys(o.custom_fields)) as k(key)
    where o.custom_fields is not null
),
definitions as (
    select 'deal' as entity, key, name, field_type, options from raw.deal_fields where edit_flag
    union all
    select 'person', key, name, field_type, options from raw.person_fields where edit_flag
    union all
    select 'organization', key, name, field_type, options from raw.organization_fields where edit_flag
),
typed as (
    select e.*, f.name as field_name, f.field_type,
        from_json(f.options, '[{"id": "VARCHAR", "label": "VARCHAR"}]') as options,
        case when json_type(e.value) = 'ARRAY' then from_json(e.value, '["VARCHAR"]')
             else [json_extract_string(e.value, '$')] end as option_ids
    from entries e
    left join definitions f on f.entity = e.entity and f.key = e.field_key
    where e.value is not null and json_type(e.value) <> 'NULL'
)
select
    entity,
    record_id,
    field_key,
    field_name,
    field_type,
    value,
    case
        when field_type in ('enum', 'set') then array_to_string(
            list_transform(
                list_filter(options, lambda o: list_contains(option_ids, o.id)),
                lambda o: o.label
            ),
            ', '
        )
        when json_type(value) = 'OBJECT' and value ->> 'until' is not null
            then concat(value ->> 'value', ' – ', value ->> 'until')
        when json_type(value) = 'OBJECT'
            then concat_ws(' ', coalesce(value ->> 'formatted_address', value ->> 'value'), value ->> 'currency')
        else json_extract_string(value, '$')
    end as value_text
from typed
order by entity, record_id, field_key
