-- report.pre_migration: the pre-migration report as numbers, one row per (section, item),
-- `position` keeping the reading order. Parameter 1: the amoCRM batch size (records per write
-- request) the request estimate assumes.
create or replace table report.pre_migration as
with
extracted as (
    select 'deals' as item, count(*) as value from raw.deals
    union all select 'leads', count(*) from raw.leads
    union all select 'persons', count(*) from raw.persons
    union all select 'organizations', count(*) from raw.organizations
    union all select 'activities', count(*) from raw.activities
    union all select 'notes', count(*) from raw.notes
    union all select 'deal_participants', count(*) from raw.deal_participants
    union all select 'deal_followers', count(*) from raw.deal_followers
    union all select 'mail_messages', count(*) from raw.mail_messages
),
phones as (
    select coalesce(problem, 'valid') as item, count(*) as value from clean.phones group by all
),
emails as (
    select coalesce(problem, 'valid') as item, count(*) as value from clean.emails group by all
    union all
    select 'invalid, repair suggested (used for matching only)', count(*)
    from clean.emails where suggestion is not null
),
currencies as (
    select format('{} {}', entity, error) as item, count(*) as value
    from clean.amounts where error is not null group by all
    union all
    select format('{} converted to {}', entity, any_value(account_currency)), count(price)
    from clean.amounts group by entity
),
problems as (
    select entity, regexp_replace(problem, '[0-9]+', 'N', 'g') as problem
    from (
        select 'persons' as entity, unnest(problems) as problem
        from clean.persons where status <> 'merged'
        union all select 'deals', unnest(problems) from clean.deals
        union all select 'leads', unnest(problems) from clean.leads
        union all select 'activities', unnest(problems) from clean.activities
        union all select 'notes', unnest(problems) from clean.notes
        union all select 'deal_participants', unnest(problems) from clean.deal_participants
    )
    where problem not like 'phone %' and problem not like 'e-mail %'
        and problem not like 'unknown currency %' and problem not like 'value % without a currency%'
        and problem not like 'negative value %' and problem not like 'value % over the largest amoCRM budget%'
),
broken as (
    select format('{}: {}', entity, problem) as item, count(*) as value from problems group by all
),
duplicates as (
    select 'person clusters' as item, count(*) filter (where is_survivor) as value
    from clean.person_duplicates
    union all
    select 'persons merged into a survivor', count(*) filter (where not is_survivor)
    from clean.person_duplicates
    union all select 'person pairs to review', count(*) from clean.person_review
    union all
    select 'organization clusters', count(*) filter (where is_survivor)
    from clean.organization_duplicates
    union all
    select 'organizations merged into a survivor', count(*) filter (where not is_survivor)
    from clean.organization_duplicates
    union all select 'organization pairs to review', count(*) from clean.organization_review
),
decisions as (
    select format('{} {}', entity, decision) as item, count(*) as value
    from clean.selection group by all
),
migrating as (
    select entity, count(*) as n from clean.selection where decision = 'migrate' group by all
),
per_type as (
    select 'companies (organizations)' as item,
        coalesce(sum(n) filter (where entity = 'organizations'), 0) as n from migrating
    union all
    select 'contacts (persons)', coalesce(sum(n) filter (where entity = 'persons'), 0)
    from migrating
    union all
    select 'leads (deals and leads)', coalesce(sum(n) filter (where entity in ('deals', 'leads')), 0)
    from migrating
    union all
    select 'tasks (activities)', coalesce(sum(n) filter (where entity = 'activities'), 0)
    from migrating
    union all
    select 'notes (notes, e-mails, one follower note per lead)',
        coalesce(sum(n) filter (where entity in ('notes', 'mail_messages')), 0) + (
            select count(distinct split_part(record_id, ':', 1)) from clean.selection
            where entity = 'deal_followers' and decision = 'migrate'
        )
    from migrating
    union all
    select 'contact → company links', count(*)
    from clean.persons p
    join clean.selection s on s.entity = 'persons' and s.record_id = p.id::VARCHAR
    where s.decision = 'migrate' and p.org_id is not null
),
requests as (
    select item, ceil(n / ?)::BIGINT as value from per_type
    union all
    select 'setup reads (account, users, pipelines, 3 custom field lists)', 6
),
sections as (
    select 1 as section_order, 'extracted records' as section, item, value from extracted
    union all select 2, 'phone numbers', item, value from phones
    union all select 3, 'e-mail addresses', item, value from emails
    union all select 4, 'currencies', item, value from currencies
    union all select 5, 'broken references', item, value from broken
    union all select 6, 'duplicates', item, value from duplicates
    union all select 7, 'selection', item, value from decisions
    union all select 8, 'records to create in amoCRM', item, n from per_type
    union all select 9, 'amoCRM requests (estimate)', item, value from requests
)
select
    section,
    item,
    value::BIGINT as value,
    row_number() over (order by section_order, item) as position
from sections
order by position
