-- crm_private.analytics_scope_check('get_funnel_analytics', '6f1c…', 'AUD') -> true

CREATE OR REPLACE FUNCTION crm_private.analytics_scope_check(
    p_function text,
    p_client_id uuid,
    p_currency text
)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    IF p_client_id IS NULL THEN
        RAISE EXCEPTION '%: p_client_id must not be NULL', p_function
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of the client to report on (crm.clients.id).';
    END IF;
    RETURN crm_private.analytics_currency_check(p_function, p_currency);
END;
$$;

COMMENT ON FUNCTION crm_private.analytics_scope_check(text, uuid, text) IS
'True for a client id that is not NULL and a p_currency that is NULL or an ISO-4217 code (three
upper-case letters); raises 22023 naming p_function, the argument and the value otherwise. An
unknown client id is not an error: it reports zeros.';

REVOKE ALL ON FUNCTION crm_private.analytics_scope_check(text, uuid, text) FROM public;
