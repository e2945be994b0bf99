-- crm_private.refusal_rule('leads', 'leads_status_check')
-- -> The rule leads_status_check: status must be one of new, contacted, ...

CREATE OR REPLACE FUNCTION crm_private.refusal_rule(p_table text, p_constraint text)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = ''
RETURN pg_catalog.format(
    'The rule %s: %s',
    p_constraint,
    pg_catalog.regexp_replace(
        coalesce(
            (
                SELECT pg_catalog.obj_description(con.oid, 'pg_constraint')
                FROM pg_catalog.pg_constraint AS con
                WHERE
                    con.conrelid = pg_catalog.to_regclass('crm.' || p_table)
                    AND con.conname = p_constraint
            ),
            -- A unique index that is not a constraint (partial: one live row per key).
            pg_catalog.obj_description(pg_catalog.to_regclass('crm.' || p_constraint), 'pg_class'),
            '(not documented)'
        ),
        '\s+', ' ', 'g'
    )
);

COMMENT ON FUNCTION crm_private.refusal_rule(text, text) IS
'The DETAIL of a refused write: the constraint (or unique index) of crm.<p_table> that would
refuse it too, and its documented rule (its COMMENT) on one line.';

REVOKE ALL ON FUNCTION crm_private.refusal_rule(text, text) FROM public;
