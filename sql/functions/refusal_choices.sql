-- crm_private.refusal_choices('client_crm_configs', 'client_crm_configs_crm_type_check',
--     'HubSpot') -> Use one of: hubspot, pipedrive, close. Did you mean hubspot?

CREATE OR REPLACE FUNCTION crm_private.refusal_choices(
    p_table text,
    p_constraint text,
    p_value text
)
RETURNS text
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    v_allowed text[];
    v_meant text;
BEGIN
    -- The words are the constraint's own (column IN ('a', 'b', ...)), so the hint can never
    -- disagree with the rule that is the last line of defence.
    SELECT array_agg(pg_catalog.replace(m.word[1], '''''', '''') ORDER BY m.n)
    INTO v_allowed
    FROM pg_catalog.pg_constraint AS con
    CROSS JOIN LATERAL pg_catalog.regexp_matches(
        pg_catalog.pg_get_constraintdef(con.oid), '''((?:[^'']|'''')*)''::text', 'g'
    ) WITH ORDINALITY AS m (word, n)
    WHERE con.conrelid = pg_catalog.to_regclass('crm.' || p_table)
      AND con.conname = p_constraint;
    SELECT a.word INTO v_meant
    FROM unnest(v_allowed) AS a (word)
    WHERE pg_catalog.lower(a.word) = pg_catalog.lower(pg_catalog.btrim(p_value))
    LIMIT 1;
    RETURN pg_catalog.format(
        'Use one of: %s.%s',
        pg_catalog.array_to_string(v_allowed, ', '),
        CASE WHEN v_meant IS NOT NULL THEN pg_catalog.format(' Did you mean %s?', v_meant) END
    );
END;
$$;

COMMENT ON FUNCTION crm_private.refusal_choices(text, text, text) IS
'The HINT for a value that a CHECK of crm.<p_table> of the form column IN (...) refuses: the
accepted words, read from the constraint itself, and the one meant when only case or
surrounding spaces differ from p_value.';

REVOKE ALL ON FUNCTION crm_private.refusal_choices(text, text, text) FROM public;
