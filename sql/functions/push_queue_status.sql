-- SELECT * FROM crm.push_queue_status();
-- SELECT * FROM crm.push_queue_status('<client uuid>');

CREATE OR REPLACE FUNCTION crm.push_queue_status(p_client_id uuid DEFAULT NULL)
RETURNS TABLE (
    client_id uuid,
    client_name text,
    crm_type text,
    connection_status text,
    is_active boolean,
    pending bigint,
    due bigint,
    in_flight bigint,
    held bigint,
    failed bigint,
    dead bigint,
    oldest_pending_at timestamptz,
    next_run_after timestamptz,
    last_successful_push_at timestamptz,
    last_error text
)
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT
        c.id,
        c.name,
        cfg.crm_type,
        cfg.connection_status,
        cfg.is_active,
        coalesce(p.pending, 0),
        coalesce(p.due, 0),
        coalesce(f.in_flight, 0),
        coalesce(h.held, 0),
        coalesce(s.failed, 0),
        coalesce(s.dead, 0),
        p.oldest_pending_at,
        p.next_run_after,
        cfg.last_successful_push_at,
        cfg.last_error
    FROM crm.clients AS c
    LEFT JOIN crm.client_crm_configs AS cfg
        ON cfg.client_id = c.id AND cfg.deleted_at IS NULL
    LEFT JOIN LATERAL (
        SELECT
            count(*) AS pending,
            count(*) FILTER (WHERE q.run_after <= pg_catalog.now()) AS due,
            min(q.created_at) AS oldest_pending_at,
            min(q.run_after) AS next_run_after
        FROM crm.crm_push_queue AS q
        WHERE q.client_id = c.id AND q.status = 'pending'
    ) AS p ON TRUE
    LEFT JOIN LATERAL (
        SELECT count(*) AS in_flight
        FROM crm.crm_push_queue AS q
        WHERE q.client_id = c.id AND q.status = 'in_flight'
    ) AS f ON TRUE
    LEFT JOIN LATERAL (
        SELECT count(*) AS held
        FROM crm.crm_push_queue AS q
        WHERE q.client_id = c.id AND q.status = 'held'
    ) AS h ON TRUE
    LEFT JOIN LATERAL (
        SELECT
            count(*) FILTER (WHERE q.status = 'failed') AS failed,
            count(*) FILTER (WHERE q.status = 'dead') AS dead
        FROM crm.crm_push_queue AS q
        WHERE q.client_id = c.id AND q.status IN ('failed', 'dead')
    ) AS s ON TRUE
    WHERE c.deleted_at IS NULL
      AND (p_client_id IS NULL OR c.id = p_client_id)
      AND (
          cfg.id IS NOT NULL
          OR coalesce(p.pending, 0) + coalesce(f.in_flight, 0) + coalesce(h.held, 0)
          + coalesce(s.failed, 0) + coalesce(s.dead, 0) > 0
      )
    ORDER BY c.name, c.id;
$$;

COMMENT ON FUNCTION crm.push_queue_status(uuid) IS
'The push queue per client (all clients, or p_client_id): its CRM connection, how many pushes
are pending (and due now), in flight, held, failed and dead, the oldest pending push, the next
retry time, the last successful push and the last error. Clients with neither a CRM config nor
unfinished pushes are left out. Done pushes are not counted (the table keeps them all).';

REVOKE ALL ON FUNCTION crm.push_queue_status(uuid) FROM public;
