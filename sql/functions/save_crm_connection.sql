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
    -- The live config, without its secret columns (crm_api may not read them).
    v_live_id uuid;
    v_live_type text;
    v_live_active boolean;
    v_config uuid;
BEGIN
    IF p_client_id IS NULL OR p_crm_type IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format(
                'crm.save_crm_connection: %s must not be NULL',
                CASE WHEN p_client_id IS NULL THEN 'p_client_id' ELSE 'p_crm_type' END
            ),
            HINT = 'Name the client (crm.clients.id) and its CRM (hubspot, pipedrive or close).';
    END IF;
    PERFORM crm_private.connection_lock(p_client_id);

    SELECT cfg.id, cfg.crm_type, cfg.is_active
    INTO v_live_id, v_live_type, v_live_active
    FROM crm.client_crm_configs AS cfg
    WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL
    FOR UPDATE;

    IF v_live_active AND v_live_type = p_crm_type THEN
        -- The same CRM again: new credentials, the settings chosen so far kept. A value the
        -- config refuses (validate trigger: 23514) is refused naming the column and the value
        -- given, so p_external_key_fields merges into the stored keys only when it is an object.
        UPDATE crm.client_crm_configs AS cfg
        SET api_key = p_api_key,
            oauth_access_token = p_oauth_access_token,
            oauth_refresh_token = p_oauth_refresh_token,
            oauth_expires_at = p_oauth_expires_at,
            hubspot_portal_id = p_hubspot_portal_id,
            api_base_url = p_api_base_url,
            external_key_fields = CASE
                WHEN p_external_key_fields IS NULL THEN cfg.external_key_fields
                WHEN pg_catalog.jsonb_typeof(p_external_key_fields) = 'object'
                    THEN cfg.external_key_fields || p_external_key_fields
                ELSE p_external_key_fields
            END,
            pipeline_id = coalesce(cfg.pipeline_id, p_pipeline_id),
            stage_id = coalesce(cfg.stage_id, p_stage_id),
            owner_id = coalesce(cfg.owner_id, p_owner_id),
            connection_status = 'connected',
            last_error = NULL
        WHERE cfg.id = v_live_id;
        RETURN QUERY SELECT v_live_id, TRUE;
        RETURN;
    END IF;

    IF v_live_id IS NOT NULL AND NOT v_live_active THEN
        -- A disconnected config: kept as history; the new connection starts clean (its own
        -- CRM id map, no pushes of the old one).
        UPDATE crm.client_crm_configs AS cfg
        SET deleted_at = pg_catalog.now()
        WHERE cfg.id = v_live_id;
    END IF;

    -- With another CRM live and active, this INSERT is refused by the validate trigger: first
    -- for a value it refuses (an unknown crm_type, a secret that is not an envelope, ...: 23514,
    -- naming the column), else as a second live config (23505), which is told here in the
    -- caller's terms: the CRM connected, and how to disconnect it.
    BEGIN
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
        RETURNING cfg.id INTO v_config;
    EXCEPTION
        WHEN unique_violation THEN
            IF v_live_active IS NOT TRUE THEN
                RAISE;  -- not about the config read above (a write that took no lock)
            END IF;
            RAISE EXCEPTION USING
                ERRCODE = 'unique_violation',
                MESSAGE = pg_catalog.format(
                    'client %s is already connected to %s (config %s): a client has one CRM',
                    p_client_id, v_live_type, v_live_id
                ),
                DETAIL = pg_catalog.format(
                    'Connecting %s was refused; nothing was changed.', p_crm_type
                ),
                HINT = pg_catalog.format(
                    'Disconnect %1$s first (agency-crm crm disconnect --client %2$s, or DELETE '
                    '/api/v1/crm/disconnect), then connect %3$s.',
                    v_live_type, p_client_id, p_crm_type
                ),
                COLUMN = 'client_id', TABLE = 'client_crm_configs', SCHEMA = 'crm',
                CONSTRAINT = 'client_crm_configs_client_id_key';
    END;
    RETURN QUERY SELECT v_config, FALSE;
END;
$$;

COMMENT ON FUNCTION crm.save_crm_connection(
    uuid, text, text, text, text, timestamptz, text, text, jsonb, text, text, text
) IS
'Save a CRM connection whose credentials were just tested against the CRM (agency-crm crm
connect, POST /api/v1/crm/connect/...): secrets as encrypted envelopes. One CRM per client: a
live, active config of another CRM is refused (23505, naming it, with how to disconnect;
a value the config refuses, such as an unknown crm_type, is refused first: 23514). The
same CRM again replaces the credentials and keeps the pipeline, stage and owner already chosen
(the p_ ones fill those not set). A disconnected config is soft-deleted and a new one inserted,
so the new connection starts clean. The config is marked connected. Returns its id and whether
an active config was replaced. A NULL p_client_id or p_crm_type: 22023.';

REVOKE ALL ON FUNCTION crm.save_crm_connection(
    uuid, text, text, text, text, timestamptz, text, text, jsonb, text, text, text
) FROM public;
