-- clean.emails: one row per address written in a person's e-mail entry (a field holding
-- several addresses gives several rows, numbered `part`), normalised when valid, kept with
-- its problem when not, with the amoCRM EMAIL enum code and whether the domain is a free-mail
-- one (then it says nothing about the employer). Inputs: email_entries, email_values,
-- email_labels, free_mail_domains.
create or replace table clean.emails as
select
    e.person_id,
    e.position,
    v.part,
    v.parts,
    e.is_primary,
    e.label,
    l.amocrm_type as email_type,
    e.raw_value as original_field,
    v.original,
    v.email,
    v.match_key,
    v.domain,
    f.domain is not null as is_free_mail,
    v.problem,
    v.problem_detail,
    v.suggestion
from email_entries e
join email_values v on v.raw_value is not distinct from e.raw_value
join email_labels l on l.label is not distinct from e.label
left join free_mail_domains f on f.domain = coalesce(v.domain, split_part(v.match_key, '@', 2))
order by e.person_id, e.position, v.part
