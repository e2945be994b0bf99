-- SELECT * FROM crm.get_attribution_comparison('6f1c…', 365);
-- requires: get_channel_revenue_attribution.sql

CREATE OR REPLACE FUNCTION crm.get_attribution_comparison(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now(),
    p_half_life_days double precision DEFAULT 7,
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    channel text,
    first_touch numeric,
    last_touch numeric,
    linear numeric,
    time_decay numeric,
    position_based numeric,
    j_shaped numeric,
    inverse_j numeric
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT
        a.channel,
        coalesce(sum(a.total_value) FILTER (WHERE m.model = 'first_touch'), 0) AS first_touch,
        coalesce(sum(a.total_value) FILTER (WHERE m.model = 'last_touch'), 0) AS last_touch,
        coalesce(sum(a.total_value) FILTER (WHERE m.model = 'linear'), 0) AS linear,
        coalesce(sum(a.total_value) FILTER (WHERE m.model = 'time_decay'), 0) AS time_decay,
        coalesce(sum(a.total_value) FILTER (WHERE m.model = 'position_based'), 0)
            AS position_based,
        coalesce(sum(a.total_value) FILTER (WHERE m.model = 'j_shaped'), 0) AS j_shaped,
        coalesce(sum(a.total_value) FILTER (WHERE m.model = 'inverse_j'), 0) AS inverse_j
    FROM
        unnest(ARRAY[
            'first_touch', 'last_touch', 'linear', 'time_decay', 'position_based', 'j_shaped',
            'inverse_j'
        ]) AS m (model)
    CROSS JOIN
        LATERAL crm.get_channel_revenue_attribution(
            p_client_id, p_days, m.model, p_as_of, p_half_life_days, p_currency
        ) AS a
    -- Checked here first (once, before any call) so the error names this function.
    WHERE
        crm_private.analytics_scope_check('get_attribution_comparison', p_client_id, p_currency)
        AND crm_private.attribution_model_check(
            'get_attribution_comparison', 'linear', p_half_life_days
        )
        AND crm_private.analytics_window_start(
            'get_attribution_comparison', p_days, p_as_of
        ) IS NOT NULL
    GROUP BY a.channel
    ORDER BY linear DESC, a.channel ASC;
END;

COMMENT ON FUNCTION crm.get_attribution_comparison(
    uuid, integer, timestamptz, double precision, text
) IS
'Every attribution model side by side: per channel, the revenue each model credits it with
(crm.get_channel_revenue_attribution''s total_value; 0 where a model credits the channel
nothing), for won deals closed in [p_as_of - p_days days, p_as_of). Rows by the linear credit
descending, then channel. Same errors as crm.get_channel_revenue_attribution, naming this
function.';

REVOKE ALL ON FUNCTION crm.get_attribution_comparison(
    uuid, integer, timestamptz, double precision, text
) FROM public;
