-- SELECT * FROM crm.get_show_rate_analysis('6f1c…', 90);
-- SELECT * FROM crm.get_show_rate_analysis('6f1c…', 30, '2026-11-01');

CREATE OR REPLACE FUNCTION crm.get_show_rate_analysis(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now()
)
RETURNS TABLE (
    total_meetings bigint,
    show_rate numeric,
    no_show_rate numeric,
    reschedule_rate numeric,
    confirmed_show_rate numeric,
    reminded_show_rate numeric,
    unresolved_meetings bigint
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_show_rate_analysis', p_days, p_as_of
            ) AS start_at
    ),

    classified AS (
        SELECT
            m.rescheduled_count > 0 OR m.meeting_outcome = 'rescheduled' AS rescheduled,
            m.confirmed AND m.confirmed_at < m.scheduled_at AS confirmed_before,
            m.reminder_sent AND m.reminder_sent_at < m.scheduled_at AS reminded_before,
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
        WHERE m.deleted_at IS NULL
    ),

    counts AS (
        SELECT
            count(*) AS total,
            count(*) FILTER (WHERE c.state = 'held') AS held,
            count(*) FILTER (WHERE c.state = 'no_show') AS no_show,
            count(*) FILTER (WHERE c.state = 'unresolved') AS unresolved,
            count(*) FILTER (WHERE c.rescheduled) AS rescheduled,
            count(*) FILTER (WHERE c.confirmed_before AND c.state = 'held') AS confirmed_held,
            count(*) FILTER (
                WHERE c.confirmed_before AND c.state IN ('held', 'no_show')
            ) AS confirmed_resolved,
            count(*) FILTER (WHERE c.reminded_before AND c.state = 'held') AS reminded_held,
            count(*) FILTER (
                WHERE c.reminded_before AND c.state IN ('held', 'no_show')
            ) AS reminded_resolved
        FROM classified AS c
    )

    SELECT
        n.total AS total_meetings,
        round(100.0 * n.held / nullif(n.held + n.no_show, 0), 2) AS show_rate,
        round(100.0 * n.no_show / nullif(n.held + n.no_show, 0), 2) AS no_show_rate,
        round(100.0 * n.rescheduled / nullif(n.total, 0), 2) AS reschedule_rate,
        round(100.0 * n.confirmed_held / nullif(n.confirmed_resolved, 0), 2)
            AS confirmed_show_rate,
        round(100.0 * n.reminded_held / nullif(n.reminded_resolved, 0), 2)
            AS reminded_show_rate,
        n.unresolved AS unresolved_meetings
    FROM counts AS n
    -- Runs once, before any scan: p_days is checked even when nothing is in scope.
    WHERE
        crm_private.analytics_scope_check('get_show_rate_analysis', p_client_id, NULL)
        AND crm_private.analytics_window_start('get_show_rate_analysis', p_days, p_as_of)
        IS NOT NULL;
END;

COMMENT ON FUNCTION crm.get_show_rate_analysis(uuid, integer, timestamptz) IS
'Show rate of the client''s meetings scheduled in [p_as_of - p_days days, p_as_of) (p_days NULL:
all time). held = showed_up true; no-show = showed_up false or outcome no_show; cancelled and
still-rescheduled meetings are left out of the resolved denominator (held + no-show); past
meetings with no known attendance are counted in unresolved_meetings. show_rate = held /
resolved and no_show_rate = no-shows / resolved (they sum to 100); reschedule_rate = meetings
rescheduled at least once / total_meetings; confirmed_show_rate and reminded_show_rate = show rate
among meetings confirmed / reminded before scheduled_at. Rates are percentages rounded to 2
decimals, NULL when the denominator is 0. Soft-deleted meetings never count. Raises 22023 for a
NULL p_client_id, p_days <= 0 or > 1000000, or a p_as_of that is NULL, infinite or outside the
years 1-9999. See docs/analytics.md.';

REVOKE ALL ON FUNCTION crm.get_show_rate_analysis(uuid, integer, timestamptz) FROM public;
