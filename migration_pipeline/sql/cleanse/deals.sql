-- clean.deals: one row per extracted deal, its person and organization re-pointed to the
-- surviving records (the originals beside them), its value converted (clean.amounts). A
-- reference that cannot be kept (missing or deleted record) becomes null and `problems`
-- says why, as does a conversion error.
create or replace table clean.deals as
select
    d.id,
    d.title,
    d.owner_id,
    d.creator_user_id,
    p.survivor_id as person_id,
    d.person_id as source_person_id,
    o.survivor_id as org_id,
    d.org_id as source_org_id,
    d.pipeline_id,
    d.stage_id,
    d.status,
    d.lost_reason,
    coalesce(d.is_deleted, false) or d.status = 'deleted' as is_deleted,
    coalesce(d.is_archived, false) as is_archived,
    d.source,
    a.value,
    a.currency,
    a.rate,
    a.rate_date,
    a.rate_source,
    a.account_currency,
    a.price,
    a.error as conversion_error,
    d.add_time,
    d.update_time,
    d.close_time,
    d.won_time,
    d.lost_time,
    d.archive_time,
    d.expected_close_date,
    d.label_ids,
    d.custom_fields,
    list_filter(
        [
            reference_problem('person', d.person_id, p.status),
            reference_problem('organization', d.org_id, o.status),
            a.error
        ],
        lambda problem: problem is not null
    ) as problems
from raw.deals d
left join clean.persons p on p.id = d.person_id
left join clean.organizations o on o.id = d.org_id
left join clean.amounts a on a.entity = 'deals' and a.record_id = d.id::VARCHAR
order by d.id
