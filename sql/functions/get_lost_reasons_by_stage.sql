-- SELECT * FROM crm.get_lost_reasons_by_stage('6f1c…', 90);
-- SELECT * FROM crm.get_lost_reasons_by_stage('6f1c…', 365, '2026-06-01', 'AUD');

CREATE OR REPLACE FUNCTION crm.get_lost_reasons_by_stage(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now(),
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    stage crm.deal_stage_type,
    lost_reason crm.deal_lost_reason_type,
    deals bigint,
    lost_value numeric
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_lost_reasons_by_stage', p_days, p_as_of
            ) AS start_at
    ),

    -- the lost deals of get_lost_deal_analysis, each with the stage it was lost at
    lost AS (
        SELECT
            d.lost_reason::crm.deal_lost_reason_type AS lost_reason,
            d.value,
            d.currency,
            -- the stage the deal was in when it last moved to closed_lost (NULL without history)
            (
                SELECT h.from_stage
                FROM crm.deal_stage_history AS h
                WHERE
                    h.client_id = p_client_id
                    AND h.deal_id = d.id
                    AND h.to_stage = 'closed_lost'
                ORDER BY h.seq DESC
                LIMIT 1
            ) AS stage_lost
        FROM params AS p
        INNER JOIN crm.deals AS d
            ON
                d.client_id = p_client_id
                AND d.closed_at >= p.start_at
                AND d.closed_at < p_as_of
        WHERE
            d.stage = 'closed_lost'
            AND d.deleted_at IS NULL
            AND (p_currency IS NULL OR d.currency = p_currency)
    ),

    currency_check AS (
        SELECT
            crm_private.analytics_one_currency(
                'get_lost_reasons_by_stage', array_agg(DISTINCT l.currency)
            ) AS one_currency
        FROM lost AS l
    )

    SELECT
        l.stage_lost AS stage,
        l.lost_reason,
        count(*) AS deals,
        sum(l.value) AS lost_value
    FROM lost AS l
    CROSS JOIN currency_check AS cc
    -- The window check runs once, before any scan: p_days is checked even for an empty scope.
    WHERE
        crm_private.analytics_scope_check('get_lost_reasons_by_stage', p_client_id, p_currency)
        AND crm_private.analytics_window_start('get_lost_reasons_by_stage', p_days, p_as_of)
        IS NOT NULL
        AND cc.one_currency
    GROUP BY l.stage_lost, l.lost_reason
    ORDER BY l.stage_lost ASC NULLS LAST, deals DESC, lost_value DESC, l.lost_reason ASC;
END;

COMMENT ON FUNCTION crm.get_lost_reasons_by_stage(uuid, integer, timestamptz, text) IS
'Where and why deals are lost: the lost deals of crm.get_lost_deal_analysis (closed_lost with
closed_at in [p_as_of - p_days days, p_as_of), p_days NULL: all time) by the stage they were in
when they last moved to closed_lost (from crm.deal_stage_history; stage NULL when a deal has no
such history, e.g. one inserted already lost) and lost_reason: deals and lost_value (the sum of
their value). Per lost_reason the rows sum to get_lost_deal_analysis''s count and
total_lost_value. Rows by stage in pipeline order (NULL last), deals descending, lost_value
descending, then lost_reason in its type''s order. Raises 22023 for a NULL p_client_id, p_days <=
0 or > 1000000, a p_as_of that is NULL, infinite or outside the years 1-9999, a p_currency that
is not three upper-case letters, or when the deals carry several currencies and p_currency is not
given.';

REVOKE ALL ON FUNCTION crm.get_lost_reasons_by_stage(uuid, integer, timestamptz, text) FROM public;
