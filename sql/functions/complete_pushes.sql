-- SELECT crm.complete_pushes('<client uuid>', 'runner-host-1234', ARRAY[41, 42, 43]);

CREATE OR REPLACE FUNCTION crm.complete_pushes(
    p_client_id uuid,
    p_lease_owner text,
    p_push_ids bigint[]
)
RETURNS integer
LANGUAGE sql
SET search_path = ''
AS $$
    WITH done AS (
        UPDATE crm.crm_push_queue AS q
        SET status = 'done',
            lease_owner = NULL,
            lease_expires_at = NULL,
            finished_at = pg_catalog.clock_timestamp(),
            updated_at = pg_catalog.clock_timestamp()
        WHERE q.client_id = p_client_id
          AND q.id = ANY(p_push_ids)
          AND q.status = 'in_flight'
          AND q.lease_owner = p_lease_owner
        RETURNING 1
    )
    SELECT count(*)::integer FROM done;
$$;

COMMENT ON FUNCTION crm.complete_pushes(uuid, text, bigint[]) IS
'Mark many claimed pushes of one client done in one statement (pushes with nothing to send,
batch acknowledgements). Pushes p_lease_owner no longer holds are left alone. Returns how many
were completed.';

REVOKE ALL ON FUNCTION crm.complete_pushes(uuid, text, bigint[]) FROM public;
