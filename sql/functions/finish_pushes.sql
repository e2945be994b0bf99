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
    -- Each push exactly as crm.finish_push finishes it (the same checks, lease test, supersede
    -- and attempt rules), in push-id order so that concurrent finishers lock rows in one order;
    -- one call of the whole batch, so one round trip and one transaction for the runner.
    FOR v_item IN
        SELECT t.*
        FROM ROWS FROM (
            pg_catalog.unnest(p_push_ids),
            pg_catalog.unnest(p_attempts),
            pg_catalog.unnest(p_outcomes),
            pg_catalog.unnest(p_errors),
            pg_catalog.unnest(p_retry_ats)
        ) AS t (id, attempt, outcome, error, retry_at)
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
