-- SELECT * FROM crm_private.markov_paths(client_id, start_at, as_of, NULL)

CREATE OR REPLACE FUNCTION crm_private.markov_paths(
    p_client_id uuid,
    p_start_at timestamptz,
    p_as_of timestamptz,
    p_currency text
)
RETURNS TABLE (
    path_id bigint,
    pos bigint,
    channel text,
    converted boolean,
    value double precision
)
LANGUAGE sql
STABLE
SET search_path = ''
BEGIN ATOMIC
    WITH won AS (
        SELECT
            d.id,
            d.lead_id,
            d.created_at,
            d.value::double precision AS value
        FROM crm.deals AS d
        WHERE
            d.client_id = p_client_id
            AND d.stage = 'closed_won'
            AND d.deleted_at IS NULL
            AND d.closed_at >= p_start_at
            AND d.closed_at < p_as_of
            AND (p_currency IS NULL OR d.currency = p_currency)
    ),

    quiet_leads AS (
        SELECT l.id
        FROM crm.leads AS l
        WHERE
            l.client_id = p_client_id
            AND l.deleted_at IS NULL
            AND NOT EXISTS (
                SELECT 1
                FROM crm.deals AS d
                WHERE
                    d.client_id = p_client_id
                    AND d.lead_id = l.id
                    AND d.deleted_at IS NULL
                    AND d.stage = 'closed_won'
                    AND d.closed_at < p_as_of
            )
            AND EXISTS (
                SELECT 1
                FROM crm.activities AS a
                WHERE
                    a.client_id = p_client_id
                    AND a.lead_id = l.id
                    AND a.deleted_at IS NULL
                    AND a.occurred_at >= p_start_at
                    AND a.occurred_at < p_as_of
            )
    ),

    paths AS (
        SELECT
            w.lead_id,
            w.created_at AS last_touch_at,
            TRUE AS converted,
            w.value,
            dense_rank() OVER (ORDER BY w.id) AS path_id
        FROM won AS w
        UNION ALL
        SELECT
            q.id AS lead_id,
            p_as_of - interval '1 microsecond' AS last_touch_at,
            FALSE AS converted,
            0 AS value,
            -dense_rank() OVER (ORDER BY q.id) AS path_id
        FROM quiet_leads AS q
    )

    SELECT
        p.path_id,
        row_number() OVER (PARTITION BY p.path_id ORDER BY a.occurred_at, a.id) AS pos,
        a.channel::text AS channel,
        p.converted,
        p.value
    FROM paths AS p
    INNER JOIN crm.activities AS a
        ON
            a.client_id = p_client_id
            AND a.lead_id = p.lead_id
            AND a.occurred_at <= p.last_touch_at
    WHERE a.deleted_at IS NULL;
END;

COMMENT ON FUNCTION crm_private.markov_paths(uuid, timestamptz, timestamptz, text) IS
'The touch paths of crm.get_markov_attribution, one row per touch: won deals closed in [p_start_at,
p_as_of) (touches up to the deal''s creation; converted) and leads with no won deal as of
p_as_of that were touched in the window (touches before p_as_of; not converted).';

REVOKE ALL ON FUNCTION crm_private.markov_paths(uuid, timestamptz, timestamptz, text)
FROM public;
