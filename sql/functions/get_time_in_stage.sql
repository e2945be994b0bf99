-- SELECT * FROM crm.get_time_in_stage('6f1c…', 365);

CREATE OR REPLACE FUNCTION crm.get_time_in_stage(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now()
)
RETURNS TABLE (
    stage crm.deal_stage_type,
    deals bigint,
    median_days_latest numeric,
    p90_days_latest numeric,
    mean_days_latest numeric,
    median_days_cumulative numeric,
    p90_days_cumulative numeric,
    mean_days_cumulative numeric,
    open_deals bigint,
    median_days_open numeric
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_time_in_stage', p_days, p_as_of
            ) AS start_at
    ),

    cohort AS (
        SELECT d.id
        FROM params AS p
        INNER JOIN crm.deals AS d
            ON
                d.client_id = p_client_id
                AND d.created_at >= p.start_at
                AND d.created_at < p_as_of
        WHERE d.deleted_at IS NULL
    ),

    -- each stay in a stage: entered at changed_at, left at the next change (NULL: still there)
    stays AS (
        SELECT
            h.deal_id,
            h.to_stage AS stage,
            h.seq,
            h.changed_at AS entered_at,
            lead(h.changed_at) OVER (PARTITION BY h.deal_id ORDER BY h.seq) AS left_at
        FROM cohort AS c
        INNER JOIN crm.deal_stage_history AS h
            ON h.client_id = p_client_id AND h.deal_id = c.id
        WHERE h.changed_at < p_as_of
    ),

    per_deal AS (
        SELECT
            s.stage,
            s.deal_id,
            (
                array_agg(
                    extract(EPOCH FROM s.left_at - s.entered_at) / 86400 ORDER BY s.seq DESC
                ) FILTER (WHERE s.left_at IS NOT NULL)
            )[1] AS latest_days,
            sum(extract(EPOCH FROM s.left_at - s.entered_at) / 86400)
            FILTER (WHERE s.left_at IS NOT NULL) AS cumulative_days,
            max(extract(EPOCH FROM p_as_of - s.entered_at) / 86400)
            FILTER (WHERE s.left_at IS NULL) AS open_days
        FROM stays AS s
        WHERE s.stage NOT IN ('closed_won', 'closed_lost')
        GROUP BY s.stage, s.deal_id
    ),

    stages AS (
        SELECT st.stage
        FROM
            unnest(
                ARRAY[
                    'qualification', 'proposal', 'negotiation', 'verbal_commit', 'contract_sent'
                ]::crm.deal_stage_type[]
            ) AS st (stage)
    )

    SELECT
        st.stage,
        count(pd.latest_days) AS deals,
        round(percentile_cont(0.5) WITHIN GROUP (ORDER BY pd.latest_days)::numeric, 2)
            AS median_days_latest,
        round(percentile_cont(0.9) WITHIN GROUP (ORDER BY pd.latest_days)::numeric, 2)
            AS p90_days_latest,
        round(avg(pd.latest_days), 2) AS mean_days_latest,
        round(percentile_cont(0.5) WITHIN GROUP (ORDER BY pd.cumulative_days)::numeric, 2)
            AS median_days_cumulative,
        round(percentile_cont(0.9) WITHIN GROUP (ORDER BY pd.cumulative_days)::numeric, 2)
            AS p90_days_cumulative,
        round(avg(pd.cumulative_days), 2) AS mean_days_cumulative,
        count(pd.open_days) AS open_deals,
        round(percentile_cont(0.5) WITHIN GROUP (ORDER BY pd.open_days)::numeric, 2)
            AS median_days_open
    FROM stages AS st
    LEFT JOIN per_deal AS pd ON pd.stage = st.stage
    WHERE
        crm_private.analytics_scope_check('get_time_in_stage', p_client_id, NULL)
        AND crm_private.analytics_window_start('get_time_in_stage', p_days, p_as_of) IS NOT NULL
    GROUP BY st.stage
    ORDER BY st.stage;
END;

COMMENT ON FUNCTION crm.get_time_in_stage(uuid, integer, timestamptz) IS
'Time the client''s deals created in [p_as_of - p_days days, p_as_of) spent in each open stage,
from crm.deal_stage_history up to p_as_of. Per stage, over deals with at least one completed stay
(deals): the latest stay''s days (median, 90th percentile, mean) and the cumulative days over all
its stays (the same three); deals still in the stage at p_as_of are censored: counted apart in
open_deals, with the median of their days so far. Percentiles interpolate linearly
(percentile_cont); days to 2 decimals; NULL where no deal is counted. Rows in pipeline order.
Raises 22023 for a NULL p_client_id, p_days <= 0 or > 1000000, or a p_as_of that is NULL,
infinite or outside the years 1-9999.';

REVOKE ALL ON FUNCTION crm.get_time_in_stage(uuid, integer, timestamptz) FROM public;
