-- SELECT crm.finish_push('<client uuid>', 42, 'runner-host-1234', 1, 'done');
-- SELECT crm.finish_push('<client uuid>', 42, 'runner-host-1234', 3, 'retry',
--                        '503 from the CRM', now() + interval '8 seconds');

CREATE OR REPLACE FUNCTION crm.finish_push(
    p_client_id uuid,
    p_push_id bigint,
    p_lease_owner text,
    p_attempt integer,
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
    -- The latest a retried or deferred push may be parked: longer than any rate-limit window a
    -- CRM announces (daily budgets reset within a day) and than the backoff cap (15 min).
    v_max_retry_delay constant interval := interval '7 days';
    v_push crm.crm_push_queue;
    v_max_attempts integer;
    v_config_in_error boolean;
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
    IF p_attempt IS NULL THEN
        RAISE EXCEPTION 'finish_push: p_attempt is required: the claim being finished'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the attempts crm.claim_pushes returned with the push.';
    END IF;
    IF p_attempt < 1 THEN
        RAISE EXCEPTION 'finish_push: p_attempt must be 1 or more, got %', p_attempt
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the attempts crm.claim_pushes returned with the push (the first '
                      'claim is attempt 1).';
    END IF;
    IF p_outcome IN ('retry', 'defer') AND p_retry_at IS NULL THEN
        RAISE EXCEPTION 'finish_push: p_retry_at is required when p_outcome is %', p_outcome
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass when the push may be tried again, e.g. now() + interval ''5 s''.';
    END IF;
    IF NOT pg_catalog.isfinite(p_retry_at) OR p_retry_at > v_now + v_max_retry_delay THEN
        RAISE EXCEPTION 'finish_push: p_retry_at must be finite and at most % ahead, got %',
            v_max_retry_delay, p_retry_at
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A push is never parked longer than that: pass a time within 7 days '
                      '(a past one means due now), or finish it failed to stop retrying it.';
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
    -- Only the claim named finishes: the runner's, with that attempt number. Another claim
    -- holds the push when its lease lapsed and it was claimed again, by another runner or by
    -- this one (attempt numbers are never handed out again after a lapse: see attempts_base).
    IF v_push.status <> 'in_flight'
       OR v_push.lease_owner IS DISTINCT FROM p_lease_owner
       OR v_push.attempts <> p_attempt THEN
        RETURN 'lease_lost';
    END IF;

    IF p_outcome = 'held' THEN
        -- The config as it is now, under a share lock: a fix being committed (its UPDATE
        -- holds the row) is waited for and then seen; a fix that comes later waits for this
        -- finish, and its trigger then releases the push held here.
        SELECT cfg.connection_status = 'error' INTO v_config_in_error
        FROM crm.client_crm_configs AS cfg
        WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL
        FOR SHARE;
    ELSIF p_outcome = 'retry' THEN
        SELECT cfg.max_attempts INTO v_max_attempts
        FROM crm.client_crm_configs AS cfg
        WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL;
    END IF;

    v_status := CASE p_outcome
        WHEN 'done' THEN 'done'
        WHEN 'failed' THEN 'failed'
        -- Held only while the config is in error: one fixed since crm.hold_pushes (or gone)
        -- would never release it.
        WHEN 'held' THEN CASE WHEN v_config_in_error THEN 'held' ELSE 'pending' END
        WHEN 'defer' THEN 'pending'
        -- Without a live config (deleted meanwhile) there is no budget to spend: the push
        -- waits, pending, for the client's next config.
        ELSE CASE WHEN v_push.attempts - v_push.attempts_base >= v_max_attempts THEN 'dead'
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
        attempts = CASE WHEN p_outcome IN ('held', 'defer')
            THEN greatest(q.attempts - 1, q.attempts_base) ELSE q.attempts END,
        run_after = CASE
            WHEN v_status = 'pending' AND p_outcome = 'held' THEN v_now
            WHEN v_status = 'pending' THEN p_retry_at
            ELSE q.run_after END,
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

COMMENT ON FUNCTION crm.finish_push(uuid, bigint, text, integer, text, text, timestamptz) IS
'Record how the claim p_attempt of p_lease_owner (the attempts crm.claim_pushes returned) ended,
and return the push''s new status. done: the CRM has it (the config''s last_successful_push_at
and connection_status are kept current); retry: pending again at p_retry_at, or dead when the
config''s max_attempts are spent; defer: pending again at p_retry_at without spending an attempt
(waiting for the CRM''s search index or for another push creating the same record); failed: not
retryable; held: waiting for the CRM config to be fixed, the attempt not counted (pending, due
now, when the config is no longer in error). p_retry_at must be finite and at most 7 days
ahead. A retry or defer while the entity has a newer pending push of the same operation
returns superseded (the row becomes done: the newer push sends the current state). Returns
lease_lost, changing nothing, unless that very claim still holds the push (its lease lapsed
and the push was claimed again, by another runner or by this one).';

REVOKE ALL ON FUNCTION crm.finish_push(uuid, bigint, text, integer, text, text, timestamptz)
FROM public;

-- The signature before 0.1.0's claim fix: it named no claim, so a late finish of a lapsed
-- claim could finish the live one. Kept only to refuse old callers with a clear message.
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
BEGIN
    -- One refusal for both old signatures: the one below words it.
    RETURN crm.finish_push(
        p_client_id, p_push_id, p_lease_owner, p_outcome, p_error, p_retry_at::text
    );
END;
$$;

COMMENT ON FUNCTION crm.finish_push(uuid, bigint, text, text, text, timestamptz) IS
'Refuses (SQLSTATE 0A000): a finish must name its claim. Use crm.finish_push(p_client_id,
p_push_id, p_lease_owner, p_attempt, p_outcome, p_error, p_retry_at).';

REVOKE ALL ON FUNCTION crm.finish_push(uuid, bigint, text, text, text, timestamptz) FROM public;

-- The same refusal for an old call whose p_retry_at is an untyped NULL (what a driver sends for
-- a missing value): between the two signatures above PostgreSQL could not choose one (42725).
CREATE OR REPLACE FUNCTION crm.finish_push(
    p_client_id uuid,
    p_push_id bigint,
    p_lease_owner text,
    p_outcome text,
    p_error text,
    p_retry_at text
)
RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RAISE EXCEPTION 'finish_push: the claim must be named: push % of client % was finished '
        'without p_attempt', p_push_id, p_client_id
        USING ERRCODE = 'feature_not_supported',
              DETAIL = 'Without the attempt number a late finish of a lapsed claim could '
                  'finish the claim that took the push over.',
              HINT = format(
                  'Call crm.finish_push(p_client_id, p_push_id, p_lease_owner, p_attempt, '
                  'p_outcome, p_error, p_retry_at) with the attempts crm.claim_pushes '
                  'returned: crm.finish_push(%L, %s, %L, <attempts>, %L, %L, %L).',
                  p_client_id, p_push_id, p_lease_owner, p_outcome, p_error, p_retry_at
              );
END;
$$;

COMMENT ON FUNCTION crm.finish_push(uuid, bigint, text, text, text, text) IS
'Refuses (SQLSTATE 0A000), like crm.finish_push(uuid, bigint, text, text, text, timestamptz):
it catches the old six-argument call with an untyped p_retry_at. Use crm.finish_push(p_client_id,
p_push_id, p_lease_owner, p_attempt, p_outcome, p_error, p_retry_at).';

REVOKE ALL ON FUNCTION crm.finish_push(uuid, bigint, text, text, text, text) FROM public;
