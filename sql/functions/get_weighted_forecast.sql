-- SELECT * FROM crm.get_weighted_forecast('6f1c…');

CREATE OR REPLACE FUNCTION crm.get_weighted_forecast(
    p_client_id uuid,
    p_as_of timestamptz DEFAULT now(),
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    expected_close_month date,
    open_deals bigint,
    open_value numeric,
    weighted_value numeric
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH open_deals AS (
        SELECT
            d.value,
            d.currency,
            date_trunc('month', d.expected_close_date)::date AS month,
            -- the probability at p_as_of: the deal's own when its stage has not changed since
            -- (it may have been set by hand), else the one the stage history recorded before
            CASE
                WHEN d.closed_at IS NULL AND d.stage_changed_at < p_as_of THEN d.probability
                ELSE coalesce(
                    (
                        SELECT h.probability
                        FROM crm.deal_stage_history AS h
                        WHERE
                            h.client_id = p_client_id
                            AND h.deal_id = d.id
                            AND h.changed_at < p_as_of
                        ORDER BY h.seq DESC
                        LIMIT 1
                    ),
                    d.probability
                )
            END AS probability
        FROM crm.deals AS d
        WHERE
            d.client_id = p_client_id
            AND d.deleted_at IS NULL
            AND d.created_at < p_as_of
            AND (d.closed_at IS NULL OR d.closed_at >= p_as_of)
            AND (p_currency IS NULL OR d.currency = p_currency)
    ),

    currency_check AS (
        SELECT
            crm_private.analytics_one_currency(
                'get_weighted_forecast', array_agg(DISTINCT o.currency)
            ) AS one_currency
        FROM open_deals AS o
    )

    SELECT
        o.month AS expected_close_month,
        count(*) AS open_deals,
        sum(o.value) AS open_value,
        round(sum(o.value * o.probability / 100.0), 2) AS weighted_value
    FROM open_deals AS o
    CROSS JOIN currency_check AS cc
    -- The argument checks depend on no row: they run once, before any scan.
    WHERE
        crm_private.analytics_scope_check('get_weighted_forecast', p_client_id, p_currency)
        AND crm_private.analytics_window_start('get_weighted_forecast', NULL, p_as_of)
        IS NOT NULL
        AND cc.one_currency
    GROUP BY o.month
    ORDER BY o.month ASC NULLS LAST;
END;

COMMENT ON FUNCTION crm.get_weighted_forecast(uuid, timestamptz, text) IS
'Weighted forecast of the client''s deals open at p_as_of (created before it, not closed by it),
by expected-close month (expected_close_month NULL: no expected_close_date): open_deals, open_value
and weighted_value = sum of value x probability / 100, with the probability the deal had at
p_as_of. Rows by month, NULL last. Raises 22023 for a NULL p_client_id, a p_as_of that is NULL,
infinite or outside the years 1-9999, a p_currency that is not three upper-case letters, or
several currencies without p_currency.';

REVOKE ALL ON FUNCTION crm.get_weighted_forecast(uuid, timestamptz, text) FROM public;
