-- crm_private.attribution_model_check('get_channel_revenue_attribution', 'linear', 7) -> true

CREATE OR REPLACE FUNCTION crm_private.attribution_model_check(
    p_function text,
    p_model text,
    p_half_life_days double precision
)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    IF p_model IS NULL OR p_model NOT IN (
        'first_touch', 'last_touch', 'linear', 'time_decay', 'position_based', 'j_shaped',
        'inverse_j'
    ) THEN
        RAISE EXCEPTION '%: p_model % is not an attribution model',
            p_function, coalesce(pg_catalog.quote_literal(p_model), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid models: first_touch, last_touch, linear, time_decay, '
                      'position_based, j_shaped, inverse_j.';
    END IF;
    -- NaN is greater than every number in PostgreSQL: "> 0" alone would let it through.
    IF p_half_life_days IS NULL
        OR NOT (p_half_life_days > 0 AND p_half_life_days < 'Infinity'::double precision) THEN
        RAISE EXCEPTION '%: p_half_life_days % must be a positive, finite number of days',
            p_function, coalesce(p_half_life_days::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'p_half_life_days is the time_decay half-life in days, greater than 0 '
                      '(the default is 7).';
    END IF;
    RETURN TRUE;
END;
$$;

COMMENT ON FUNCTION crm_private.attribution_model_check(text, text, double precision) IS
'True for a known attribution model and a positive, finite half-life; raises 22023 naming
p_function, the argument and the value otherwise (listing the valid models for p_model).';

REVOKE ALL ON FUNCTION crm_private.attribution_model_check(text, text, double precision)
FROM public;
