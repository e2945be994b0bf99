-- SELECT crm.disconnect_crm('<client uuid>');
-- requires: connection_lock.sql

CREATE OR REPLACE FUNCTION crm.disconnect_crm(p_client_id uuid, p_reason text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    -- The live config's id, CRM and state: not cfg.*, which holds the secret columns that
    -- crm_api, running this, may not read.
    v_live record;
    v_skipped integer;
BEGIN
    PERFORM crm_private.connection_lock(p_client_id);
    SELECT cfg.id, cfg.crm_type, cfg.is_active INTO v_live
    FROM crm.client_crm_configs AS cfg
    WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'no_data_found',
            MESSAGE = pg_catalog.format('client %s has no CRM connected', p_client_id),
            HINT = 'Nothing to disconnect: agency-crm crm config show --client '
                || coalesce(p_client_id::text, '<client>') || ' tells what is configured.';
    END IF;

    -- The pushes first: the config leaving error would release held pushes otherwise.
    UPDATE crm.crm_push_queue AS q
    SET status = 'skipped',
        finished_at = pg_catalog.clock_timestamp(),
        last_error = pg_catalog.left(coalesce(
            p_reason,
            pg_catalog.format('skipped: the client disconnected its CRM (%s)', v_live.crm_type)
        ), 2000)
    WHERE q.client_id = p_client_id AND q.status IN ('pending', 'held');
    GET DIAGNOSTICS v_skipped = ROW_COUNT;

    UPDATE crm.client_crm_configs AS cfg
    SET is_active = FALSE,
        connection_status = 'disconnected',
        api_key = NULL,
        oauth_access_token = NULL,
        oauth_refresh_token = NULL,
        oauth_expires_at = NULL,
        last_error = NULL
    WHERE cfg.id = v_live.id;
    RETURN v_skipped;
END;
$$;

COMMENT ON FUNCTION crm.disconnect_crm(uuid, text) IS
'Disconnect the client''s CRM, softly: its config becomes inactive and disconnected and forgets
its credentials; its pending and held pushes become skipped, with p_reason (or "the client
disconnected its CRM") as their last_error. A push already in flight finishes. Disconnecting
again skips nothing more. Connecting later starts a new config (crm.save_crm_connection).
Returns how many pushes were skipped; no live config: 02000 (no_data_found).';

REVOKE ALL ON FUNCTION crm.disconnect_crm(uuid, text) FROM public;
