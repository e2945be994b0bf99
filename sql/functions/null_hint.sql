-- crm_private.null_hint('leads', 'status')
-- -> Give status a value, or leave it out of the write for its default ('new'::text). ...

CREATE OR REPLACE FUNCTION crm_private.null_hint(p_table text, p_column text)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = ''
RETURN (
    SELECT
        pg_catalog.format(
            'Give %s a value%s. %s',
            a.attname,
            CASE
                WHEN d.adbin IS NOT NULL
                    THEN pg_catalog.format(
                        ', or leave it out of the write for its default (%s)',
                        pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                    )
                ELSE ''
            END,
            pg_catalog.regexp_replace(
                coalesce(pg_catalog.col_description(a.attrelid, a.attnum), ''), '\s+', ' ', 'g'
            )
        )
    FROM pg_catalog.pg_attribute AS a
    LEFT JOIN pg_catalog.pg_attrdef AS d
        ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE
        a.attrelid = pg_catalog.to_regclass('crm.' || p_table)
        AND a.attname = p_column
);

COMMENT ON FUNCTION crm_private.null_hint(text, text) IS
'The HINT for a NULL in a required column of crm.<p_table>: give a value, or leave the column out
for its default (when it has one), and what the column holds (its COMMENT).';

REVOKE ALL ON FUNCTION crm_private.null_hint(text, text) FROM public;
