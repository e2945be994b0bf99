-- SELECT * FROM crm.get_stage_conversion('6f1c…', 180);
-- SELECT * FROM crm.get_stage_conversion('6f1c…', 180, now(), 'any');

CREATE OR REPLACE FUNCTION crm.get_stage_conversion(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now(),
    p_mode text DEFAULT 'strict'
)
RETURNS TABLE (
    stage crm.deal_stage_type,
    deals_entered bigint,
    deals_moved_on bigint,
    next_step_rate numeric,
    cumulative_rate numeric,
    deals_skipped bigint,
    regressions bigint
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH params AS (
        SELECT
            crm_private.analytics_window_start(
                'get_stage_conversion', p_days, p_as_of
            ) AS start_at
    ),

    -- the funnel: the open stages in pipeline order, then closed_won
    funnel AS (
        SELECT
            f.stage,
            f.step
        FROM
            unnest(
                ARRAY[
                    'qualification', 'proposal', 'negotiation', 'verbal_commit', 'contract_sent',
                    'closed_won'
                ]::crm.deal_stage_type[]
            ) WITH ORDINALITY AS f (stage, step)
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

    moves AS (
        SELECT
            h.deal_id,
            h.from_stage,
            h.to_stage
        FROM cohort AS c
        INNER JOIN crm.deal_stage_history AS h
            ON h.client_id = p_client_id AND h.deal_id = c.id
        WHERE h.changed_at < p_as_of
    ),

    -- the funnel steps each deal entered, as a bit mask (bit k - 1 = step k)
    deal_steps AS (
        SELECT
            m.deal_id,
            bit_or(1 << (f.step::integer - 1)) AS mask
        FROM moves AS m
        INNER JOIN funnel AS f ON f.stage = m.to_stage
        GROUP BY m.deal_id
    ),

    -- per step k: "strict" counts a deal that entered steps 1..k; "any" one that entered k
    flags AS (
        SELECT
            f.stage,
            f.step,
            ds.mask & (1 << (f.step::integer - 1)) <> 0 AS entered,
            CASE
                WHEN p_mode = 'any' THEN ds.mask & (1 << (f.step::integer - 1)) <> 0
                ELSE ds.mask & ((1 << f.step::integer) - 1) = (1 << f.step::integer) - 1
            END AS counted,
            CASE
                WHEN p_mode = 'any' THEN ds.mask & (1 << f.step::integer) <> 0
                ELSE ds.mask & ((2 << f.step::integer) - 1) = (2 << f.step::integer) - 1
            END AS counted_next,
            ds.mask >> f.step::integer <> 0 AS went_further
        FROM funnel AS f
        CROSS JOIN deal_steps AS ds
    ),

    per_step AS (
        SELECT
            f.stage,
            f.step,
            count(*) FILTER (WHERE fl.counted) AS deals_entered,
            count(*) FILTER (WHERE fl.counted AND fl.went_further) AS deals_moved_on,
            count(*) FILTER (WHERE fl.counted AND fl.counted_next) AS deals_next,
            count(*) FILTER (WHERE NOT fl.entered AND fl.went_further) AS deals_skipped,
            (
                SELECT count(*)
                FROM moves AS m
                INNER JOIN funnel AS back ON m.to_stage = back.stage
                WHERE m.from_stage = f.stage AND back.step < f.step
            ) AS regressions
        FROM funnel AS f
        LEFT JOIN flags AS fl ON fl.step = f.step
        GROUP BY f.stage, f.step
    )

    SELECT
        ps.stage,
        ps.deals_entered,
        ps.deals_moved_on,
        CASE
            WHEN ps.step < 6
                THEN round(100.0 * ps.deals_next / nullif(ps.deals_entered, 0), 2)
        END AS next_step_rate,
        round(
            100.0 * ps.deals_entered / nullif((SELECT count(*) FROM cohort), 0), 2
        ) AS cumulative_rate,
        ps.deals_skipped,
        ps.regressions
    FROM per_step AS ps
    WHERE
        crm_private.analytics_scope_check('get_stage_conversion', p_client_id, NULL)
        AND crm_private.analytics_window_start('get_stage_conversion', p_days, p_as_of)
        IS NOT NULL
        AND crm_private.analytics_choice_check(
            'get_stage_conversion', 'p_mode', p_mode, ARRAY['strict', 'any']
        )
    ORDER BY ps.step;
END;

COMMENT ON FUNCTION crm.get_stage_conversion(uuid, integer, timestamptz, text) IS
'Stage-to-stage conversion of the client''s deals created in [p_as_of - p_days days, p_as_of),
from crm.deal_stage_history up to p_as_of, over the funnel qualification, proposal, negotiation,
verbal_commit, contract_sent, closed_won. p_mode strict (default, HubSpot''s "all stages"): a
deal counts at a stage only if it also entered every earlier stage; any: a deal counts at every
stage it entered. deals_entered; deals_moved_on: of those, entered a later stage; next_step_rate:
of those, also counted at the next stage (NULL for closed_won); cumulative_rate: deals_entered /
deals created in the window; deals_skipped: deals that reached a later stage without entering
this one; regressions: moves from this stage back to an earlier one. Rows in pipeline order.
Raises 22023 for a NULL p_client_id, p_days <= 0 or > 1000000, a p_as_of that is NULL, infinite
or outside the years 1-9999, or an unknown p_mode.';

REVOKE ALL ON FUNCTION crm.get_stage_conversion(uuid, integer, timestamptz, text) FROM public;
