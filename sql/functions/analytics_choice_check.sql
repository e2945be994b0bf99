-- crm_private.analytics_choice_check('get_stage_conversion', 'p_mode', 'any', ARRAY['any'])

CREATE OR REPLACE FUNCTION crm_private.analytics_choice_check(
    p_function text,
    p_argument text,
    p_value text,
    p_choices text[]
)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    IF p_value IS NULL OR NOT p_value = ANY (p_choices) THEN
        RAISE EXCEPTION '%: % % is not one of %', p_function, p_argument,
            coalesce(pg_catalog.quote_literal(p_value), 'NULL'),
            pg_catalog.array_to_string(p_choices, ', ')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = pg_catalog.format('Pass %s => %L.', p_argument, p_choices[1]);
    END IF;
    RETURN TRUE;
END;
$$;

COMMENT ON FUNCTION crm_private.analytics_choice_check(text, text, text, text[]) IS
'True when p_value is one of p_choices; raises 22023 naming p_function, the argument, the value and
the choices otherwise.';

REVOKE ALL ON FUNCTION crm_private.analytics_choice_check(text, text, text, text[]) FROM public;
