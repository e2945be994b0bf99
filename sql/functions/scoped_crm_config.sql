-- SET LOCAL crm.client_id = '<client uuid>'; SELECT * FROM crm.scoped_crm_config();

CREATE OR REPLACE FUNCTION crm.scoped_crm_config()
RETURNS TABLE (
    id uuid,
    client_id uuid,
    client_name text,
    crm_type text,
    api_key text,
    oauth_access_token text,
    oauth_refresh_token text,
    oauth_expires_at timestamptz,
    pipeline_id text,
    stage_id text,
    owner_id text,
    api_base_url text,
    stage_map jsonb,
    external_key_fields jsonb
)
LANGUAGE sql
STABLE
-- The owner's rights: the API calls the client's CRM with its credentials, which only
-- crm_runner may read otherwise; this returns those of the one client the transaction acts
-- for, and nothing when none is set. EXECUTE: crm_api (sql/access.sql).
SECURITY DEFINER
SET search_path = ''
BEGIN ATOMIC
    SELECT
        cfg.id,
        cfg.client_id,
        c.name,
        cfg.crm_type,
        cfg.api_key,
        cfg.oauth_access_token,
        cfg.oauth_refresh_token,
        cfg.oauth_expires_at,
        cfg.pipeline_id,
        cfg.stage_id,
        cfg.owner_id,
        cfg.api_base_url,
        cfg.stage_map,
        cfg.external_key_fields
    FROM crm.client_crm_configs AS cfg
    INNER JOIN crm.clients AS c ON c.id = cfg.client_id
    WHERE
        cfg.deleted_at IS NULL
        AND cfg.client_id
        = nullif(pg_catalog.current_setting('crm.client_id', TRUE), '')::uuid;
END;

COMMENT ON FUNCTION crm.scoped_crm_config() IS
'The live CRM config, secrets included (encrypted envelopes), of the one client named by the
setting crm.client_id, with the client''s name; no row when the setting is unset or the client
has no live config. The HTTP API reads it to call the client''s CRM.
SECURITY DEFINER: otherwise only crm_runner reads the credentials; this gives those of the
transaction''s one client.';

REVOKE ALL ON FUNCTION crm.scoped_crm_config() FROM public;
