-- SELECT * FROM crm.get_show_rate_drivers('6f1c…', 180);
-- requires: wilson_interval.sql

CREATE OR REPLACE FUNCTION crm.get_show_rate_drivers(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now()
)
RETURNS TABLE (
    dimension text,
    bucket text,
    meetings bigint,
    held bigint,
    show_rate numeric,
    ci_low numeric,
    ci_high numeric
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_show_rate_drivers', p_days, p_as_of
            ) AS start_at
    ),

    -- resolved meetings (held or no-show) scheduled in the window, as in get_show_rate_analysis
    resolved AS (
        SELECT
            m.showed_up IS TRUE AS held,
            extract(EPOCH FROM m.scheduled_at - m.booked_at) / 86400 AS lead_days,
            extract(ISODOW FROM m.scheduled_at AT TIME ZONE c.timezone)::integer AS weekday,
            m.meeting_type,
            m.booking_method,
            m.converting_channel::text AS converting_channel
        FROM params AS p
        INNER JOIN crm.meetings AS m
            ON
                m.client_id = p_client_id
                AND m.scheduled_at >= p.start_at
                AND m.scheduled_at < p_as_of
        INNER JOIN crm.clients AS c ON c.id = m.client_id
        WHERE
            m.deleted_at IS NULL
            AND coalesce(m.meeting_outcome, '') NOT IN ('cancelled', 'rescheduled')
            AND (m.showed_up IS NOT NULL OR m.meeting_outcome = 'no_show')
    ),

    buckets AS (
        SELECT
            r.held,
            b.dimension,
            b.dimension_order,
            b.bucket,
            b.bucket_order
        FROM resolved AS r
        CROSS JOIN LATERAL (
            VALUES
            (
                'lead_time', 1,
                CASE
                    WHEN r.lead_days < 1 THEN '< 1 day'
                    WHEN r.lead_days < 3 THEN '1-3 days'
                    WHEN r.lead_days < 7 THEN '3-7 days'
                    WHEN r.lead_days < 14 THEN '7-14 days'
                    ELSE '14+ days'
                END,
                CASE
                    WHEN r.lead_days < 1 THEN 1
                    WHEN r.lead_days < 3 THEN 2
                    WHEN r.lead_days < 7 THEN 3
                    WHEN r.lead_days < 14 THEN 4
                    ELSE 5
                END
            ),
            (
                'weekday', 2,
                (ARRAY[
                    'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'
                ])[r.weekday],
                r.weekday
            ),
            ('meeting_type', 3, r.meeting_type, 0),
            ('booking_method', 4, coalesce(r.booking_method, 'unknown'), 0),
            ('converting_channel', 5, coalesce(r.converting_channel, 'unknown'), 0)
        ) AS b (dimension, dimension_order, bucket, bucket_order)
    ),

    counts AS (
        SELECT
            b.dimension,
            b.dimension_order,
            b.bucket,
            b.bucket_order,
            count(*) AS n,
            count(*) FILTER (WHERE b.held) AS held
        FROM buckets AS b
        GROUP BY b.dimension, b.dimension_order, b.bucket, b.bucket_order
    )

    SELECT
        c.dimension,
        c.bucket,
        c.n AS meetings,
        c.held,
        round(100.0 * c.held / c.n, 2) AS show_rate,
        w.low AS ci_low,
        w.high AS ci_high
    FROM counts AS c
    -- Wilson score interval, 95 %
    CROSS JOIN LATERAL crm_private.wilson_interval(c.held, c.n) AS w
    WHERE
        crm_private.analytics_scope_check('get_show_rate_drivers', p_client_id, NULL)
        AND crm_private.analytics_window_start('get_show_rate_drivers', p_days, p_as_of)
        IS NOT NULL
    ORDER BY c.dimension_order, c.bucket_order, c.bucket;
END;

COMMENT ON FUNCTION crm.get_show_rate_drivers(uuid, integer, timestamptz) IS
'What moves the show rate: the resolved meetings (held or no-show, as in
crm.get_show_rate_analysis) scheduled in [p_as_of - p_days days, p_as_of), by dimension:
lead_time (scheduled_at - booked_at: < 1 day, 1-3, 3-7, 7-14, 14+ days), weekday (of
scheduled_at in the client''s time zone), meeting_type, booking_method and converting_channel
(unknown when NULL). Per bucket: meetings (the n behind the rate), held, show_rate and its Wilson
95 % interval (ci_low, ci_high), in percent to 2 decimals. Rows by dimension in that order, then
bucket (in time order for lead_time and weekday, by name otherwise). Raises 22023 for a NULL
p_client_id, p_days <= 0 or > 1000000, or a p_as_of that is NULL, infinite or outside the years
1-9999.';

REVOKE ALL ON FUNCTION crm.get_show_rate_drivers(uuid, integer, timestamptz) FROM public;
