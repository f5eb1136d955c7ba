-- Blocking rules for persons: two persons are compared only if they share an e-mail, the
-- last 9 digits of a phone, or, within one (surviving) organization, a name word of 3+
-- letters and the initial of another word of the name (sound-words: see cleanse/names.py).
-- The last rule finds a typo, an initial or a dropped patronymic ("Petrov Ivan Sergeevich",
-- "Petorv Ivan" and "I. Petrov" meet "Ivan Petrov") without comparing every two Ivans of a
-- company. There is no rule for a name alone: without a shared phone, e-mail or organization
-- two equal names are never merged, so comparing every two John Smiths would be wasted work.
-- Input: person_features, person_names (name → sorted sound-words).
create or replace temp table person_block_keys as
select 'email' as rule, unnest(emails) as key, id from person_features
union all
select 'phone', unnest(phones), id from person_features
union all
select 'organization_name', format('{}:{}:{}', f.org_id, w.word, left(o.word, 1)), f.id
from person_features f
join person_names n on n.raw_name = f.display_name
cross join unnest(n.tokens) with ordinality as w(word, place)
cross join unnest(n.tokens) with ordinality as o(word, place)
where f.org_id is not null and length(w.word) >= 3 and o.place <> w.place
