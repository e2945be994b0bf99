-- crm_private.analytics_window_start('get_funnel_analytics', 90, now()) -> now() - 90 days

CREATE OR REPLACE FUNCTION crm_private.analytics_window_start(
    p_function text,
    p_days integer,
    p_as_of timestamptz
)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    IF p_days <= 0 THEN
        RAISE EXCEPTION '%: p_days % must be a positive number of days', p_function, p_days
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the window length in days, e.g. 90, or NULL for all time.';
    END IF;
    IF p_as_of IS NULL THEN
        RAISE EXCEPTION '%: p_as_of must not be NULL', p_function
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave p_as_of out for now(), or pass the end of the window.';
    END IF;
    -- The window is [p_as_of - p_days * 24 hours, p_as_of): whole 24-hour days, so its length
    -- does not depend on the session's time zone or daylight saving.
    RETURN CASE
        WHEN p_days IS NULL THEN '-infinity'::timestamptz
        ELSE p_as_of - p_days * interval '24 hours'
    END;
END;
$$;

COMMENT ON FUNCTION crm_private.analytics_window_start(text, integer, timestamptz) IS
'Start of an analytics window [p_as_of - p_days * 24 h, p_as_of); -infinity when p_days is NULL.
Raises 22023 naming p_function for p_days <= 0 or a NULL p_as_of.';

REVOKE ALL ON FUNCTION crm_private.analytics_window_start(text, integer, timestamptz) FROM public;
