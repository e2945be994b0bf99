-- crm_private.refused_null('clients', '{"id": "0b4f…", "name": null, ...}') -> name

CREATE OR REPLACE FUNCTION crm_private.refused_null(p_table text, p_row jsonb)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = ''
RETURN (
    SELECT a.attname::text
    FROM pg_catalog.pg_attribute AS a
    WHERE
        a.attrelid = pg_catalog.to_regclass('crm.' || p_table)
        AND a.attnum > 0
        AND NOT a.attisdropped
        AND a.attnotnull
        AND pg_catalog.jsonb_typeof(p_row -> a.attname::text) IS NOT DISTINCT FROM 'null'
    ORDER BY a.attnum
    LIMIT 1
);

COMMENT ON FUNCTION crm_private.refused_null(text, jsonb) IS
'The first NOT NULL column of crm.<p_table>, in table order, that the row p_row (a trigger''s NEW
as jsonb) leaves NULL; NULL when there is none.';

REVOKE ALL ON FUNCTION crm_private.refused_null(text, jsonb) FROM public;
