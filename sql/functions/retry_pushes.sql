-- SELECT crm.retry_pushes();                                  -- every dead and failed push
-- SELECT crm.retry_pushes('<client uuid>', ARRAY['dead']);    -- one client's dead pushes
-- SELECT crm.retry_pushes(NULL, ARRAY['failed'], ARRAY[42]);  -- one push

CREATE OR REPLACE FUNCTION crm.retry_pushes(
    p_client_id uuid DEFAULT NULL,
    p_statuses text[] DEFAULT ARRAY['dead', 'failed'],
    p_push_ids bigint[] DEFAULT NULL
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_bad text;
    v_count integer;
BEGIN
    SELECT s INTO v_bad
    FROM pg_catalog.unnest(p_statuses) AS s
    WHERE s IS NULL OR s NOT IN ('dead', 'failed', 'held')
    LIMIT 1;
    IF FOUND OR p_statuses IS NULL OR pg_catalog.cardinality(p_statuses) = 0 THEN
        RAISE EXCEPTION 'retry_pushes: p_statuses may hold dead, failed and held, got %',
            coalesce(pg_catalog.quote_literal(v_bad), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pending and in-flight pushes are already on their way; done ones are done.';
    END IF;
    WITH chosen AS (
        -- The newest of several stuck pushes of one entity and operation stands for them all.
        SELECT DISTINCT ON (s.client_id, s.operation, coalesce(s.deal_id, s.meeting_id, s.lead_id))
            s.client_id,
            s.id
        FROM crm.crm_push_queue AS s
        WHERE s.status = ANY(p_statuses)
          AND (p_client_id IS NULL OR s.client_id = p_client_id)
          AND (p_push_ids IS NULL OR s.id = ANY(p_push_ids))
        ORDER BY s.client_id, s.operation, coalesce(s.deal_id, s.meeting_id, s.lead_id), s.id DESC
    )
    UPDATE crm.crm_push_queue AS q
    SET status = 'pending',
        -- A fresh budget, but the count goes on: a lapsed claim of this push may still
        -- finish late, and its attempt number must never name a later claim.
        attempts_base = q.attempts,
        run_after = pg_catalog.now(),
        finished_at = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM chosen
    WHERE q.client_id = chosen.client_id
      AND q.id = chosen.id
      -- One pending push per entity and operation: a pending push already sends the current
      -- state.
      AND NOT EXISTS (
          SELECT 1
          FROM crm.crm_push_queue AS p
          WHERE p.client_id = q.client_id
            AND p.operation = q.operation
            AND coalesce(p.deal_id, p.meeting_id, p.lead_id)
            = coalesce(q.deal_id, q.meeting_id, q.lead_id)
            AND p.status = 'pending'
      );
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

COMMENT ON FUNCTION crm.retry_pushes(uuid, text[], bigint[]) IS
'Send dead and failed (or held) pushes again: back to pending with a fresh attempt budget
(attempts_base = attempts: the attempt numbers go on, max_attempts counts from there), due
now. Narrow with p_client_id, p_statuses and p_push_ids. A push whose entity already has a
pending push of the same operation is left as it is (the pending one sends the current state),
and of several stuck pushes of one entity and operation only the newest goes back.
Returns how many pushes were put back.';

REVOKE ALL ON FUNCTION crm.retry_pushes(uuid, text[], bigint[]) FROM public;
