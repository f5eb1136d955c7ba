-- clean.deal_participants: one row per participant of a deal, its person re-pointed to the
-- survivor. When merging made two participants of one deal the same contact, the later one
-- (higher id) names the first in `duplicate_of`: the contact is linked to the lead once.
create or replace table clean.deal_participants as
select
    * exclude (first_id),
    case when first_id <> id then first_id end as duplicate_of
from (
    select
        dp.id,
        dp.deal_id,
        p.survivor_id as person_id,
        dp.person_id as source_person_id,
        coalesce(dp.active_flag, true) as active_flag,
        dp.add_time,
        list_filter(
            [
                case when d.id is null then format('deal {} not found', dp.deal_id) end,
                reference_problem('person', dp.person_id, p.status)
            ],
            lambda problem: problem is not null
        ) as problems,
        case when p.survivor_id is not null then min(dp.id) over (
            partition by dp.deal_id, p.survivor_id
        ) end as first_id
    from raw.deal_participants dp
    left join raw.deals d on d.id = dp.deal_id
    left join clean.persons p on p.id = dp.person_id
)
order by id
