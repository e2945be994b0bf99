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
    IF p_days > 1000000 THEN
        RAISE EXCEPTION '%: p_days % is longer than the longest window, 1000000 days',
            p_function, p_days
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for all time, or a window of at most 1000000 days (about '
                      '2,700 years).';
    END IF;
    IF p_as_of IS NULL THEN
        RAISE EXCEPTION '%: p_as_of must not be NULL', p_function
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave p_as_of out for now(), or pass the end of the window.';
    END IF;
    -- Finite times of the years 1 to 9999 (what every client library can represent): with at
    -- most 1000000 days before it, the window's start is always a valid timestamp.
    IF NOT (
        p_as_of >= '0001-01-01 00:00:00+00'::timestamptz
        AND p_as_of < '10000-01-01 00:00:00+00'::timestamptz
    ) THEN
        RAISE EXCEPTION '%: p_as_of % is not a time of the years 1 to 9999', p_function, p_as_of
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave p_as_of out for now(), or pass the end of the window as a '
                      'finite time, e.g. ''2026-06-01''.';
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
Raises 22023 naming p_function for p_days <= 0 or > 1000000, and for a p_as_of that is NULL,
infinite or outside the years 1 to 9999 (so the start is always a valid timestamp).';

REVOKE ALL ON FUNCTION crm_private.analytics_window_start(text, integer, timestamptz) FROM public;
