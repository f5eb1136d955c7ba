-- Domains shared by unrelated people (built-in list plus the config's extras): parameter 1.
create or replace temp table free_mail_domains as
select distinct lower(trim(domain)) as domain
from (select unnest(?::VARCHAR[]) as domain)
where trim(domain) <> ''
