-- crm_private.analytics_currency_check('get_agency_comparison', 'AUD') -> true

CREATE OR REPLACE FUNCTION crm_private.analytics_currency_check(
    p_function text,
    p_currency text
)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    -- The shape deals.currency must have (deals_currency_check): anything else matches no
    -- deal and would report zeros as if the client had none.
    IF p_currency !~ '^[A-Z]{3}$' THEN
        RAISE EXCEPTION '%: p_currency % is not an ISO-4217 currency code',
            p_function, pg_catalog.quote_literal(p_currency)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass three upper-case letters, e.g. p_currency => ''AUD'', or leave '
                      'p_currency out when the deals in scope carry one currency.';
    END IF;
    RETURN TRUE;
END;
$$;

COMMENT ON FUNCTION crm_private.analytics_currency_check(text, text) IS
'True for a p_currency that is NULL or an ISO-4217 code (three upper-case letters); raises 22023
naming p_function and the value otherwise.';

REVOKE ALL ON FUNCTION crm_private.analytics_currency_check(text, text) FROM public;
