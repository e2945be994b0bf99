-- SELECT * FROM crm.get_channel_revenue_attribution('6f1c…', 90, 'time_decay');
-- SELECT * FROM crm.get_channel_revenue_attribution('6f1c…', 365, 'position_based', now());

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
            ) AS start_at,
            -- (first, middle, last) shares of the position models
            CASE p_model
                WHEN 'position_based' THEN ARRAY[0.4, 0.2, 0.4]::double precision[]
                WHEN 'j_shaped' THEN ARRAY[0.2, 0.2, 0.6]::double precision[]
                WHEN 'inverse_j' THEN ARRAY[0.6, 0.2, 0.2]::double precision[]
            END AS shape
    ),

    won AS (
        SELECT
            d.id,
            d.lead_id,
            d.created_at,
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

    touches AS (
        SELECT
            w.id AS deal_id,
            a.channel::text AS channel,
            row_number() OVER deal_touches AS pos,
            count(*) OVER (PARTITION BY w.id) AS n,
            extract(EPOCH FROM w.created_at - a.occurred_at)::double precision / 86400 AS age_days
        FROM won AS w
        INNER JOIN crm.activities AS a
            ON
                a.client_id = p_client_id
                AND a.lead_id = w.lead_id
                AND a.occurred_at <= w.created_at
        WHERE a.deleted_at IS NULL
        WINDOW deal_touches AS (PARTITION BY w.id ORDER BY a.occurred_at, a.id)
    ),

    raw_weights AS (
        SELECT
            t.deal_id,
            t.channel,
            CASE p_model
                WHEN 'first_touch' THEN (t.pos = 1)::integer::double precision
                WHEN 'last_touch' THEN (t.pos = t.n)::integer::double precision
                WHEN 'linear' THEN 1.0::double precision
                WHEN 'time_decay' THEN power(2.0::double precision, -t.age_days / p_half_life_days)
                ELSE CASE
                    WHEN t.n = 1 THEN 1.0::double precision
                    WHEN t.pos = 1 THEN p.shape[1]
                    WHEN t.pos = t.n THEN p.shape[3]
                    ELSE p.shape[2] / (t.n - 2)
                END
            END AS weight
        FROM touches AS t
        CROSS JOIN params AS p
    ),

    -- Each won deal's value split over its touches' channels (shares sum to 1 per deal); a deal
    -- without an eligible touch goes whole to 'unattributed'.
    shares AS (
        SELECT
            r.deal_id,
            r.channel,
            r.weight / sum(r.weight) OVER (PARTITION BY r.deal_id) AS share
        FROM raw_weights AS r
        UNION ALL
        SELECT
            w.id AS deal_id,
            'unattributed' AS channel,
            1.0::double precision AS share
        FROM won AS w
        WHERE NOT EXISTS (
            SELECT 1 FROM touches AS t
            WHERE t.deal_id = w.id
        )
    ),

    per_channel AS (
        SELECT
            s.channel,
            sum(s.share) AS deals,
            sum(s.share * w.value) AS credit
        FROM shares AS s
        INNER JOIN won AS w ON w.id = s.deal_id
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
        crm_private.attribution_model_check(
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
percentage_of_revenue to 100. Rows by total_value descending, then channel. Raises 22023 for an
unknown model (listing the valid ones), p_days <= 0, p_half_life_days <= 0, or deals in several
currencies without p_currency. See docs/analytics.md.';

REVOKE ALL ON FUNCTION crm.get_channel_revenue_attribution(
    uuid, integer, text, timestamptz, double precision, text
) FROM public;
