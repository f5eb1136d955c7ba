-- clean.deals: one row per extracted deal, its person and organization re-pointed to the
-- surviving records (the originals beside them), its value converted (clean.amounts). A
-- reference that cannot be kept (missing or deleted record) becomes null and `problems`
-- says why, as does a conversion error and an owner who is not a Pipedrive user (the
-- default amoCRM user will own the lead).
--
-- `placement_error`: why the deal has no place in amoCRM: its pipeline does not exist or,
-- for an open deal, its stage does not exist or belongs to another pipeline (Pipedrive
-- derives a deal's pipeline from its stage, so nothing says which of the two is right). The
-- selection fails such a deal; amoCRM setup maps the places of the others only (its
-- LIVE_DEALS applies the same rule).
create or replace table clean.deals as
with placed as (
    select
        d.id,
        case
            when pl.id is null
                then format('pipeline {} not found', coalesce(d.pipeline_id::VARCHAR, '(none)'))
            when d.status in ('won', 'lost') then null
            when st.id is null
                then format('stage {} not found', coalesce(d.stage_id::VARCHAR, '(none)'))
            when st.pipeline_id <> d.pipeline_id then format(
                'stage {} belongs to pipeline {}, not to the deal''s pipeline {}',
                d.stage_id, st.pipeline_id, d.pipeline_id
            )
        end as placement_error
    from raw.deals d
    left join raw.pipelines pl on pl.id = d.pipeline_id
    left join raw.stages st on st.id = d.stage_id
)
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
    pd.placement_error,
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
            pd.placement_error,
            reference_problem('person', d.person_id, p.status),
            reference_problem('organization', d.org_id, o.status),
            case when d.owner_id is not null and u.id is null
                then format('owner {} not found: the default amoCRM user owns the lead', d.owner_id)
            end,
            a.error
        ],
        lambda problem: problem is not null
    ) as problems
from raw.deals d
join placed pd on pd.id = d.id
left join clean.persons p on p.id = d.person_id
left join clean.organizations o on o.id = d.org_id
left join clean.amounts a on a.entity = 'deals' and a.record_id = d.id::VARCHAR
left join raw.users u on u.id = d.owner_id
order by d.id
