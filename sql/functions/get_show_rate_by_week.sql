-- SELECT * FROM crm.get_show_rate_by_week('6f1c…', 90);
-- SELECT * FROM crm.get_show_rate_by_week('6f1c…', 180, '2026-06-01');
-- requires: wilson_interval.sql

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
            count(*) FILTER (WHERE k.state IN ('held', 'no_show')) AS resolved,
            count(*) FILTER (WHERE k.state = 'held') AS held
        FROM classified AS k
        GROUP BY k.week_start
    )

    SELECT
        wk.week_start,
        wk.total AS total_meetings,
        wk.unresolved AS unresolved_meetings,
        wk.resolved AS meetings,
        wk.held,
        round(100.0 * wk.held / nullif(wk.resolved, 0), 2) AS show_rate,
        w.low AS ci_low,
        w.high AS ci_high
    FROM counts AS wk
    -- Wilson 95 % interval, as get_show_rate_drivers's (NULL for a week with none resolved)
    CROSS JOIN LATERAL crm_private.wilson_interval(wk.held, wk.resolved) AS w
    -- Runs once, before any scan: p_days is checked even when nothing is in scope.
    WHERE
        crm_private.analytics_scope_check('get_show_rate_by_week', p_client_id, NULL)
        AND crm_private.analytics_window_start('get_show_rate_by_week', p_days, p_as_of)
        IS NOT NULL
    ORDER BY wk.week_start;
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
