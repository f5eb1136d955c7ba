-- Comparison helpers shared by the pair files (temporary macros, gone with the connection).
-- Lambda variables have long names: a macro is inlined, so a short one (i) would capture the
-- caller's variable of the same name.
--
-- one_typo(a, b): the two words are one keyboard slip apart: two neighbouring letters
-- swapped, one letter dropped or one doubled (Damerau-Levenshtein distance 1 without a
-- substitution: Anna and Inna are two names). Spelled out on characters, because DuckDB's
-- edit distances count UTF-8 bytes (a swapped Cyrillic pair would be 4 edits). Words shorter
-- than 3-4 letters never count, nor a trailing "a" (Petrov and Petrova are usually husband
-- and wife, not a typo).
--
-- words_covered(s_tokens, s_plain, g_tokens, g_plain): every word of name s (2+ words) is a
-- word of name g, one typo from one (as written, or as sound-words: a typo in one script
-- and the other script's spelling), or the initial of one (either way); and at least one
-- word is equal. "I. Petrov" and "Petorv Ivan" are covered by "Ivan Petrov"; "Ivan Petrov"
-- is covered by "Petrov Ivan Sergeevich".
create or replace temp macro one_typo(a, b) as
    least(length(a), length(b)) >= 3
    and greatest(length(a), length(b)) >= 4
    and a || 'a' <> b
    and b || 'a' <> a
    and case
        -- one letter dropped from the longer word (or doubled in it)
        when length(a) = length(b) + 1 then list_bool_or(list_transform(
            range(1, length(a) + 1), lambda typo_at: substring(a, 1, typo_at - 1) || substring(a, typo_at + 1) = b
        ))
        when length(b) = length(a) + 1 then list_bool_or(list_transform(
            range(1, length(b) + 1), lambda typo_at: substring(b, 1, typo_at - 1) || substring(b, typo_at + 1) = a
        ))
        -- two neighbouring letters swapped
        when length(a) = length(b) and a <> b then list_bool_or(list_transform(
            range(1, length(a)), lambda typo_at:
                substring(a, 1, typo_at - 1) || substring(a, typo_at + 1, 1) || substring(a, typo_at, 1)
                    || substring(a, typo_at + 2) = b
        ))
        else false
    end;

create or replace temp macro words_covered(s_tokens, s_plain, g_tokens, g_plain) as
    len(s_tokens) >= 2
    and len(s_tokens) <= len(g_tokens)
    and len(list_intersect(s_tokens, g_tokens)) >= 1
    and list_bool_and(list_transform(range(1, len(s_tokens) + 1), lambda word_at:
        list_contains(g_tokens, s_tokens[word_at])
        or list_bool_or(list_transform(range(1, len(g_tokens) + 1), lambda other_at:
            one_typo(s_plain[word_at], g_plain[other_at])
            or one_typo(s_tokens[word_at], g_tokens[other_at])
            or (
                length(s_plain[word_at]) <= 2
                and starts_with(g_plain[other_at], s_plain[word_at])
            )
            or (
                length(s_tokens[word_at]) <= 2
                and starts_with(g_tokens[other_at], s_tokens[word_at])
            )
        ))
    ));
