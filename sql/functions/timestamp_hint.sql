-- crm_private.timestamp_hint('leads', 'deleted_at')
-- -> Give a time from 1900-01-01 00:00 UTC (included) to 2200-01-01 00:00 UTC (excluded) ...
-- requires: timestamp_window.sql

CREATE OR REPLACE FUNCTION crm_private.timestamp_hint(p_table text, p_column text)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = ''
RETURN pg_catalog.format(
    'Give a time from %s UTC (included) to %s UTC (excluded); infinity and -infinity are not '
    'accepted.%s',
    pg_catalog.to_char(
        pg_catalog.lower(crm_private.timestamp_window()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'
    ),
    pg_catalog.to_char(
        pg_catalog.upper(crm_private.timestamp_window()) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'
    ),
    (
        SELECT pg_catalog.format(' Leave %s NULL when there is none.', a.attname)
        FROM pg_catalog.pg_attribute AS a
        WHERE
            a.attrelid = pg_catalog.to_regclass('crm.' || p_table)
            AND a.attname = p_column
            AND NOT a.attnotnull
    )
);

COMMENT ON FUNCTION crm_private.timestamp_hint(text, text) IS
'The HINT for a time outside crm_private.timestamp_window() in column p_column of crm.<p_table>:
the window, and that NULL is the way to say "none" where the column allows it.';

REVOKE ALL ON FUNCTION crm_private.timestamp_hint(text, text) FROM public;
