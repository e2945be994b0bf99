-- crm_private.refused_timestamp('activities', '{"occurred_at": "-infinity", ...}')
-- -> occurred_at
-- requires: timestamp_window.sql

CREATE OR REPLACE FUNCTION crm_private.refused_timestamp(p_table text, p_row jsonb)
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
        AND a.atttypid = 'pg_catalog.timestamptz'::pg_catalog.regtype
        AND NOT ((p_row ->> a.attname::text)::timestamptz <@ crm_private.timestamp_window())
    ORDER BY a.attnum
    LIMIT 1
);

COMMENT ON FUNCTION crm_private.refused_timestamp(text, jsonb) IS
'The first timestamptz column of crm.<p_table>, in table order, whose value in the row p_row (a
trigger''s NEW as jsonb) is outside crm_private.timestamp_window(); NULL when there is none.';

REVOKE ALL ON FUNCTION crm_private.refused_timestamp(text, jsonb) FROM public;
