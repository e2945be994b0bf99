-- SELECT * FROM crm.save_crm_connection('<client uuid>', 'pipedrive',
--     p_api_key => '<envelope>', p_pipeline_id => '1', p_stage_id => '1');
-- requires: connection_lock.sql

CREATE OR REPLACE FUNCTION crm.save_crm_connection(
    p_client_id uuid,
    p_crm_type text,
    p_api_key text DEFAULT NULL,
    p_oauth_access_token text DEFAULT NULL,
    p_oauth_refresh_token text DEFAULT NULL,
    p_oauth_expires_at timestamptz DEFAULT NULL,
    p_hubspot_portal_id text DEFAULT NULL,
    p_api_base_url text DEFAULT NULL,
    p_external_key_fields jsonb DEFAULT '{}',
    p_pipeline_id text DEFAULT NULL,
    p_stage_id text DEFAULT NULL,
    p_owner_id text DEFAULT NULL
)
RETURNS TABLE (config_id uuid, replaced boolean)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    -- The live config's id, CRM and state: not cfg.*, which holds the secret columns that
    -- crm_api, running this, may not read.
    v_live record;
BEGIN
    IF p_client_id IS NULL OR p_crm_type IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            MESSAGE = pg_catalog.format(
                'crm.save_crm_connection: %s is NULL, but it is required',
                CASE WHEN p_client_id IS NULL THEN 'p_client_id' ELSE 'p_crm_type' END
            ),
            HINT = 'Name the client and its CRM (hubspot, pipedrive or close).';
    END IF;
    PERFORM crm_private.connection_lock(p_client_id);

    SELECT cfg.id, cfg.crm_type, cfg.is_active INTO v_live
    FROM crm.client_crm_configs AS cfg
    WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL
    FOR UPDATE;

    IF FOUND AND v_live.is_active AND v_live.crm_type <> p_crm_type THEN
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            MESSAGE = pg_catalog.format(
                'client %s is already connected to %s (config %s): a client has one CRM',
                p_client_id, v_live.crm_type, v_live.id
            ),
            DETAIL = pg_catalog.format(
                'Connecting %s was refused; nothing was changed.', p_crm_type
            ),
            HINT = pg_catalog.format(
                'Disconnect %1$s first (agency-crm crm disconnect --client %2$s, or DELETE '
                '/api/v1/crm/disconnect), then connect %3$s.',
                v_live.crm_type, p_client_id, p_crm_type
            ),
            TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_client_id_key';
    END IF;

    IF FOUND AND v_live.is_active THEN
        -- The same CRM again: new credentials, the settings chosen so far kept.
        UPDATE crm.client_crm_configs AS cfg
        SET api_key = p_api_key,
            oauth_access_token = p_oauth_access_token,
            oauth_refresh_token = p_oauth_refresh_token,
            oauth_expires_at = p_oauth_expires_at,
            hubspot_portal_id = p_hubspot_portal_id,
            api_base_url = p_api_base_url,
            external_key_fields = cfg.external_key_fields || coalesce(p_external_key_fields, '{}'),
            pipeline_id = coalesce(cfg.pipeline_id, p_pipeline_id),
            stage_id = coalesce(cfg.stage_id, p_stage_id),
            owner_id = coalesce(cfg.owner_id, p_owner_id),
            connection_status = 'connected',
            last_error = NULL
        WHERE cfg.id = v_live.id;
        RETURN QUERY SELECT v_live.id, TRUE;
        RETURN;
    END IF;

    IF FOUND THEN
        -- A disconnected config: kept as history; the new connection starts clean (its own
        -- CRM id map, no pushes of the old one).
        UPDATE crm.client_crm_configs AS cfg
        SET deleted_at = pg_catalog.now()
        WHERE cfg.id = v_live.id;
    END IF;

    RETURN QUERY
    INSERT INTO crm.client_crm_configs AS cfg (
        client_id, crm_type, api_key, oauth_access_token, oauth_refresh_token,
        oauth_expires_at, hubspot_portal_id, api_base_url, external_key_fields, pipeline_id,
        stage_id, owner_id, is_active, connection_status
    )
    VALUES (
        p_client_id, p_crm_type, p_api_key, p_oauth_access_token, p_oauth_refresh_token,
        p_oauth_expires_at, p_hubspot_portal_id, p_api_base_url,
        coalesce(p_external_key_fields, '{}'), p_pipeline_id, p_stage_id, p_owner_id, TRUE,
        'connected'
    )
    RETURNING cfg.id, FALSE;
END;
$$;

COMMENT ON FUNCTION crm.save_crm_connection(
    uuid, text, text, text, text, timestamptz, text, text, jsonb, text, text, text
) IS
'Save a CRM connection whose credentials were just tested against the CRM (agency-crm crm
connect, POST /api/v1/crm/connect/...): secrets as encrypted envelopes. One CRM per client: a
live, active config of another CRM is refused (23505, naming it, with how to disconnect). The
same CRM again replaces the credentials and keeps the pipeline, stage and owner already chosen
(the p_ ones fill those not set). A disconnected config is soft-deleted and a new one inserted,
so the new connection starts clean. The config is marked connected. Returns its id and whether
an active config was replaced.';

REVOKE ALL ON FUNCTION crm.save_crm_connection(
    uuid, text, text, text, text, timestamptz, text, text, jsonb, text, text, text
) FROM public;
