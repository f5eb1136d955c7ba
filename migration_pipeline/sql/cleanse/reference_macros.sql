-- Helpers for re-pointing references (temporary macros, gone with the connection).
--
-- reference_problem(kind, source_id, target_status): why a reference to `kind` `source_id`
-- cannot be kept, given the referenced row's status in clean.persons / clean.organizations
-- (null when no such row exists); null when it can. A merged record is never a problem: the
-- reference moves to its survivor.
create or replace temp macro reference_problem(kind, source_id, target_status) as
    case
        when source_id is null then null
        when target_status is null then format('{} {} not found', kind, source_id)
        when target_status = 'deleted' then format('{} {} is deleted in Pipedrive', kind, source_id)
    end;
