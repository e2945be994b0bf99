-- SELECT * FROM crm.finish_pushes('<client uuid>', 'runner-host-1234',
--     ARRAY[41, 42, 43], ARRAY[1, 1, 2], ARRAY['done', 'retry', 'failed'],
--     ARRAY[NULL, '503 from the CRM', '400 bad email'],
--     ARRAY[NULL, now() + interval '8 seconds', NULL]);

CREATE OR REPLACE FUNCTION crm.finish_pushes(
    p_client_id uuid,
    p_lease_owner text,
    p_push_ids bigint[],
    p_attempts integer[],
    p_outcomes text[],
    p_errors text[] DEFAULT NULL,
    p_retry_ats timestamptz[] DEFAULT NULL
)
RETURNS TABLE (push_id bigint, status text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_n integer := pg_catalog.cardinality(p_push_ids);
    v_item record;
    v_now timestamptz := pg_catalog.clock_timestamp();
    v_done_ids bigint [];
    v_done_attempts integer [];
    v_finished bigint [];
    v_missing bigint;
BEGIN
    IF p_push_ids IS NULL OR p_attempts IS NULL OR p_outcomes IS NULL
       OR pg_catalog.cardinality(p_attempts) <> v_n
       OR pg_catalog.cardinality(p_outcomes) <> v_n
       OR (p_errors IS NOT NULL AND pg_catalog.cardinality(p_errors) <> v_n)
       OR (p_retry_ats IS NOT NULL AND pg_catalog.cardinality(p_retry_ats) <> v_n) THEN
        RAISE EXCEPTION 'finish_pushes: p_attempts, p_outcomes, p_errors and p_retry_ats must '
            'each have one entry per push of p_push_ids, got %, %, %, % and %',
            coalesce(v_n::text, 'NULL'),
            coalesce(pg_catalog.cardinality(p_attempts)::text, 'NULL'),
            coalesce(pg_catalog.cardinality(p_outcomes)::text, 'NULL'),
            coalesce(pg_catalog.cardinality(p_errors)::text, 'NULL'),
            coalesce(pg_catalog.cardinality(p_retry_ats)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass, in the same order, each push''s id, the attempts '
                      'crm.claim_pushes returned for it, its outcome and (or NULL arrays) its '
                      'error and retry time.';
    END IF;
    IF v_n <> (SELECT count(DISTINCT t.id) FROM pg_catalog.unnest(p_push_ids) AS t (id)) THEN
        RAISE EXCEPTION 'finish_pushes: p_push_ids names a push twice: %', p_push_ids
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Each claim is finished once: pass every push id at most once.';
    END IF;
    -- Every row of the batch locked first, in push-id order: two finishers whose claims
    -- overlap (a lapsed claim and the one that took it over) lock in one order, never each
    -- waiting for the other.
    PERFORM 1
    FROM crm.crm_push_queue AS q
    WHERE q.client_id = p_client_id AND q.id = ANY(p_push_ids)
    ORDER BY q.id
    FOR UPDATE;

    -- done, the usual outcome, for the whole set in one statement: exactly what
    -- crm.finish_push does for a done claim (only the claim named, still in flight under this
    -- owner, is finished; another is lease_lost).
    SELECT pg_catalog.array_agg(t.id), pg_catalog.array_agg(t.attempt)
    INTO v_done_ids, v_done_attempts
    FROM ROWS FROM (
        pg_catalog.unnest(p_push_ids),
        pg_catalog.unnest(p_attempts),
        pg_catalog.unnest(p_outcomes),
        pg_catalog.unnest(p_retry_ats)
    ) AS t (id, attempt, outcome, retry_at)
    WHERE t.outcome = 'done' AND t.attempt >= 1 AND t.retry_at IS NULL;
    IF v_done_ids IS NOT NULL THEN
        SELECT m.id INTO v_missing
        FROM pg_catalog.unnest(v_done_ids) AS m (id)
        WHERE NOT EXISTS (
            SELECT 1 FROM crm.crm_push_queue AS q
            WHERE q.client_id = p_client_id AND q.id = m.id
        )
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'finish_push: push % of client % does not exist', v_missing,
                p_client_id
                USING ERRCODE = 'no_data_found',
                      HINT = 'Pass the client_id and id returned by crm.claim_pushes.';
        END IF;
        WITH finished AS (
            UPDATE crm.crm_push_queue AS q
            SET status = 'done',
                lease_owner = NULL,
                lease_expires_at = NULL,
                finished_at = v_now,
                updated_at = v_now
            FROM ROWS FROM (pg_catalog.unnest(v_done_ids), pg_catalog.unnest(v_done_attempts))
                AS d (id, attempt)
            WHERE q.client_id = p_client_id
              AND q.id = d.id
              AND q.status = 'in_flight'
              AND q.lease_owner = p_lease_owner
              AND q.attempts = d.attempt
            RETURNING q.id
        )
        SELECT pg_catalog.array_agg(f.id) INTO v_finished FROM finished AS f;
        IF v_finished IS NOT NULL THEN
            -- The config's health, once for the set (as crm.finish_push keeps it).
            UPDATE crm.client_crm_configs AS cfg
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
        RETURN QUERY
        SELECT d.id, CASE WHEN d.id = ANY(v_finished) THEN 'done' ELSE 'lease_lost' END
        FROM pg_catalog.unnest(v_done_ids) AS d (id);
    END IF;

    -- Every other outcome (and a done with odd arguments, for its refusal) as
    -- crm.finish_push finishes it, in push-id order.
    FOR v_item IN
        SELECT t.*
        FROM ROWS FROM (
            pg_catalog.unnest(p_push_ids),
            pg_catalog.unnest(p_attempts),
            pg_catalog.unnest(p_outcomes),
            pg_catalog.unnest(p_errors),
            pg_catalog.unnest(p_retry_ats)
        ) AS t (id, attempt, outcome, error, retry_at)
        WHERE t.id <> ALL(coalesce(v_done_ids, '{}'))
        ORDER BY t.id
    LOOP
        push_id := v_item.id;
        status := crm.finish_push(
            p_client_id, v_item.id, p_lease_owner, v_item.attempt, v_item.outcome,
            v_item.error, v_item.retry_at
        );
        RETURN NEXT;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION crm.finish_pushes(
    uuid, text, bigint[], integer[], text[], text[], timestamptz[]
) IS
'Finish many claims of one client in one call: for each of p_push_ids (in the same order:
p_attempts, p_outcomes, and optionally p_errors and p_retry_ats) exactly what
crm.finish_push(p_client_id, id, p_lease_owner, attempt, outcome, error, retry_at) does, with
the same checks, in push-id order, all in the caller''s transaction (one bad argument refuses
the whole batch and finishes none). Returns each push''s new status (done, pending, failed,
dead, held, superseded or lease_lost), one row per push.';

REVOKE ALL ON FUNCTION crm.finish_pushes(
    uuid, text, bigint[], integer[], text[], text[], timestamptz[]
) FROM public;
