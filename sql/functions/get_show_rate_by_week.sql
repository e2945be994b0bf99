-- SELECT * FROM crm.get_show_rate_by_week('6f1c…', 90);
-- SELECT * FROM crm.get_show_rate_by_week('6f1c…', 180, '2026-06-01');

CREATE OR REPLACE FUNCTION crm.get_show_rate_by_week(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now()
)
RETURNS TABLE (
    week_start date,
    total_meetings bigint,
    unresolved_meetings bigint,
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
                'get_show_rate_by_week', p_days, p_as_of
            ) AS start_at
    ),

    -- the meetings of get_show_rate_analysis, each in exactly one of its states
    classified AS (
        SELECT
            date_trunc('week', m.scheduled_at AT TIME ZONE c.timezone)::date AS week_start,
            CASE
                WHEN m.meeting_outcome IN ('cancelled', 'rescheduled') THEN 'excluded'
                WHEN m.showed_up THEN 'held'
                WHEN NOT m.showed_up OR m.meeting_outcome = 'no_show' THEN 'no_show'
                ELSE 'unresolved'
            END AS state
        FROM params AS p
        INNER JOIN crm.meetings AS m
            ON
                m.client_id = p_client_id
                AND m.scheduled_at >= p.start_at
                AND m.scheduled_at < p_as_of
        INNER JOIN crm.clients AS c ON c.id = m.client_id
        WHERE m.deleted_at IS NULL
    ),

    counts AS (
        SELECT
            k.week_start,
            count(*) AS total,
            count(*) FILTER (WHERE k.state = 'unresolved') AS unresolved,
            count(*) FILTER (WHERE k.state IN ('held', 'no_show')) AS n,
            count(*) FILTER (WHERE k.state = 'held') AS held
        FROM classified AS k
        GROUP BY k.week_start
    ),

    -- Wilson score interval, 95 % (z = 1.959964), as in get_show_rate_drivers
    wilson AS (
        SELECT
            n.*,
            -- NULL for a week with no resolved meeting: no rate, no interval
            nullif(n.n, 0)::double precision AS nn,
            n.held::double precision / nullif(n.n, 0) AS p,
            3.841458820694124::double precision AS z2
        FROM counts AS n
    )

    SELECT
        w.week_start,
        w.total AS total_meetings,
        w.unresolved AS unresolved_meetings,
        w.n AS meetings,
        w.held,
        round(100.0 * w.held / nullif(w.n, 0), 2) AS show_rate,
        round(
            (100 * (w.p + w.z2 / (2 * w.nn) - sqrt(w.z2) * sqrt(
                w.p * (1 - w.p) / w.nn + w.z2 / (4.0 * w.nn * w.nn)
            )) / (1 + w.z2 / w.nn))::numeric,
            2
        ) AS ci_low,
        round(
            (100 * (w.p + w.z2 / (2 * w.nn) + sqrt(w.z2) * sqrt(
                w.p * (1 - w.p) / w.nn + w.z2 / (4.0 * w.nn * w.nn)
            )) / (1 + w.z2 / w.nn))::numeric,
            2
        ) AS ci_high
    FROM wilson AS w
    -- Runs once, before any scan: p_days is checked even when nothing is in scope.
    WHERE
        crm_private.analytics_scope_check('get_show_rate_by_week', p_client_id, NULL)
        AND crm_private.analytics_window_start('get_show_rate_by_week', p_days, p_as_of)
        IS NOT NULL
    ORDER BY w.week_start;
END;

COMMENT ON FUNCTION crm.get_show_rate_by_week(uuid, integer, timestamptz) IS
'Show rate week by week: the meetings of crm.get_show_rate_analysis (scheduled in [p_as_of -
p_days days, p_as_of), p_days NULL: all time) by the week of scheduled_at, weeks starting on
Monday in the client''s time zone (week_start; the first and last weeks may be cut by the
window). Per week: total_meetings and unresolved_meetings (they sum to get_show_rate_analysis''s),
meetings = the resolved ones (held + no-show: the n behind the rate, as in
crm.get_show_rate_drivers), held, show_rate = held / meetings and its Wilson 95 % interval (ci_low,
ci_high), in percent to 2 decimals, NULL when no meeting of the week is resolved. Weeks without a
meeting have no row. Rows by week_start. Raises 22023 for a NULL p_client_id, p_days <= 0 or >
1000000, or a p_as_of that is NULL, infinite or outside the years 1-9999.';

REVOKE ALL ON FUNCTION crm.get_show_rate_by_week(uuid, integer, timestamptz) FROM public;
