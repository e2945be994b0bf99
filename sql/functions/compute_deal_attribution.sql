-- SELECT * FROM crm_private.compute_deal_attribution(client_id, ARRAY[deal_id])

CREATE OR REPLACE FUNCTION crm_private.compute_deal_attribution(
    p_client_id uuid,
    p_deal_ids uuid[],
    p_half_life_days double precision DEFAULT 7
)
RETURNS TABLE (
    deal_id uuid,
    channel text,
    touches integer,
    first_touch double precision,
    last_touch double precision,
    linear double precision,
    time_decay double precision,
    position_based double precision,
    j_shaped double precision,
    inverse_j double precision
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH deals AS (
        SELECT
            d.id,
            d.lead_id,
            d.created_at
        FROM crm.deals AS d
        WHERE d.client_id = p_client_id AND d.id = any(p_deal_ids)
    ),

    -- The deal's eligible touches (its lead's live activities up to its creation), in order;
    -- a deal without any is one row with no activity, credited to unattributed. One pass, no
    -- second look at this set: with ~40 touches per deal it can be large.
    touches AS (
        SELECT
            d.id AS deal_id,
            coalesce(a.channel::text, 'unattributed') AS channel,
            a.id AS activity_id,
            row_number() OVER deal_touches AS pos,
            greatest(count(a.id) OVER (PARTITION BY d.id), 1) AS n,
            -- how much older than the deal's most recent eligible touch, in fractional days
            extract(EPOCH FROM max(a.occurred_at) OVER (PARTITION BY d.id) - a.occurred_at)
            ::double precision / 86400 AS age_days
        FROM deals AS d
        LEFT JOIN crm.activities AS a
            ON
                a.client_id = p_client_id
                AND a.lead_id = d.lead_id
                AND a.occurred_at <= d.created_at
                AND a.deleted_at IS NULL
        WINDOW deal_touches AS (PARTITION BY d.id ORDER BY a.occurred_at, a.id)
    ),

    -- each touch's weight under every model; the position models give 1 touch everything and
    -- split 2 touches first:last in proportion
    weights AS (
        SELECT
            t.deal_id,
            t.channel,
            t.activity_id,
            (t.pos = 1)::integer::double precision AS first_touch,
            (t.pos = t.n)::integer::double precision AS last_touch,
            1.0::double precision / t.n AS linear,
            -- 2^(-age / H), with age measured from the most recent touch: the same weights
            -- once normalised, and that touch weighs 1, so the sum is never 0. A touch more
            -- than 1000 half-lives older weighs 0 (2^-1000 is about 1e-301): PostgreSQL raises
            -- on a float underflow rather than return 0, and 1000 * H could overflow.
            CASE
                WHEN t.age_days IS NULL THEN 1.0
                WHEN t.age_days / 1000 > p_half_life_days THEN 0.0
                ELSE power(2.0::double precision, -(t.age_days / p_half_life_days))
            END::double precision AS decay,
            CASE
                WHEN t.n = 1 THEN 1.0
                WHEN t.n = 2 THEN 0.5
                WHEN t.pos = 1 OR t.pos = t.n THEN 0.4
                ELSE 0.2 / (t.n - 2)
            END::double precision AS position_based,
            CASE
                WHEN t.n = 1 THEN 1.0
                WHEN t.n = 2 AND t.pos = 1 THEN 0.25
                WHEN t.n = 2 THEN 0.75
                WHEN t.pos = 1 THEN 0.2
                WHEN t.pos = t.n THEN 0.6
                ELSE 0.2 / (t.n - 2)
            END::double precision AS j_shaped,
            CASE
                WHEN t.n = 1 THEN 1.0
                WHEN t.n = 2 AND t.pos = 1 THEN 0.75
                WHEN t.n = 2 THEN 0.25
                WHEN t.pos = 1 THEN 0.6
                WHEN t.pos = t.n THEN 0.2
                ELSE 0.2 / (t.n - 2)
            END::double precision AS inverse_j
        FROM touches AS t
    ),

    normalised AS (
        SELECT
            w.deal_id,
            w.channel,
            w.activity_id,
            w.first_touch,
            w.last_touch,
            w.linear,
            w.decay / sum(w.decay) OVER (PARTITION BY w.deal_id) AS time_decay,
            w.position_based,
            w.j_shaped,
            w.inverse_j
        FROM weights AS w
    )

    SELECT
        n.deal_id,
        n.channel,
        count(n.activity_id)::integer AS touches,
        sum(n.first_touch) AS first_touch,
        sum(n.last_touch) AS last_touch,
        sum(n.linear) AS linear,
        sum(n.time_decay) AS time_decay,
        sum(n.position_based) AS position_based,
        sum(n.j_shaped) AS j_shaped,
        sum(n.inverse_j) AS inverse_j
    FROM normalised AS n
    GROUP BY n.deal_id, n.channel;
END;

COMMENT ON FUNCTION crm_private.compute_deal_attribution(uuid, uuid[], double precision) IS
'Each given deal''s share of credit per channel under every attribution model, computed from its
lead''s live touches up to the deal''s creation, ordered by (occurred_at, id); a deal without
touches gets one row for channel unattributed. time_decay weighs a touch
2^(-age/p_half_life_days), age in days before the deal''s most recent touch (the same shares once
normalised, and never all 0), and 0 when it is more than 1000 half-lives older: a weight too small
to represent is 0. The definition crm_private.deal_attribution keeps, and what
crm.get_channel_revenue_attribution computes on the fly for another half-life.';

REVOKE ALL ON FUNCTION crm_private.compute_deal_attribution(uuid, uuid[], double precision)
FROM public;
