-- SELECT * FROM crm.get_funnel_analytics('6f1c…', 90);
-- SELECT * FROM crm.get_funnel_analytics('6f1c…', NULL, now(), p_currency => 'USD');

CREATE OR REPLACE FUNCTION crm.get_funnel_analytics(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now(),
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    total_leads bigint,
    meetings_booked bigint,
    meetings_showed bigint,
    deals_created bigint,
    deals_won bigint,
    total_pipeline_value numeric,
    total_won_value numeric,
    show_rate numeric,
    deal_win_rate numeric,
    lead_to_meeting_rate numeric,
    lead_to_win_rate numeric
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_funnel_analytics', p_days, p_as_of
            ) AS start_at
    ),

    cohort AS (
        SELECT l.id
        FROM params AS p
        INNER JOIN crm.leads AS l
            ON
                l.client_id = p_client_id
                AND l.created_at >= p.start_at
                AND l.created_at < p_as_of
        WHERE l.deleted_at IS NULL
    ),

    -- The client's meetings per lead first, then matched with the cohort (a hash join of two
    -- sets, rather than one index probe per cohort lead).
    lead_meetings AS (
        SELECT
            m.lead_id AS id,
            bool_or(m.scheduled_at < p_as_of AND m.showed_up) AS showed
        FROM crm.meetings AS m
        WHERE
            m.client_id = p_client_id
            AND m.deleted_at IS NULL
            AND m.booked_at < p_as_of
        GROUP BY m.lead_id
    ),

    -- The client's deals as one set, matched with the cohort by a hash join (MATERIALIZED keeps
    -- the planner from probing the deals index once per cohort lead).
    client_deals AS MATERIALIZED (
        SELECT
            d.lead_id,
            d.value,
            d.currency,
            d.stage = 'closed_won' AND d.closed_at < p_as_of AS won,
            d.stage = 'closed_lost' AND d.closed_at < p_as_of AS lost
        FROM crm.deals AS d
        WHERE
            d.client_id = p_client_id
            AND d.deleted_at IS NULL
            AND d.created_at < p_as_of
            AND (p_currency IS NULL OR d.currency = p_currency)
    ),

    cohort_deals AS (
        SELECT cd.*
        FROM client_deals AS cd
        INNER JOIN cohort AS c ON cd.lead_id = c.id
    ),

    deal_totals AS (
        SELECT
            count(*) AS created,
            count(*) FILTER (WHERE cd.won) AS won,
            count(DISTINCT cd.lead_id) FILTER (WHERE cd.won) AS won_leads,
            count(*) FILTER (WHERE cd.lost) AS lost,
            coalesce(sum(cd.value), 0) AS pipeline_value,
            coalesce(sum(cd.value) FILTER (WHERE cd.won), 0) AS won_value,
            crm_private.analytics_one_currency(
                'get_funnel_analytics', array_agg(DISTINCT cd.currency)
            ) AS one_currency
        FROM cohort_deals AS cd
    ),

    lead_totals AS (
        SELECT
            (SELECT count(*) FROM cohort) AS leads,
            count(*) AS booked,
            count(*) FILTER (WHERE lm.showed) AS showed
        FROM lead_meetings AS lm
        INNER JOIN cohort AS c ON lm.id = c.id
    )

    SELECT
        lt.leads AS total_leads,
        lt.booked AS meetings_booked,
        lt.showed AS meetings_showed,
        dt.created AS deals_created,
        dt.won AS deals_won,
        dt.pipeline_value AS total_pipeline_value,
        dt.won_value AS total_won_value,
        round(100.0 * lt.showed / nullif(lt.booked, 0), 2) AS show_rate,
        round(100.0 * dt.won / nullif(dt.won + dt.lost, 0), 2) AS deal_win_rate,
        round(100.0 * lt.booked / nullif(lt.leads, 0), 2) AS lead_to_meeting_rate,
        round(100.0 * dt.won_leads / nullif(lt.leads, 0), 2) AS lead_to_win_rate
    FROM lead_totals AS lt
    CROSS JOIN deal_totals AS dt
    -- The window check runs once, before any scan: p_days is checked even for an empty scope.
    WHERE
        crm_private.analytics_scope_check('get_funnel_analytics', p_client_id, p_currency)
        AND crm_private.analytics_window_start('get_funnel_analytics', p_days, p_as_of) IS NOT NULL
        AND dt.one_currency;
END;

COMMENT ON FUNCTION crm.get_funnel_analytics(uuid, integer, timestamptz, text) IS
'Lead funnel of the cohort of the client''s leads created in [p_as_of - p_days days, p_as_of)
(p_days NULL: all time), everything counted as of p_as_of. total_leads; meetings_booked and
meetings_showed count leads with at least one meeting booked / held; deals_created and deals_won
count the cohort''s deals (won = closed_won); total_pipeline_value and total_won_value sum their
value. show_rate = meetings_showed / meetings_booked (a lead-level rate, unlike
get_show_rate_analysis); deal_win_rate = won / (won + lost); lead_to_meeting_rate =
meetings_booked / total_leads; lead_to_win_rate = leads with a won deal / total_leads (so it
stays within 0-100 when a lead wins several deals). Rates are percentages
rounded to 2 decimals, NULL when the denominator is 0. Raises 22023 for a NULL p_client_id,
p_days <= 0 or > 1000000, a p_as_of that is NULL, infinite or outside the years 1-9999, a
p_currency that is not three upper-case letters, or when the deals carry several currencies and
p_currency is not given (p_currency keeps only deals in that currency). See docs/analytics.md.';

REVOKE ALL ON FUNCTION crm.get_funnel_analytics(uuid, integer, timestamptz, text) FROM public;
