-- SELECT * FROM crm.get_markov_attribution('6f1c…', 365);

CREATE OR REPLACE FUNCTION crm.get_markov_attribution(
    p_client_id uuid,
    p_days integer DEFAULT 90,
    p_as_of timestamptz DEFAULT now(),
    p_currency text DEFAULT NULL
)
RETURNS TABLE (
    channel text,
    removal_effect numeric,
    deals_attributed numeric,
    total_value numeric,
    percentage_of_revenue numeric
)
LANGUAGE plpgsql
STABLE
SET search_path = ''
AS $$
DECLARE
    v_start_at timestamptz := crm_private.analytics_window_start(
        'get_markov_attribution', p_days, p_as_of
    );
    v_states text [];            -- channels, in name order
    v_n integer;                 -- number of channels; states are 0 = start, 1..n channels
    v_counts double precision [];  -- (n + 1) x (n + 3) transition counts, row-major:
    -- columns 0 = start (never a target), 1..n channels, n + 1 = null, n + 2 = conversion
    v_base double precision;
    v_removed double precision [];
    v_currencies text [];
    v_won_deals integer;
    v_won_value double precision;
    v_unattributed_deals integer;
    v_unattributed_value double precision;
    v_re_sum double precision := 0;
    v_from text [];
    v_to text [];
    v_count double precision [];
BEGIN
    PERFORM crm_private.analytics_scope_check('get_markov_attribution', p_client_id, p_currency);
    SELECT array_agg(DISTINCT d.currency), count(*), coalesce(sum(d.value::double precision), 0)
    INTO v_currencies, v_won_deals, v_won_value
    FROM crm.deals AS d
    WHERE d.client_id = p_client_id AND d.stage = 'closed_won' AND d.deleted_at IS NULL
      AND d.closed_at >= v_start_at AND d.closed_at < p_as_of
      AND (p_currency IS NULL OR d.currency = p_currency);
    PERFORM crm_private.analytics_one_currency('get_markov_attribution', v_currencies);
    -- Won deals with no eligible touch are credited to unattributed, outside the chain.
    SELECT v_won_deals - count(*), v_won_value - coalesce(sum(s.value), 0)
    INTO v_unattributed_deals, v_unattributed_value
    FROM crm_private.markov_paths(p_client_id, v_start_at, p_as_of, p_currency) AS s
    WHERE s.converted AND s.pos = 1;

    WITH paths AS (
        SELECT * FROM crm_private.markov_paths(p_client_id, v_start_at, p_as_of, p_currency)
    ),

    steps AS (
        SELECT
            coalesce(lag(s.channel) OVER w, '(start)') AS from_state,
            s.channel AS to_state
        FROM paths AS s
        WINDOW w AS (PARTITION BY s.path_id ORDER BY s.pos)
        UNION ALL
        SELECT
            e.channel,
            CASE WHEN e.converted THEN '(conversion)' ELSE '(null)' END
        FROM (
            SELECT DISTINCT ON (s.path_id) s.channel, s.converted
            FROM paths AS s
            ORDER BY s.path_id, s.pos DESC
        ) AS e
    ),

    -- Self-transitions (a channel repeated in a row) are left out, as in the usual
    -- first-order model.
    transitions AS (
        SELECT st.from_state, st.to_state, count(*)::double precision AS n
        FROM steps AS st
        WHERE st.from_state <> st.to_state
        GROUP BY st.from_state, st.to_state
    )

    SELECT
        coalesce(array_agg(t.from_state ORDER BY t.from_state, t.to_state), '{}'),
        coalesce(array_agg(t.to_state ORDER BY t.from_state, t.to_state), '{}'),
        coalesce(array_agg(t.n ORDER BY t.from_state, t.to_state), '{}'),
        ARRAY(
            SELECT DISTINCT c.channel
            FROM paths AS c
            ORDER BY 1
        )
    INTO v_from, v_to, v_count, v_states
    FROM transitions AS t;
    v_n := coalesce(pg_catalog.cardinality(v_states), 0);
    IF v_n > 0 THEN
        v_counts := pg_catalog.array_fill(0::double precision, ARRAY[(v_n + 1) * (v_n + 3)]);
        FOR t IN 1..coalesce(pg_catalog.cardinality(v_from), 0) LOOP
            v_counts[
                (CASE WHEN v_from[t] = '(start)' THEN 0
                      ELSE pg_catalog.array_position(v_states, v_from[t]) END)
                * (v_n + 3)
                + CASE v_to[t]
                    WHEN '(null)' THEN v_n + 1
                    WHEN '(conversion)' THEN v_n + 2
                    ELSE pg_catalog.array_position(v_states, v_to[t])
                  END
                + 1
            ] := v_count[t];
        END LOOP;
        v_base := crm_private.markov_conversion(v_counts, v_n, 0);
        v_removed := ARRAY(
            SELECT crm_private.markov_conversion(v_counts, v_n, c)
            FROM generate_series(1, v_n) AS c
            ORDER BY c
        );
        FOR i IN 1..v_n LOOP
            v_re_sum := v_re_sum + CASE WHEN v_base > 0 THEN 1 - v_removed[i] / v_base ELSE 0 END;
        END LOOP;
    END IF;

    RETURN QUERY
    WITH credits AS (
        SELECT
            v_states[i] AS channel,
            CASE WHEN v_base > 0 THEN 1 - v_removed[i] / v_base ELSE 0 END AS re,
            CASE WHEN v_re_sum > 0 THEN (1 - v_removed[i] / v_base) / v_re_sum ELSE 0 END
                AS share
        FROM generate_series(1, v_n) AS i
    ),
    rows_out AS (
        SELECT c.channel, c.re,
               c.share * (v_won_deals - v_unattributed_deals) AS deals,
               c.share * (v_won_value - v_unattributed_value) AS credit
        FROM credits AS c
        UNION ALL
        SELECT 'unattributed', NULL, v_unattributed_deals, v_unattributed_value
        WHERE v_unattributed_deals > 0
    )
    SELECT
        r.channel,
        round(r.re::numeric, 6),
        round(r.deals::numeric, 6),
        round(r.credit::numeric, 6),
        round((100 * r.credit / nullif(v_won_value, 0))::numeric, 2)
    FROM rows_out AS r
    ORDER BY r.credit DESC, r.channel ASC;
END;
$$;

COMMENT ON FUNCTION crm.get_markov_attribution(uuid, integer, timestamptz, text) IS
'First-order Markov removal-effect attribution, using the paths that did not convert too.
Paths: one per won deal closed in [p_as_of - p_days days, p_as_of) (its lead''s touches up to
the deal''s creation; converting) and one per lead with no won deal as of p_as_of that was
touched in the window (its touches before p_as_of; not converting). Transitions start -> touch
-> ... -> conversion or null, self-transitions left out. removal_effect(c) = 1 - P(conversion
with c removed) / P(conversion), where removing c sends every transition into c to null; the won
deals and value with at least one touch are split over channels in proportion to removal effects
(deals without touches go to unattributed). Rows by total_value descending, then channel.
Raises 22023 for a NULL p_client_id, p_days <= 0 or > 1000000, a p_as_of that is NULL, infinite
or outside the years 1-9999, a p_currency that is not three upper-case letters, or several
currencies without p_currency.';

REVOKE ALL ON FUNCTION crm.get_markov_attribution(uuid, integer, timestamptz, text) FROM public;
