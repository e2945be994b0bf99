-- SELECT * FROM crm.claim_pushes('<client uuid>', 'runner-host-1234', 100, 300);

CREATE OR REPLACE FUNCTION crm.claim_pushes(
    p_client_id uuid,
    p_lease_owner text,
    p_limit integer DEFAULT 100,
    p_lease_seconds integer DEFAULT 300
)
RETURNS TABLE (
    client_id uuid,
    id bigint,
    operation text,
    lead_id uuid,
    meeting_id uuid,
    deal_id uuid,
    attempts integer,
    crm_config_id uuid,
    lease_expires_at timestamptz
)
LANGUAGE plpgsql
SET search_path = ''
-- One plan per session for the claim, whatever p_limit is (a custom plan per call cost more
-- than the claim itself; see docs/benchmarks.md).
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_now timestamptz := pg_catalog.clock_timestamp();
    v_config_id uuid;
    v_max_attempts integer;
BEGIN
    IF p_lease_owner IS NULL OR pg_catalog.btrim(p_lease_owner) = '' THEN
        RAISE EXCEPTION 'claim_pushes: p_lease_owner must name the runner, got %',
            coalesce(pg_catalog.quote_literal(p_lease_owner), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a name unique to this runner, e.g. host name and process id.';
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'claim_pushes: p_limit must be between 1 and 10000, got %', p_limit
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Claim a batch of 1 to 10000 pushes (100 is a good default).';
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'claim_pushes: p_lease_seconds must be between 1 and 86400, got %',
            p_lease_seconds
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The lease must outlast one push''s CRM calls (300 s is the default).';
    END IF;

    -- Only a live, active config that is not in error gets pushes.
    SELECT cfg.id, cfg.max_attempts INTO v_config_id, v_max_attempts
    FROM crm.client_crm_configs AS cfg
    WHERE cfg.client_id = p_client_id
      AND cfg.deleted_at IS NULL
      AND cfg.is_active
      AND cfg.connection_status <> 'error';
    IF NOT FOUND THEN
        RETURN;
    END IF;

    -- Rescue: a claim whose lease lapsed belongs to a runner that crashed or hung. It goes
    -- back to pending (its attempt counted), or dead once the attempts are spent. One whose
    -- entity got a newer pending push of the same operation meanwhile is superseded by it
    -- (the pending push sends the entity's current state).
    UPDATE crm.crm_push_queue AS q
    SET status = 'done',
        finished_at = v_now,
        last_error = 'lease of ' || q.lease_owner || ' expired; superseded by a newer pending push',
        lease_owner = NULL,
        lease_expires_at = NULL
    WHERE q.status = 'in_flight'
      AND q.lease_expires_at < v_now
      AND q.client_id = p_client_id
      AND EXISTS (
          SELECT 1
          FROM crm.crm_push_queue AS p
          WHERE p.client_id = q.client_id
            AND p.operation = q.operation
            AND coalesce(p.deal_id, p.meeting_id, p.lead_id)
            = coalesce(q.deal_id, q.meeting_id, q.lead_id)
            AND p.status = 'pending'
      );

    -- attempts stays counted: the lapsed claim may still finish late, and naming its number
    -- then must not match a later claim (crm.finish_push).
    UPDATE crm.crm_push_queue AS q
    SET status = CASE WHEN q.attempts - q.attempts_base >= v_max_attempts THEN 'dead'
            ELSE 'pending' END,
        run_after = v_now,
        finished_at = CASE WHEN q.attempts - q.attempts_base >= v_max_attempts THEN v_now END,
        last_error = 'lease of ' || q.lease_owner || ' expired at '
        || pg_catalog.to_char(q.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        || ' (runner crashed or hung) after attempt ' || q.attempts,
        lease_owner = NULL,
        lease_expires_at = NULL
    WHERE q.status = 'in_flight'
      AND q.lease_expires_at < v_now
      AND q.client_id = p_client_id;

    RETURN QUERY
    UPDATE crm.crm_push_queue AS u
    SET status = 'in_flight',
        attempts = u.attempts + 1,
        lease_owner = p_lease_owner,
        lease_expires_at = v_now + pg_catalog.make_interval(secs => p_lease_seconds),
        updated_at = v_now
    WHERE u.client_id = p_client_id
      AND u.id = ANY(ARRAY(
          SELECT q.id
          FROM crm.crm_push_queue AS q
          WHERE q.client_id = p_client_id
            AND q.status = 'pending'
            AND q.run_after <= v_now
            -- Per-entity order: never overtake an unfinished earlier push of the same lead.
            AND NOT EXISTS (
                SELECT 1
                FROM crm.crm_push_queue AS e
                WHERE e.client_id = q.client_id
                  AND e.lead_id = q.lead_id
                  AND e.id < q.id
                  AND e.status IN ('pending', 'in_flight', 'held')
            )
          ORDER BY q.run_after, q.id
          LIMIT p_limit
          FOR UPDATE OF q SKIP LOCKED
      ))
    RETURNING
        u.client_id, u.id, u.operation, u.lead_id, u.meeting_id, u.deal_id, u.attempts,
        v_config_id, u.lease_expires_at;
END;
$$;

COMMENT ON FUNCTION crm.claim_pushes(uuid, text, integer, integer) IS
'Claim up to p_limit due pushes of one client for the runner p_lease_owner, under a lease of
p_lease_seconds: each becomes in_flight with its attempt counted, in a short transaction of its
own (never held across an HTTP call). The attempts returned names the claim: pass it to
crm.finish_push (a number is never handed out again once its claim lapsed). Claims skip rows
other runners hold (SKIP LOCKED) and pushes whose lead has an earlier unfinished push, so one
lead''s pushes go out one at a time in order. First returns lapsed leases (crashed runners)
to pending, or dead when their attempts are spent. Returns nothing when the client has no
live, active config or its config is in error.';

REVOKE ALL ON FUNCTION crm.claim_pushes(uuid, text, integer, integer) FROM public;
