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
    -- What oauth_states_redirect_uri_check and oauth_states_api_base_url_check accept.
    c_url CONSTANT text := '^https?://[^[:space:]/]+(/[^[:space:]]*)?$';
    v_expires timestamptz;
BEGIN
    IF p_client_id IS NULL THEN
        RAISE EXCEPTION 'crm.begin_oauth_state: p_client_id must not be NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of the client connecting its HubSpot (crm.clients.id).';
    END IF;
    -- The digest is a secret's: its length is told, never its bytes.
    IF p_state_hash IS NULL OR pg_catalog.octet_length(p_state_hash) <> 32 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format(
                'crm.begin_oauth_state: p_state_hash must be a SHA-256 digest (32 bytes), '
                'got %s',
                coalesce(pg_catalog.octet_length(p_state_hash) || ' bytes', 'NULL')
            ),
            HINT = 'Pass sha256() of the random state parameter, never the state itself.';
    END IF;
    IF p_redirect_uri IS NULL OR p_redirect_uri !~ c_url THEN
        RAISE EXCEPTION 'crm.begin_oauth_state: p_redirect_uri % is not an http(s) URL',
            crm_private.refusal_value(p_redirect_uri)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the callback URL the authorisation URL names, e.g. '
                      'https://agency.example/api/v1/crm/callback/hubspot.';
    END IF;
    IF p_api_base_url !~ c_url THEN
        RAISE EXCEPTION 'crm.begin_oauth_state: p_api_base_url % is not an http(s) URL',
            crm_private.refusal_value(p_api_base_url)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the root of the HubSpot API, e.g. https://api.hubapi.com, or '
                      'NULL for HubSpot''s own.';
    END IF;
    -- Under row-level security another client is not there: it is refused as one that does
    -- not exist.
    IF NOT EXISTS (
        SELECT 1 FROM crm.clients AS c WHERE c.id = p_client_id AND c.deleted_at IS NULL
    ) THEN
        RAISE EXCEPTION 'crm.begin_oauth_state: p_client_id % is not a client', p_client_id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Pass the id of a live row of crm.clients.',
                  CONSTRAINT = 'oauth_states_client_id_fkey';
    END IF;

    BEGIN
        INSERT INTO crm_private.oauth_states AS s (
            client_id, state_hash, redirect_uri, api_base_url
        )
        VALUES (p_client_id, p_state_hash, p_redirect_uri, p_api_base_url)
        RETURNING s.expires_at INTO v_expires;
    EXCEPTION
        WHEN unique_violation THEN
            RAISE EXCEPTION 'crm.begin_oauth_state: this p_state_hash is stored already'
                USING ERRCODE = 'unique_violation',
                      HINT = 'A state is single-use: generate a new random one for every flow.',
                      CONSTRAINT = 'oauth_states_state_hash_key';
    END;
    RETURN v_expires;
END;
$$;

COMMENT ON FUNCTION crm.begin_oauth_state(uuid, bytea, text, text) IS
'Start a HubSpot OAuth flow for a client: store the digest of its random state parameter (the
state itself never reaches the database), the redirect URI and the API root, single-use,
expiring in ten minutes. Returns when it expires. The callback consumes it with
crm.consume_oauth_state. Refused: a NULL p_client_id, a p_state_hash that is not 32 bytes, a
p_redirect_uri or p_api_base_url that is not an http(s) URL (22023); a client that does not
exist, or is not the one of crm.client_id under row-level security (23503); a state stored
already (23505).';

REVOKE ALL ON FUNCTION crm.begin_oauth_state(uuid, bytea, text, text) FROM public;
