-- SELECT crm.finish_push('<client uuid>', 42, 'runner-host-1234', 'done');
-- SELECT crm.finish_push('<client uuid>', 42, 'runner-host-1234', 'retry',
--                        '503 from the CRM', now() + interval '8 seconds');

CREATE OR REPLACE FUNCTION crm.finish_push(
    p_client_id uuid,
    p_push_id bigint,
    p_lease_owner text,
    p_outcome text,
    p_error text DEFAULT NULL,
    p_retry_at timestamptz DEFAULT NULL
)
RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_now timestamptz := pg_catalog.clock_timestamp();
    v_push crm.crm_push_queue;
    v_max_attempts integer;
    v_status text;
BEGIN
    IF p_outcome IS NULL OR p_outcome NOT IN ('done', 'retry', 'defer', 'failed', 'held') THEN
        RAISE EXCEPTION 'finish_push: p_outcome must be done, retry, defer, failed or held, got %',
            coalesce(pg_catalog.quote_literal(p_outcome), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'done: the CRM has it; retry: try again at p_retry_at; defer: wait '
                      'until p_retry_at without spending an attempt; failed: not retryable; '
                      'held: the CRM config needs fixing.';
    END IF;
    IF p_outcome IN ('retry', 'defer') AND p_retry_at IS NULL THEN
        RAISE EXCEPTION 'finish_push: p_retry_at is required when p_outcome is %', p_outcome
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass when the push may be tried again, e.g. now() + interval ''5 s''.';
    END IF;

    SELECT q.* INTO v_push
    FROM crm.crm_push_queue AS q
    WHERE q.client_id = p_client_id AND q.id = p_push_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'finish_push: push % of client % does not exist', p_push_id, p_client_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'Pass the client_id and id returned by crm.claim_pushes.';
    END IF;
    -- The lease was lost (it lapsed and another runner took the push): that runner owns it.
    IF v_push.status <> 'in_flight' OR v_push.lease_owner IS DISTINCT FROM p_lease_owner THEN
        RETURN 'lease_lost';
    END IF;

    SELECT cfg.max_attempts INTO v_max_attempts
    FROM crm.client_crm_configs AS cfg
    WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL;

    v_status := CASE p_outcome
        WHEN 'done' THEN 'done'
        WHEN 'failed' THEN 'failed'
        WHEN 'held' THEN 'held'
        WHEN 'defer' THEN 'pending'
        -- Without a live config (deleted meanwhile) there is no budget to spend: the push
        -- waits, pending, for the client's next config.
        ELSE CASE WHEN v_push.attempts >= v_max_attempts THEN 'dead'
            ELSE 'pending' END
    END;
    -- Back to pending while the entity got a newer pending push of the same operation: that
    -- one sends the current state, so this one is superseded.
    IF v_status = 'pending' AND EXISTS (
        SELECT 1
        FROM crm.crm_push_queue AS p
        WHERE p.client_id = p_client_id
          AND p.operation = v_push.operation
          AND coalesce(p.deal_id, p.meeting_id, p.lead_id)
          = coalesce(v_push.deal_id, v_push.meeting_id, v_push.lead_id)
          AND p.status = 'pending'
    ) THEN
        v_status := 'superseded';
    END IF;

    UPDATE crm.crm_push_queue AS q
    SET status = CASE WHEN v_status = 'superseded' THEN 'done' ELSE v_status END,
        -- A held or deferred push did not really try: its attempt is given back.
        attempts = CASE WHEN p_outcome IN ('held', 'defer') THEN greatest(q.attempts - 1, 0)
            ELSE q.attempts END,
        run_after = CASE WHEN v_status = 'pending' THEN p_retry_at ELSE q.run_after END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = CASE WHEN p_outcome = 'done' THEN q.last_error
            ELSE pg_catalog.left(p_error, 2000) END,
        finished_at = CASE WHEN v_status IN ('done', 'failed', 'dead', 'superseded') THEN v_now
            END,
        updated_at = v_now
    WHERE q.client_id = p_client_id AND q.id = p_push_id;

    IF v_status = 'done' THEN
        -- Keep the config's health true, without rewriting it on every push.
        UPDATE crm.client_crm_configs AS cfg
        -- A config another push just put in error stays in error: only fixing its
        -- credentials releases the held pushes.
        SET last_successful_push_at = v_now,
            connection_status = 'connected',
            last_error = NULL
        WHERE cfg.client_id = p_client_id
          AND cfg.deleted_at IS NULL
          AND cfg.connection_status <> 'error'
          AND (
              cfg.last_successful_push_at IS NULL
              OR cfg.last_successful_push_at < v_now - interval '1 second'
              OR cfg.connection_status <> 'connected'
              OR cfg.last_error IS NOT NULL
          );
    END IF;
    RETURN v_status;
END;
$$;

COMMENT ON FUNCTION crm.finish_push(uuid, bigint, text, text, text, timestamptz) IS
'Record how a claimed push ended and return its new status. done: the CRM has it (the
config''s last_successful_push_at and connection_status are kept current); retry: pending
again at p_retry_at, or dead when the config''s max_attempts are spent; defer: pending again at
p_retry_at without spending an attempt (waiting for the CRM''s search index or for another
push creating the same record); failed: not
retryable; held: waiting for the CRM config to be fixed, the attempt not counted. A retry or
defer while the entity has a newer pending push of the same operation returns superseded (the
row becomes done: the newer push sends the current state). Returns lease_lost, changing
nothing, when p_lease_owner no longer holds the push.';

REVOKE ALL ON FUNCTION crm.finish_push(uuid, bigint, text, text, text, timestamptz) FROM public;
