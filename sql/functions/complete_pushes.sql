-- SELECT crm.complete_pushes('<client uuid>', 'runner-host-1234', ARRAY[41, 42, 43],
--                            ARRAY[1, 1, 2]);
-- SELECT crm.complete_pushes('<client uuid>', 'runner-host-1234', ARRAY[41, 42], ARRAY[1, 3],
--                            'skipped');

CREATE OR REPLACE FUNCTION crm.complete_pushes(
    p_client_id uuid,
    p_lease_owner text,
    p_push_ids bigint[],
    p_attempts integer[],
    p_log_status text DEFAULT NULL
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_done integer;
BEGIN
    IF p_log_status IS NOT NULL AND p_log_status NOT IN ('success', 'skipped') THEN
        RAISE EXCEPTION 'complete_pushes: p_log_status must be success, skipped or NULL, got %',
            pg_catalog.quote_literal(p_log_status)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'NULL writes no audit rows (the caller wrote them); success or skipped '
                      'writes one per completed push.';
    END IF;
    IF p_push_ids IS NULL OR p_attempts IS NULL
       OR pg_catalog.cardinality(p_push_ids) <> pg_catalog.cardinality(p_attempts) THEN
        RAISE EXCEPTION 'complete_pushes: p_attempts must name the claim of each of p_push_ids, '
            'got % id(s) and % attempt(s)',
            coalesce(pg_catalog.cardinality(p_push_ids)::text, 'NULL'),
            coalesce(pg_catalog.cardinality(p_attempts)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass, in the same order, the id and the attempts crm.claim_pushes '
                      'returned for each push.';
    END IF;
    WITH done AS (
        UPDATE crm.crm_push_queue AS q
        SET status = 'done',
            lease_owner = NULL,
            lease_expires_at = NULL,
            finished_at = pg_catalog.clock_timestamp(),
            updated_at = pg_catalog.clock_timestamp()
        -- One primary-key probe per id (= ANY scanned every in-flight push through the lease
        -- index and tested each against the array).
        FROM ROWS FROM (pg_catalog.unnest(p_push_ids), pg_catalog.unnest(p_attempts))
            AS t (id, attempt)
        WHERE q.client_id = p_client_id
          AND q.id = t.id
          AND q.status = 'in_flight'
          -- Only the claim named: a lapsed claim taken over (by another runner or by this
          -- one, under a new attempt number) is left alone.
          AND q.lease_owner = p_lease_owner
          AND q.attempts = t.attempt
        RETURNING q.client_id, q.id, q.operation, q.lead_id, q.meeting_id, q.deal_id
    ),

    logged AS (
        INSERT INTO crm.crm_push_log (
            client_id, crm_config_id, push_id, operation, lead_id, meeting_id, deal_id,
            status, duration_ms
        )
        SELECT
            d.client_id,
            (
                SELECT cfg.id
                FROM crm.client_crm_configs AS cfg
                WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL
            ),
            d.id,
            d.operation,
            d.lead_id,
            d.meeting_id,
            d.deal_id,
            p_log_status,
            0
        FROM done AS d
        WHERE p_log_status IS NOT NULL
        RETURNING 1
    )

    SELECT count(*)::integer INTO v_done FROM done;
    RETURN v_done;
END;
$$;

COMMENT ON FUNCTION crm.complete_pushes(uuid, text, bigint[], integer[], text) IS
'Mark many claimed pushes of one client done in one statement (pushes with nothing to send,
batch acknowledgements). p_attempts names, for each of p_push_ids in the same order, the claim
being completed (the attempts crm.claim_pushes returned): a push no longer held by that claim
of p_lease_owner is left alone. With p_log_status (success or skipped) it also writes one
crm_push_log row per push it completed. Returns how many were completed.';

REVOKE ALL ON FUNCTION crm.complete_pushes(uuid, text, bigint[], integer[], text) FROM public;

-- The signature before 0.1.0's claim fix: it named no claim. Kept only to refuse old callers
-- with a clear message.
CREATE OR REPLACE FUNCTION crm.complete_pushes(
    p_client_id uuid,
    p_lease_owner text,
    p_push_ids bigint[],
    p_log_status text DEFAULT NULL
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RAISE EXCEPTION 'complete_pushes: the claims must be named: % push(es) of client % were '
        'completed for % without p_attempts',
        coalesce(pg_catalog.cardinality(p_push_ids), 0), p_client_id, p_lease_owner
        USING ERRCODE = 'feature_not_supported',
              DETAIL = 'Without the attempt numbers a lapsed claim could complete the claim '
                  'that took the push over.',
              HINT = format(
                  'Call crm.complete_pushes(p_client_id, p_lease_owner, p_push_ids, p_attempts, '
                  'p_log_status) with the attempts crm.claim_pushes returned for each push, '
                  'in the same order: crm.complete_pushes(%L, %L, <ids>, <attempts>, %L).',
                  p_client_id, p_lease_owner, p_log_status
              );
END;
$$;

COMMENT ON FUNCTION crm.complete_pushes(uuid, text, bigint[], text) IS
'Refuses (SQLSTATE 0A000): completing pushes must name their claims. Use
crm.complete_pushes(p_client_id, p_lease_owner, p_push_ids, p_attempts, p_log_status).';

REVOKE ALL ON FUNCTION crm.complete_pushes(uuid, text, bigint[], text) FROM public;
