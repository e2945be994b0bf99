-- SELECT * FROM crm.get_channel_revenue_attribution('6f1c…', 90, 'time_decay');
-- SELECT * FROM crm.get_channel_revenue_attribution('6f1c…', 365, 'position_based', now());
-- requires: compute_deal_attribution.sql

CREATE OR REPLACE FUNCTION crm.get_channel_revenue_attribution(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_model text DEFAULT 'linear',
    p_as_of timestamptz DEFAULT now(),
    p_half_life_days double precision DEFAULT 7,
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    channel text,
    deals_attributed numeric,
    total_value numeric,
    avg_deal_value numeric,
    percentage_of_revenue numeric
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_channel_revenue_attribution', p_days, p_as_of
            ) AS start_at
    ),

    won AS (
        SELECT
            d.id,
            d.value::double precision AS value,
            d.currency
        FROM params AS p
        INNER JOIN crm.deals AS d
            ON
                d.client_id = p_client_id
                AND d.closed_at >= p.start_at
                AND d.closed_at < p_as_of
        WHERE
            d.stage = 'closed_won'
            AND d.deleted_at IS NULL
            AND (p_currency IS NULL OR d.currency = p_currency)
    ),

    currency_check AS (
        SELECT
            crm_private.analytics_one_currency(
                'get_channel_revenue_attribution', array_agg(DISTINCT w.currency)
            ) AS one_currency
        FROM won AS w
    ),

    -- Each won deal's shares per channel (summing to 1 per deal; a deal without an eligible
    -- touch is one row for unattributed): kept current by triggers for the default 7-day
    -- half-life, computed here for any other.
    credits AS (
        SELECT
            c.channel,
            w.value,
            c.first_touch,
            c.last_touch,
            c.linear,
            c.time_decay,
            c.position_based,
            c.j_shaped,
            c.inverse_j
        FROM won AS w
        INNER JOIN crm_private.deal_attribution AS c
            ON c.client_id = p_client_id AND c.deal_id = w.id
        WHERE p_half_life_days = 7
        UNION ALL
        SELECT
            c.channel,
            w.value,
            c.first_touch,
            c.last_touch,
            c.linear,
            c.time_decay,
            c.position_based,
            c.j_shaped,
            c.inverse_j
        FROM
            crm_private.compute_deal_attribution(
                p_client_id, array(SELECT wd.id FROM won AS wd), p_half_life_days
            ) AS c
        INNER JOIN won AS w ON c.deal_id = w.id
        WHERE p_half_life_days <> 7
    ),

    shares AS (
        SELECT
            c.channel,
            c.value,
            CASE p_model
                WHEN 'first_touch' THEN c.first_touch
                WHEN 'last_touch' THEN c.last_touch
                WHEN 'linear' THEN c.linear
                WHEN 'time_decay' THEN c.time_decay
                WHEN 'position_based' THEN c.position_based
                WHEN 'j_shaped' THEN c.j_shaped
                WHEN 'inverse_j' THEN c.inverse_j
            END AS share
        FROM credits AS c
    ),

    per_channel AS (
        SELECT
            s.channel,
            sum(s.share) AS deals,
            sum(s.share * s.value) AS credit
        FROM shares AS s
        GROUP BY s.channel
        HAVING sum(s.share) > 0
    )

    SELECT
        pc.channel,
        round(pc.deals::numeric, 6) AS deals_attributed,
        round(pc.credit::numeric, 6) AS total_value,
        round((pc.credit / pc.deals)::numeric, 6) AS avg_deal_value,
        round((100 * pc.credit / nullif(sum(pc.credit) OVER (), 0))::numeric, 2)
            AS percentage_of_revenue
    FROM per_channel AS pc
    CROSS JOIN currency_check AS cc
    -- The argument checks depend on no row: PostgreSQL runs them once, before any scan, so they
    -- raise even when nothing is in scope.
    WHERE
        crm_private.analytics_scope_check(
            'get_channel_revenue_attribution', p_client_id, p_currency
        )
        AND crm_private.attribution_model_check(
            'get_channel_revenue_attribution', p_model, p_half_life_days
        )
        AND crm_private.analytics_window_start(
            'get_channel_revenue_attribution', p_days, p_as_of
        ) IS NOT NULL
        AND cc.one_currency
    ORDER BY pc.credit DESC, pc.channel ASC;
END;

COMMENT ON FUNCTION crm.get_channel_revenue_attribution(
    uuid, integer, text, timestamptz, double precision, text
) IS
'Revenue attribution by channel for the client''s won deals (closed_won) with closed_at in
[p_as_of - p_days days, p_as_of) (p_days NULL: all time). A deal''s eligible touches are its
lead''s activities with occurred_at <= the deal''s created_at, ordered by (occurred_at, id); every
touch counts, so a repeated channel gets several shares. p_model: first_touch, last_touch, linear,
time_decay (weight 2^(-age/p_half_life_days), age = deal created_at - occurred_at in days, default
half-life 7), position_based (40/20/40), j_shaped (20/20/60), inverse_j (60/20/20); the position
models give 1 touch 100 % and split 2 touches first:last in proportion. A deal without eligible
touches goes to channel unattributed, so deals_attributed sums to the number of won deals and
percentage_of_revenue to 100. A touch more than 1000 half-lives older than the deal''s most
recent touch weighs 0. Rows by total_value descending, then channel. Raises 22023 (naming the
argument and the value) for a NULL p_client_id, an unknown model (listing the valid ones),
p_days <= 0 or > 1000000, a p_as_of that is NULL, infinite or outside the years 1-9999, a
p_half_life_days that is not a positive finite number, a p_currency that is not three upper-case
letters, or deals in several currencies without p_currency. See docs/analytics.md.';

REVOKE ALL ON FUNCTION crm.get_channel_revenue_attribution(
    uuid, integer, text, timestamptz, double precision, text
) FROM public;
