-- crm_private.analytics_one_currency('get_funnel_analytics', ARRAY['AUD', 'USD']) -> raises 22023

CREATE OR REPLACE FUNCTION crm_private.analytics_one_currency(
    p_function text,
    p_currencies text[]
)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    IF pg_catalog.cardinality(p_currencies) > 1 THEN
        RAISE EXCEPTION '%: the deals in scope carry several currencies (%)',
            p_function, pg_catalog.array_to_string(p_currencies, ', ')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = pg_catalog.format(
                      'Money is never summed across currencies: pass p_currency => %L (or one '
                      'of the others) to report one currency.', p_currencies[1]
                  );
    END IF;
    RETURN TRUE;
END;
$$;

COMMENT ON FUNCTION crm_private.analytics_one_currency(text, text[]) IS
'True when the distinct currencies of the deals in scope are at most one; raises 22023 naming
p_function and the currencies otherwise, with a hint to pass p_currency.';

REVOKE ALL ON FUNCTION crm_private.analytics_one_currency(text, text[]) FROM public;
