-- SELECT crm.begin_oauth_state('<client uuid>', sha256('<state>'::bytea),
--     'https://agency.example/api/v1/crm/callback/hubspot');

CREATE OR REPLACE FUNCTION crm.begin_oauth_state(
    p_client_id uuid,
    p_state_hash bytea,
    p_redirect_uri text,
    p_api_base_url text DEFAULT NULL
)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_expires timestamptz;
BEGIN
    INSERT INTO crm_private.oauth_states AS s (client_id, state_hash, redirect_uri, api_base_url)
    VALUES (p_client_id, p_state_hash, p_redirect_uri, p_api_base_url)
    RETURNING s.expires_at INTO v_expires;
    RETURN v_expires;
END;
$$;

COMMENT ON FUNCTION crm.begin_oauth_state(uuid, bytea, text, text) IS
'Start a HubSpot OAuth flow for a client: store the digest of its random state parameter (the
state itself never reaches the database), the redirect URI and the API root, single-use,
expiring in ten minutes. Returns when it expires. The callback consumes it with
crm.consume_oauth_state.';

REVOKE ALL ON FUNCTION crm.begin_oauth_state(uuid, bytea, text, text) FROM public;
