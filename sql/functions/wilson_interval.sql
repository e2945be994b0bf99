-- crm_private.wilson_interval(2, 3) -> (20.77, 93.85)

CREATE OR REPLACE FUNCTION crm_private.wilson_interval(
    p_successes bigint,
    p_n bigint,
    OUT low numeric,
    OUT high numeric
)
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
BEGIN ATOMIC
    -- z = 1.959964 (95 %), z2 = z^2; double precision, as in crm.get_show_rate_drivers
    SELECT
        round(
            (100 * (w.p + w.z2 / (2 * w.n) - sqrt(w.z2) * sqrt(
                w.p * (1 - w.p) / w.n + w.z2 / (4.0 * w.n * w.n)
            )) / (1 + w.z2 / w.n))::numeric,
            2
        ) AS low,
        round(
            (100 * (w.p + w.z2 / (2 * w.n) + sqrt(w.z2) * sqrt(
                w.p * (1 - w.p) / w.n + w.z2 / (4.0 * w.n * w.n)
            )) / (1 + w.z2 / w.n))::numeric,
            2
        ) AS high
    FROM (
        SELECT
            -- nullif: PostgreSQL 18 may compute these before the WHERE filters a p_n of 0
            nullif(p_n, 0) AS n,
            p_successes::double precision / nullif(p_n, 0) AS p,
            3.841458820694124::double precision AS z2
        WHERE p_n > 0 AND p_successes BETWEEN 0 AND p_n
    ) AS w;
END;

COMMENT ON FUNCTION crm_private.wilson_interval(bigint, bigint) IS
'Wilson score 95 % interval (z = 1.959964) of p_successes out of p_n, in percent rounded to 2
decimals; NULL low and high when p_n is 0 (or the counts are not 0 <= p_successes <= p_n).';

REVOKE ALL ON FUNCTION crm_private.wilson_interval(bigint, bigint) FROM public;
