-- crm_private.refusal_value('Mars/Olympus') -> 'Mars/Olympus' (quoted, as a refusal shows it)

CREATE OR REPLACE FUNCTION crm_private.refusal_value(p_value text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
RETURN CASE
    WHEN p_value IS NULL THEN 'NULL'
    WHEN pg_catalog.length(p_value) <= 80 THEN pg_catalog.quote_literal(p_value)
    ELSE
        pg_catalog.quote_literal(pg_catalog.left(p_value, 60))
        || pg_catalog.format('... (%s characters)', pg_catalog.length(p_value))
END;

COMMENT ON FUNCTION crm_private.refusal_value(text) IS
'A refused value as an error message shows it: quoted as an SQL literal, NULL as NULL, and a
value longer than 80 characters cut to its first 60, followed by its length.';

REVOKE ALL ON FUNCTION crm_private.refusal_value(text) FROM public;
