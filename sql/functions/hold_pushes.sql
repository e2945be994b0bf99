-- SELECT crm.hold_pushes('<client uuid>', '401 from Pipedrive: invalid API key');

CREATE OR REPLACE FUNCTION crm.hold_pushes(p_client_id uuid, p_error text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_held integer;
BEGIN
    UPDATE crm.client_crm_configs AS cfg
    SET connection_status = 'error',
        last_error = pg_catalog.left(p_error, 2000)
    WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL;

    UPDATE crm.crm_push_queue AS q
    SET status = 'held',
        last_error = pg_catalog.left(p_error, 2000)
    WHERE q.client_id = p_client_id AND q.status = 'pending';
    GET DIAGNOSTICS v_held = ROW_COUNT;
    RETURN v_held;
END;
$$;

COMMENT ON FUNCTION crm.hold_pushes(uuid, text) IS
'The client''s CRM refused our credentials (401, failed token refresh): mark its live config
connection_status error with p_error, and hold its pending pushes (status held) without
spending their attempts. Fixing the config''s credentials, or setting connection_status back,
releases them (trigger on crm.client_crm_configs). Returns how many pushes were held.';

REVOKE ALL ON FUNCTION crm.hold_pushes(uuid, text) FROM public;
