-- crm_private.markov_conversion(counts, n, 0) -> P(conversion) from the start state

CREATE OR REPLACE FUNCTION crm_private.markov_conversion(
    p_counts double precision[],
    p_n integer,
    p_removed integer
)
RETURNS double precision
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    -- p_counts: (p_n + 1) rows (0 = start, 1..p_n channels) x (p_n + 3) columns (0 = start,
    -- 1..p_n channels, p_n + 1 = null, p_n + 2 = conversion), row-major, 1-based.
    v_width integer := p_n + 3;
    v_size integer := p_n + 1;
    v_a double precision [];     -- v_size x (v_size + 1) augmented system (I - Q | r)
    v_total double precision;
    v_count double precision;
    v_factor double precision;
    v_pivot integer;
    v_swap double precision;
BEGIN
    v_a := pg_catalog.array_fill(0::double precision, ARRAY[v_size * (v_size + 1)]);
    FOR i IN 0..p_n LOOP
        v_a[i * (v_size + 1) + i + 1] := 1;
        IF p_removed > 0 AND i = p_removed THEN
            CONTINUE;  -- unreachable once removed: its row stays x_i = 0
        END IF;
        v_total := 0;
        FOR j IN 0..v_width - 1 LOOP
            v_total := v_total + p_counts[i * v_width + j + 1];
        END LOOP;
        IF v_total = 0 THEN
            CONTINUE;  -- no way out: never converts
        END IF;
        FOR j IN 1..p_n LOOP
            v_count := p_counts[i * v_width + j + 1];
            IF j <> p_removed AND v_count > 0 THEN
                -- a transition into the removed channel goes to null: it simply drops out
                v_a[i * (v_size + 1) + j + 1] := v_a[i * (v_size + 1) + j + 1] - v_count / v_total;
            END IF;
        END LOOP;
        v_a[i * (v_size + 1) + v_size + 1] := p_counts[i * v_width + p_n + 2 + 1] / v_total;
    END LOOP;
    -- Gaussian elimination with partial pivoting; the system is small (channels + 1 unknowns).
    FOR k IN 0..v_size - 1 LOOP
        v_pivot := k;
        FOR i IN k + 1..v_size - 1 LOOP
            IF abs(v_a[i * (v_size + 1) + k + 1]) > abs(v_a[v_pivot * (v_size + 1) + k + 1]) THEN
                v_pivot := i;
            END IF;
        END LOOP;
        IF v_pivot <> k THEN
            FOR j IN 0..v_size LOOP
                v_swap := v_a[k * (v_size + 1) + j + 1];
                v_a[k * (v_size + 1) + j + 1] := v_a[v_pivot * (v_size + 1) + j + 1];
                v_a[v_pivot * (v_size + 1) + j + 1] := v_swap;
            END LOOP;
        END IF;
        FOR i IN 0..v_size - 1 LOOP
            IF i <> k AND v_a[i * (v_size + 1) + k + 1] <> 0 THEN
                v_factor := v_a[i * (v_size + 1) + k + 1] / v_a[k * (v_size + 1) + k + 1];
                FOR j IN k..v_size LOOP
                    v_a[i * (v_size + 1) + j + 1] :=
                        v_a[i * (v_size + 1) + j + 1] - v_factor * v_a[k * (v_size + 1) + j + 1];
                END LOOP;
            END IF;
        END LOOP;
    END LOOP;
    RETURN v_a[v_size + 1] / v_a[1];  -- row 0 (start), solved
END;
$$;

COMMENT ON FUNCTION crm_private.markov_conversion(double precision[], integer, integer) IS
'Probability of reaching conversion from the start state of an absorbing Markov chain given by
transition counts (see the layout in the body), with channel p_removed (1-based; 0 = none)
removed: transitions into it go to null. Solves (I - Q) x = r by Gaussian elimination.';

REVOKE ALL ON FUNCTION crm_private.markov_conversion(double precision[], integer, integer)
FROM public;
