-- Helpers for the selection files (temporary macros, gone with the connection).
--
-- utc_day(ts): the UTC calendar day of a timestamp (never the session's time zone, so the
-- same data selects the same records on every machine).
--
-- window_rule(what, policy, months, day, reference): whether a closed record falls in its
-- window, and the reason in words: policy `all` (always), `none` (never) or `within` (its day
-- is at most `months` months before the reference date). No day under `within` is outside.
--
-- blocked_by(kind, id, decision, reason): for a record attached to a parent (deal, lead,
-- person, organization): why it cannot migrate when its parent does not (the parent is
-- missing, failed, or archived/merged); null when the parent migrates.
create or replace temp macro utc_day(ts) as timezone('UTC', ts)::DATE;

create or replace temp macro window_rule(what, policy, months, day, reference) as
    case policy
        when 'all' then {'migrate': true, 'reason': format('{}: policy all', what)}
        when 'none' then {'migrate': false, 'reason': format('{}: policy none', what)}
        else case
            when day is null then {
                'migrate': false, 'reason': format('{} with no date: outside the window', what)
            }
            when day >= (reference - to_months(months))::DATE then {
                'migrate': true,
                'reason': format('{} on {}, within {} months of {}', what, day, months, reference)
            }
            else {
                'migrate': false,
                'reason': format(
                    '{} on {}, more than {} months before {}', what, day, months, reference
                )
            }
        end
    end;

create or replace temp macro blocked_by(kind, parent_id, parent_decision, parent_reason) as
    case
        when parent_decision is null then {
            'decision': 'archive', 'reason': format('{} {} not found', kind, parent_id)
        }
        when parent_decision = 'failed' then {
            'decision': 'failed',
            'reason': format('{} {} failed: {}', kind, parent_id, parent_reason)
        }
        when parent_decision <> 'migrate' then {
            'decision': 'archive',
            'reason': format('{} {} does not migrate ({})', kind, parent_id, parent_reason)
        }
    end;
