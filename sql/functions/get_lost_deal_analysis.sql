-- SELECT * FROM crm.get_lost_deal_analysis('6f1c…', 90);

CREATE OR REPLACE FUNCTION crm.get_lost_deal_analysis(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now(),
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    lost_reason crm.deal_lost_reason_type,
    count bigint,
    total_lost_value numeric,
    avg_days_in_pipeline numeric,
    common_stage_lost crm.deal_stage_type
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_lost_deal_analysis', p_days, p_as_of
            ) AS start_at
    ),

    lost AS (
        SELECT
            d.id,
            -- text with a CHECK since migration 0013: the enum gives the declared column type
            -- and orders the reasons as documented (the type's order, not the alphabet)
            d.lost_reason::crm.deal_lost_reason_type AS lost_reason,
            d.value,
            d.currency,
            extract(EPOCH FROM d.closed_at - d.created_at) / 86400 AS days_in_pipeline,
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

    by_reason AS (
        SELECT
            l.lost_reason,
            count(*) AS deals,
            sum(l.value) AS lost_value,
            round(avg(l.days_in_pipeline), 1) AS avg_days
        FROM lost AS l
        GROUP BY l.lost_reason
    ),

    -- The most frequent stage lost at per reason; ties go to the later pipeline stage.
    stage_counts AS (
        SELECT
            l.lost_reason,
            l.stage_lost,
            row_number() OVER (
                PARTITION BY l.lost_reason ORDER BY count(*) DESC, l.stage_lost DESC
            ) AS rank
        FROM lost AS l
        WHERE l.stage_lost IS NOT NULL
        GROUP BY l.lost_reason, l.stage_lost
    ),

    currency_check AS (
        SELECT
            crm_private.analytics_one_currency(
                'get_lost_deal_analysis', array_agg(DISTINCT l.currency)
            ) AS one_currency
        FROM lost AS l
    )

    SELECT
        r.lost_reason,
        r.deals AS count,
        r.lost_value AS total_lost_value,
        r.avg_days AS avg_days_in_pipeline,
        s.stage_lost AS common_stage_lost
    FROM by_reason AS r
    CROSS JOIN currency_check AS cc
    LEFT JOIN stage_counts AS s ON s.lost_reason = r.lost_reason AND s.rank = 1
    -- The window check runs once, before any scan: p_days is checked even for an empty scope.
    WHERE
        crm_private.analytics_scope_check('get_lost_deal_analysis', p_client_id, p_currency)
        AND crm_private.analytics_window_start('get_lost_deal_analysis', p_days, p_as_of)
        IS NOT NULL
        AND cc.one_currency
    ORDER BY r.deals DESC, r.lost_value DESC, r.lost_reason ASC;
END;

COMMENT ON FUNCTION crm.get_lost_deal_analysis(uuid, integer, timestamptz, text) IS
'The client''s lost deals (closed_lost) with closed_at in [p_as_of - p_days days, p_as_of) (p_days
NULL: all time), grouped by lost_reason: count, total_lost_value, avg_days_in_pipeline (created_at
to closed_at, in days, 1 decimal) and common_stage_lost: the most frequent stage the deals were in
when they last moved to closed_lost (from crm.deal_stage_history; ties go to the later pipeline
stage; NULL when no deal of the group has such history, e.g. deals inserted already lost). Rows by
count descending, total_lost_value descending, then lost_reason in its type''s order. Raises 22023
for a NULL p_client_id, p_days <= 0 or > 1000000, a p_as_of that is NULL, infinite or outside the
years 1-9999, a p_currency that is not three upper-case letters, or when the deals carry several
currencies and p_currency is not given. See docs/analytics.md.';

REVOKE ALL ON FUNCTION crm.get_lost_deal_analysis(uuid, integer, timestamptz, text) FROM public;
