-- SELECT * FROM crm.get_agency_comparison(90);
-- SELECT * FROM crm.get_agency_comparison(365, '2026-06-01', p_currency => 'AUD');
-- requires: get_show_rate_analysis.sql, get_pipeline_velocity.sql, get_funnel_analytics.sql
-- requires: get_channel_revenue_attribution.sql, wilson_interval.sql, analytics_currency_check.sql

CREATE OR REPLACE FUNCTION crm.get_agency_comparison(
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now(),
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    client_id uuid,
    client_name text,
    currency text,
    meetings bigint,
    held_meetings bigint,
    show_rate numeric,
    show_rate_ci_low numeric,
    show_rate_ci_high numeric,
    closed_deals bigint,
    won_deals bigint,
    win_rate numeric,
    win_rate_ci_low numeric,
    win_rate_ci_high numeric,
    pipeline_value numeric,
    won_value numeric,
    avg_cycle_days numeric,
    best_channel text,
    best_channel_yield numeric,
    best_channel_leads bigint,
    other_currency_deals bigint,
    agency_meetings bigint,
    agency_show_rate numeric,
    agency_show_rate_ci_low numeric,
    agency_show_rate_ci_high numeric,
    agency_closed_deals bigint,
    agency_win_rate numeric,
    agency_win_rate_ci_low numeric,
    agency_win_rate_ci_high numeric,
    pooled_show_rate numeric,
    pooled_win_rate numeric,
    median_show_rate numeric,
    median_win_rate numeric,
    median_pipeline_value numeric,
    median_won_value numeric,
    median_cycle_days numeric,
    median_channel_yield numeric,
    clients bigint,
    show_rate_rank integer,
    show_rate_rank_of bigint,
    win_rate_rank integer,
    win_rate_rank_of bigint,
    pipeline_value_rank integer,
    pipeline_value_rank_of bigint,
    won_value_rank integer,
    won_value_rank_of bigint,
    cycle_days_rank integer,
    cycle_days_rank_of bigint,
    channel_yield_rank integer,
    channel_yield_rank_of bigint,
    show_rate_below_agency boolean,
    win_rate_below_agency boolean
)
LANGUAGE sql
STABLE
SET search_path = ''
-- The plan is large (a dozen functions per client row) but each part is small: JIT compiling
-- it costs seconds once the estimated cost passes jit_above_cost, and saves nothing.
SET jit = off
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_agency_comparison', p_days, p_as_of
            ) AS start_at
    ),

    -- The live clients the caller may see (row-level security applies: SECURITY INVOKER).
    -- The checks are a one-time filter, so they run before any per-client function (whose
    -- errors would name that function) and even when no client is visible.
    scope AS (
        SELECT
            c.id,
            c.name,
            coalesce(p_currency, c.default_currency) AS currency
        FROM crm.clients AS c
        WHERE
            c.deleted_at IS NULL
            AND crm_private.analytics_currency_check('get_agency_comparison', p_currency)
            AND crm_private.analytics_window_start('get_agency_comparison', p_days, p_as_of)
            IS NOT NULL
    ),

    -- The n behind each show rate: the resolved meetings (held or no-show) of
    -- crm.get_show_rate_analysis, by its rules (a test holds the two to each other), counted
    -- for every client in one scan rather than by a function call per client.
    meeting_counts AS (
        SELECT
            m.client_id,
            count(*) AS resolved,
            count(*) FILTER (WHERE m.showed_up) AS held
        FROM scope AS s
        CROSS JOIN params AS p
        INNER JOIN crm.meetings AS m
            ON
                m.client_id = s.id
                AND m.scheduled_at >= p.start_at
                AND m.scheduled_at < p_as_of
        WHERE
            m.deleted_at IS NULL
            AND coalesce(m.meeting_outcome, '') NOT IN ('cancelled', 'rescheduled')
            AND (m.showed_up IS NOT NULL OR m.meeting_outcome = 'no_show')
        GROUP BY m.client_id
    ),

    -- Channel yield. The leads each channel reached in the window (a live touch of a live
    -- lead), and the won value the linear attribution credits each channel with.
    reached AS (
        SELECT
            act.client_id,
            act.channel::text AS channel,
            count(DISTINCT act.lead_id) AS leads
        FROM scope AS s
        CROSS JOIN params AS p
        INNER JOIN crm.activities AS act
            ON
                act.client_id = s.id
                AND act.occurred_at >= p.start_at
                AND act.occurred_at < p_as_of
        INNER JOIN crm.leads AS l
            ON l.client_id = act.client_id AND l.id = act.lead_id
        WHERE act.deleted_at IS NULL AND l.deleted_at IS NULL
        GROUP BY act.client_id, act.channel
    ),

    credited AS (
        SELECT
            s.id AS client_id,
            a.channel,
            a.total_value
        FROM scope AS s
        CROSS JOIN LATERAL crm.get_channel_revenue_attribution(
            s.id, p_days, 'linear', p_as_of, 7, s.currency
        ) AS a
    ),

    -- Per channel that reached a lead: won value credited per lead reached. The best channel
    -- has the highest yield above 0 (ties: by name).
    yields AS (
        SELECT
            r.client_id,
            r.channel,
            r.leads,
            round(coalesce(cr.total_value, 0) / r.leads, 2) AS yield
        FROM reached AS r
        LEFT JOIN credited AS cr
            ON cr.client_id = r.client_id AND cr.channel = r.channel
    ),

    best_channels AS (
        SELECT
            y.client_id,
            max(y.yield) AS yield,
            (array_agg(y.channel ORDER BY y.yield DESC, y.channel ASC) FILTER (
                WHERE y.yield > 0
            ))[1] AS channel,
            (array_agg(y.leads ORDER BY y.yield DESC, y.channel ASC) FILTER (
                WHERE y.yield > 0
            ))[1] AS leads
        FROM yields AS y
        GROUP BY y.client_id
    ),

    -- The client's deals in scope of its row (created before p_as_of, not closed before the
    -- window) that are in another currency: left out of every deal number of the row.
    other_currency AS (
        SELECT
            s.id AS client_id,
            count(*) AS deals
        FROM scope AS s
        CROSS JOIN params AS p
        INNER JOIN crm.deals AS d
            ON
                d.client_id = s.id
                AND d.created_at < p_as_of
                AND (d.closed_at IS NULL OR d.closed_at >= p.start_at)
        WHERE d.deleted_at IS NULL AND d.currency <> s.currency
        GROUP BY s.id
    ),

    -- Every number comes from the per-client functions called with the same arguments (money
    -- in the row's currency), so the two can never disagree. The one-row functions are read
    -- under LIMIT 1, which tells the planner they return one row: its default guess of 1000
    -- rows per call compounds into billions, whose cost sends the query to JIT compilation
    -- for seconds.
    per_client AS (
        SELECT
            s.id,
            s.name,
            s.currency,
            sra.show_rate,
            coalesce(mc.resolved, 0) AS resolved,
            coalesce(mc.held, 0) AS held,
            pv.won_deals + pv.lost_deals AS closed_deals,
            pv.won_deals,
            pv.win_rate,
            pv.avg_cycle_days,
            fa.total_pipeline_value AS pipeline_value,
            fa.total_won_value AS won_value,
            bc.channel AS best_channel,
            bc.yield AS best_channel_yield,
            bc.leads AS best_channel_leads,
            coalesce(oc.deals, 0) AS other_currency_deals
        FROM scope AS s
        CROSS JOIN
            LATERAL (
                SELECT x.show_rate
                FROM crm.get_show_rate_analysis(s.id, p_days, p_as_of) AS x
                LIMIT 1  -- noqa: AM09
            ) AS sra
        CROSS JOIN
            LATERAL (
                SELECT
                    x.won_deals,
                    x.lost_deals,
                    x.win_rate,
                    x.avg_cycle_days
                FROM crm.get_pipeline_velocity(s.id, p_days, p_as_of, s.currency) AS x
                LIMIT 1  -- noqa: AM09
            ) AS pv
        CROSS JOIN
            LATERAL (
                SELECT
                    x.total_pipeline_value,
                    x.total_won_value
                FROM crm.get_funnel_analytics(s.id, p_days, p_as_of, s.currency) AS x
                LIMIT 1  -- noqa: AM09
            ) AS fa
        LEFT JOIN meeting_counts AS mc ON mc.client_id = s.id
        LEFT JOIN best_channels AS bc ON bc.client_id = s.id
        LEFT JOIN other_currency AS oc ON oc.client_id = s.id
    ),

    -- The agency each client is compared with: every other visible client, pooled (two
    -- independent samples, so intervals that do not overlap mean a real difference).
    pooled AS (
        SELECT
            pc.*,
            sum(pc.resolved) OVER () AS all_resolved,
            sum(pc.held) OVER () AS all_held,
            sum(pc.closed_deals) OVER () AS all_closed,
            sum(pc.won_deals) OVER () AS all_won,
            count(*) OVER () AS clients
        FROM per_client AS pc
    ),

    -- One row per client and metric: rank (1 = best, ties share a rank) and median among the
    -- clients with a value (money: among the clients of the same currency).
    metrics AS (
        SELECT
            pc.id,
            m.metric,
            m.value,
            m.higher_is_better,
            CASE WHEN m.money THEN pc.currency END AS money_currency
        FROM per_client AS pc
        CROSS JOIN LATERAL (
            VALUES
            ('show_rate', pc.show_rate, TRUE, FALSE),
            ('win_rate', pc.win_rate, TRUE, FALSE),
            ('pipeline_value', pc.pipeline_value, TRUE, TRUE),
            ('won_value', pc.won_value, TRUE, TRUE),
            ('cycle_days', pc.avg_cycle_days, FALSE, FALSE),
            ('channel_yield', pc.best_channel_yield, TRUE, TRUE)
        ) AS m (metric, value, higher_is_better, money)
    ),

    ordered AS (
        SELECT
            mt.*,
            rank() OVER (
                PARTITION BY mt.metric, mt.money_currency, mt.value IS NULL
                ORDER BY CASE WHEN mt.higher_is_better THEN -mt.value ELSE mt.value END
            ) AS value_rank,
            row_number() OVER (
                PARTITION BY mt.metric, mt.money_currency, mt.value IS NULL
                ORDER BY mt.value
            ) AS position,
            count(mt.value) OVER (PARTITION BY mt.metric, mt.money_currency) AS ranked
        FROM metrics AS mt
    ),

    -- The median exactly, in numeric: the middle value, or the mean of the two middle ones.
    placed AS (
        SELECT
            o.id,
            o.metric,
            CASE WHEN o.value IS NOT NULL THEN o.value_rank::integer END AS value_rank,
            o.ranked,
            round(
                avg(o.value) FILTER (
                    WHERE o.position IN ((o.ranked + 1) / 2, (o.ranked + 2) / 2)
                    AND o.value IS NOT NULL
                ) OVER (PARTITION BY o.metric, o.money_currency),
                2
            ) AS median
        FROM ordered AS o
    ),

    pivoted AS (
        SELECT
            pl.id,
            max(pl.median) FILTER (WHERE pl.metric = 'show_rate') AS median_show_rate,
            max(pl.median) FILTER (WHERE pl.metric = 'win_rate') AS median_win_rate,
            max(pl.median) FILTER (WHERE pl.metric = 'pipeline_value') AS median_pipeline_value,
            max(pl.median) FILTER (WHERE pl.metric = 'won_value') AS median_won_value,
            max(pl.median) FILTER (WHERE pl.metric = 'cycle_days') AS median_cycle_days,
            max(pl.median) FILTER (WHERE pl.metric = 'channel_yield') AS median_channel_yield,
            max(pl.value_rank) FILTER (WHERE pl.metric = 'show_rate') AS show_rate_rank,
            max(pl.ranked) FILTER (WHERE pl.metric = 'show_rate') AS show_rate_rank_of,
            max(pl.value_rank) FILTER (WHERE pl.metric = 'win_rate') AS win_rate_rank,
            max(pl.ranked) FILTER (WHERE pl.metric = 'win_rate') AS win_rate_rank_of,
            max(pl.value_rank) FILTER (WHERE pl.metric = 'pipeline_value') AS pipeline_value_rank,
            max(pl.ranked) FILTER (WHERE pl.metric = 'pipeline_value') AS pipeline_value_rank_of,
            max(pl.value_rank) FILTER (WHERE pl.metric = 'won_value') AS won_value_rank,
            max(pl.ranked) FILTER (WHERE pl.metric = 'won_value') AS won_value_rank_of,
            max(pl.value_rank) FILTER (WHERE pl.metric = 'cycle_days') AS cycle_days_rank,
            max(pl.ranked) FILTER (WHERE pl.metric = 'cycle_days') AS cycle_days_rank_of,
            max(pl.value_rank) FILTER (WHERE pl.metric = 'channel_yield') AS channel_yield_rank,
            max(pl.ranked) FILTER (WHERE pl.metric = 'channel_yield') AS channel_yield_rank_of
        FROM placed AS pl
        GROUP BY pl.id
    )

    SELECT
        po.id AS client_id,
        po.name AS client_name,
        po.currency,
        po.resolved AS meetings,
        po.held AS held_meetings,
        po.show_rate,
        sw.low AS show_rate_ci_low,
        sw.high AS show_rate_ci_high,
        po.closed_deals,
        po.won_deals,
        po.win_rate,
        ww.low AS win_rate_ci_low,
        ww.high AS win_rate_ci_high,
        po.pipeline_value,
        po.won_value,
        po.avg_cycle_days,
        po.best_channel,
        po.best_channel_yield,
        po.best_channel_leads,
        po.other_currency_deals,
        (po.all_resolved - po.resolved)::bigint AS agency_meetings,
        round(
            100.0 * (po.all_held - po.held) / nullif(po.all_resolved - po.resolved, 0), 2
        ) AS agency_show_rate,
        asw.low AS agency_show_rate_ci_low,
        asw.high AS agency_show_rate_ci_high,
        (po.all_closed - po.closed_deals)::bigint AS agency_closed_deals,
        round(
            100.0 * (po.all_won - po.won_deals) / nullif(po.all_closed - po.closed_deals, 0), 2
        ) AS agency_win_rate,
        aww.low AS agency_win_rate_ci_low,
        aww.high AS agency_win_rate_ci_high,
        round(100.0 * po.all_held / nullif(po.all_resolved, 0), 2) AS pooled_show_rate,
        round(100.0 * po.all_won / nullif(po.all_closed, 0), 2) AS pooled_win_rate,
        pt.median_show_rate,
        pt.median_win_rate,
        pt.median_pipeline_value,
        pt.median_won_value,
        pt.median_cycle_days,
        pt.median_channel_yield,
        po.clients,
        pt.show_rate_rank,
        pt.show_rate_rank_of,
        pt.win_rate_rank,
        pt.win_rate_rank_of,
        pt.pipeline_value_rank,
        pt.pipeline_value_rank_of,
        pt.won_value_rank,
        pt.won_value_rank_of,
        pt.cycle_days_rank,
        pt.cycle_days_rank_of,
        pt.channel_yield_rank,
        pt.channel_yield_rank_of,
        coalesce(sw.high < asw.low, FALSE) AS show_rate_below_agency,
        coalesce(ww.high < aww.low, FALSE) AS win_rate_below_agency
    FROM pooled AS po
    INNER JOIN pivoted AS pt ON pt.id = po.id
    CROSS JOIN LATERAL crm_private.wilson_interval(po.held, po.resolved) AS sw
    CROSS JOIN LATERAL crm_private.wilson_interval(po.won_deals, po.closed_deals) AS ww
    CROSS JOIN
        LATERAL crm_private.wilson_interval(
            (po.all_held - po.held)::bigint, (po.all_resolved - po.resolved)::bigint
        ) AS asw
    CROSS JOIN
        LATERAL crm_private.wilson_interval(
            (po.all_won - po.won_deals)::bigint, (po.all_closed - po.closed_deals)::bigint
        ) AS aww
    WHERE
        crm_private.analytics_currency_check('get_agency_comparison', p_currency)
        AND crm_private.analytics_window_start('get_agency_comparison', p_days, p_as_of)
        IS NOT NULL
    ORDER BY po.name, po.id;
END;

COMMENT ON FUNCTION crm.get_agency_comparison(integer, timestamptz, text) IS
'Every client the caller may see side by side (row-level security applies: an analyst sees
every live client, a one-client viewer only its own), one row each by client_name then
client_id. Each number is what the per-client function returns for the same p_days, p_as_of
and currency: show_rate (crm.get_show_rate_analysis) with meetings and held_meetings, its
resolved meetings and held ones (the n behind it); win_rate and avg_cycle_days
(crm.get_pipeline_velocity) with closed_deals = won + lost; pipeline_value and won_value
(crm.get_funnel_analytics). currency is p_currency, or the client''s default_currency when
p_currency is NULL: every deal number of the row (money, win rate, cycle) counts the client''s
deals in that currency only, and other_currency_deals counts the deals in scope left out.
best_channel: of the channels that reached a live lead in the window, the one whose won value
credited by linear attribution (crm.get_channel_revenue_attribution) per such lead,
best_channel_yield, is highest (above 0; ties by name), best_channel_leads its n;
best_channel_yield is 0 when leads were reached but nothing was won, NULL when none was.
agency_*: the other visible clients pooled (leaving the client out makes the two samples
independent), with Wilson 95 % intervals (z = 1.959964) like the client''s;
show_rate_below_agency / win_rate_below_agency are true when the client''s interval lies
entirely below the agency''s (ci_high < agency ci_low, as shown, 2 decimals), false otherwise
and whenever either n is 0 (rates and intervals NULL). pooled_*: every visible client, this
one included. median_*: the median over the clients with a value (money and yield: over the
clients of the same currency); *_rank: 1 = best (highest; shortest cycle), ties share the
rank, out of *_rank_of clients with a value; clients = visible clients. Rates in percent,
money and days to 2 decimals. Raises 22023 for p_days <= 0 or > 1000000, a p_as_of that is
NULL, infinite or outside the years 1-9999, or a p_currency that is not three upper-case
letters. See docs/analytics.md.';

REVOKE ALL ON FUNCTION crm.get_agency_comparison(integer, timestamptz, text) FROM public;
