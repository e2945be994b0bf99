-- SELECT * FROM crm.get_pipeline_velocity('6f1c…', 180);

CREATE OR REPLACE FUNCTION crm.get_pipeline_velocity(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now(),
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    open_deals bigint,
    won_deals bigint,
    lost_deals bigint,
    win_rate numeric,
    avg_won_value numeric,
    avg_cycle_days numeric,
    velocity_per_day numeric
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_pipeline_velocity', p_days, p_as_of
            ) AS start_at
    ),

    deals AS (
        SELECT
            d.value,
            d.currency,
            d.created_at < p_as_of
            AND (d.closed_at IS NULL OR d.closed_at >= p_as_of) AS open_at_as_of,
            d.stage = 'closed_won'
            AND d.closed_at >= p.start_at
            AND d.closed_at < p_as_of AS won,
            d.stage = 'closed_lost'
            AND d.closed_at >= p.start_at
            AND d.closed_at < p_as_of AS lost,
            extract(EPOCH FROM d.closed_at - d.created_at) / 86400 AS cycle_days
        FROM params AS p
        INNER JOIN crm.deals AS d ON d.client_id = p_client_id
        WHERE
            d.deleted_at IS NULL
            AND d.created_at < p_as_of
            AND (p_currency IS NULL OR d.currency = p_currency)
    ),

    totals AS (
        SELECT
            count(*) FILTER (WHERE d.open_at_as_of) AS open_deals,
            count(*) FILTER (WHERE d.won) AS won,
            count(*) FILTER (WHERE d.lost) AS lost,
            avg(d.value) FILTER (WHERE d.won) AS avg_won_value,
            avg(d.cycle_days) FILTER (WHERE d.won) AS avg_cycle_days,
            crm_private.analytics_one_currency(
                'get_pipeline_velocity',
                array_agg(DISTINCT d.currency) FILTER (WHERE d.open_at_as_of OR d.won)
            ) AS one_currency
        FROM deals AS d
    )

    SELECT
        t.open_deals,
        t.won AS won_deals,
        t.lost AS lost_deals,
        round(100.0 * t.won / nullif(t.won + t.lost, 0), 2) AS win_rate,
        round(t.avg_won_value, 2) AS avg_won_value,
        round(t.avg_cycle_days, 2) AS avg_cycle_days,
        round(
            t.open_deals * (1.0 * t.won / nullif(t.won + t.lost, 0)) * t.avg_won_value
            / nullif(t.avg_cycle_days, 0),
            2
        ) AS velocity_per_day
    FROM totals AS t
    WHERE
        crm_private.analytics_scope_check('get_pipeline_velocity', p_client_id, p_currency)
        AND crm_private.analytics_window_start('get_pipeline_velocity', p_days, p_as_of)
        IS NOT NULL
        AND t.one_currency;
END;

COMMENT ON FUNCTION crm.get_pipeline_velocity(uuid, integer, timestamptz, text) IS
'Pipeline velocity: open_deals (created before p_as_of and not closed by then) x win_rate x
avg_won_value / avg_cycle_days, in value per day, where win_rate = won / (won + lost) over deals
closed in [p_as_of - p_days days, p_as_of), avg_won_value and avg_cycle_days (created_at to
closed_at) over the deals won in that window. Rates in percent, values and days to 2 decimals,
NULL where a part is undefined. Raises 22023 for a NULL p_client_id, p_days <= 0 or > 1000000, a
p_as_of that is NULL, infinite or outside the years 1-9999, a p_currency that is not three
upper-case letters, or several currencies among the open and won deals without p_currency.';

REVOKE ALL ON FUNCTION crm.get_pipeline_velocity(uuid, integer, timestamptz, text) FROM public;
