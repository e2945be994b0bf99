-- crm_private.refusal_message('clients', '0b4f…', 'timezone', 'Mars/Olympus',
--     'is not a time zone PostgreSQL knows')
-- -> crm.clients 0b4f…: timezone 'Mars/Olympus' is not a time zone PostgreSQL knows
-- requires: refusal_value.sql

CREATE OR REPLACE FUNCTION crm_private.refusal_message(
    p_table text,
    p_id uuid,
    p_column text,
    p_value text,
    p_problem text
)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
RETURN pg_catalog.format(
    'crm.%s %s: %s%s %s',
    p_table,
    coalesce(p_id::text, '(no id)'),
    p_column,
    CASE WHEN p_value IS NOT NULL THEN ' ' || crm_private.refusal_value(p_value) ELSE '' END,
    p_problem
);

COMMENT ON FUNCTION crm_private.refusal_message(text, uuid, text, text, text) IS
'The message of a refused write, as every validate trigger words it: "crm.<table> <id>: <column>
<value> <problem>", the value quoted and cut by crm_private.refusal_value, left out when p_value
is NULL (a secret, or a problem that says NULL itself).';

REVOKE ALL ON FUNCTION crm_private.refusal_message(text, uuid, text, text, text) FROM public;
