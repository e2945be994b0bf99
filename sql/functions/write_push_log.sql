-- SELECT crm.write_push_log('<client uuid>', '[{"crm_config_id": "...", "push_id": 42,
--     "operation": "create_deal", "status": "success", "http_status": 201,
--     "duration_ms": 180, "created_at": "2026-12-01T09:00:00Z"}]');

CREATE OR REPLACE FUNCTION crm.write_push_log(p_client_id uuid, p_rows jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_written integer;
BEGIN
    IF p_rows IS NOT NULL AND pg_catalog.jsonb_typeof(p_rows) <> 'array' THEN
        RAISE EXCEPTION 'write_push_log: p_rows must be a JSON array of crm_push_log rows, got %',
            pg_catalog.jsonb_typeof(p_rows)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass [] for none, or [{"crm_config_id": ..., "operation": ..., '
                      '"status": ...}, ...].';
    END IF;
    WITH logged AS (
        INSERT INTO crm.crm_push_log (
            client_id,
            crm_config_id,
            push_id,
            operation,
            lead_id,
            meeting_id,
            deal_id,
            crm_contact_id,
            crm_deal_id,
            crm_org_id,
            request_payload,
            response_payload,
            status,
            http_status,
            error_code,
            error_message,
            duration_ms,
            created_at
        )
        SELECT
            p_client_id,
            r.crm_config_id,
            r.push_id,
            r.operation,
            r.lead_id,
            r.meeting_id,
            r.deal_id,
            r.crm_contact_id,
            r.crm_deal_id,
            r.crm_org_id,
            r.request_payload,
            r.response_payload,
            r.status,
            r.http_status,
            r.error_code,
            r.error_message,
            coalesce(r.duration_ms, 0),
            coalesce(r.created_at, pg_catalog.now())
        FROM
            pg_catalog.jsonb_to_recordset(coalesce(p_rows, '[]'))
                AS r (
                    crm_config_id uuid,
                    push_id bigint,
                    operation text,
                    lead_id uuid,
                    meeting_id uuid,
                    deal_id uuid,
                    crm_contact_id text,
                    crm_deal_id text,
                    crm_org_id text,
                    request_payload jsonb,
                    response_payload jsonb,
                    status text,
                    http_status integer,
                    error_code text,
                    error_message text,
                    duration_ms integer,
                    created_at timestamptz
                )
        RETURNING 1
    )

    SELECT count(*)::integer INTO v_written FROM logged;
    RETURN v_written;
END;
$$;

COMMENT ON FUNCTION crm.write_push_log(uuid, jsonb) IS
'Write audit rows of CRM calls of one client in one statement: p_rows is a JSON array of
crm_push_log rows (crm_config_id, push_id, operation, lead_id, meeting_id, deal_id, the CRM
ids, request_payload, response_payload, status, http_status, error_code, error_message,
duration_ms, created_at; client_id is p_client_id). Returns how many were written. The runner
calls it in the same statement as the claim, CRM id or outcome the calls led to.';

REVOKE ALL ON FUNCTION crm.write_push_log(uuid, jsonb) FROM public;
