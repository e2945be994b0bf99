-- PERFORM crm_private.await_connects(ARRAY['<client uuid>']::uuid[]);

CREATE OR REPLACE FUNCTION crm_private.await_connects(p_client_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(
        pg_catalog.hashtextextended('agency-crm connection ' || c.id::text, 0)
    )
    FROM (
        SELECT DISTINCT u.id
        FROM pg_catalog.unnest(p_client_ids) AS u (id)
        WHERE u.id IS NOT NULL
          AND NOT EXISTS (
              SELECT 1
              FROM crm.client_crm_configs AS cfg
              WHERE cfg.client_id = u.id AND cfg.deleted_at IS NULL AND cfg.is_active
          )
        ORDER BY u.id
    ) AS c;
END;
$$;

COMMENT ON FUNCTION crm_private.await_connects(uuid[]) IS
'Called by a writer about to enqueue pushes, before it looks for the clients'' CRM configs: for
each client with no active config it can see, wait for a connect that may be committing one
(the shared side of crm_private.connection_lock, held to the end of the transaction). Without
it a change made while a client''s first connect commits would be lost: the writer sees no
config, and the connect''s backfill cannot see the uncommitted change. With it, either the
connect waits for the writer (and its backfill sees the change) or the writer waits for the
connect (and its next statement sees the config). Writers of one client never wait for each
other: the lock is shared. EXECUTE: crm_app (sql/access.sql), so no reader can stall a connect.';

REVOKE ALL ON FUNCTION crm_private.await_connects(uuid[]) FROM public;
