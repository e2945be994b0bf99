-- SELECT * FROM crm.consume_oauth_state(sha256('<state>'::bytea));

CREATE OR REPLACE FUNCTION crm.consume_oauth_state(
    p_state_hash bytea,
    p_client_id uuid DEFAULT NULL
)
RETURNS TABLE (outcome text, client_id uuid, redirect_uri text, api_base_url text)
LANGUAGE plpgsql
-- The owner's rights: the OAuth callback comes from the consenting browser, which cannot say
-- which client it acts for until the state is read. EXECUTE: crm_api (sql/access.sql).
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_id uuid;
    v_client uuid;
    v_redirect text;
    v_base text;
    v_expires timestamptz;
    v_used timestamptz;
    -- The client the transaction acts for (row-level security's), which an argument cannot
    -- widen: naming another client gets nothing of either.
    v_acting uuid := nullif(pg_catalog.current_setting('crm.client_id', TRUE), '')::uuid;
    v_caller uuid := coalesce(v_acting, p_client_id);
BEGIN
    IF p_state_hash IS NULL OR pg_catalog.octet_length(p_state_hash) <> 32 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format(
                'crm.consume_oauth_state: p_state_hash must be a SHA-256 digest (32 bytes), '
                'got %s',
                coalesce(pg_catalog.octet_length(p_state_hash) || ' bytes', 'NULL')
            ),
            HINT = 'Pass sha256() of the callback''s state parameter; a callback without one '
                'is refused before it gets here.';
    END IF;
    IF p_client_id <> v_acting THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text, NULL::text;
        RETURN;
    END IF;
    SELECT s.id, s.client_id, s.redirect_uri, s.api_base_url, s.expires_at, s.used_at
    INTO v_id, v_client, v_redirect, v_base, v_expires, v_used
    FROM crm_private.oauth_states AS s
    WHERE s.state_hash = p_state_hash
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text, NULL::text;
    ELSIF v_caller IS NOT NULL AND v_caller <> v_client THEN
        -- Another client's flow: told apart from an unknown state by nothing the caller sees,
        -- and left unused for its own client.
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text, NULL::text;
    ELSIF v_used IS NOT NULL THEN
        RETURN QUERY SELECT 'reused'::text, NULL::uuid, NULL::text, NULL::text;
    ELSE
        UPDATE crm_private.oauth_states AS s
        SET used_at = pg_catalog.clock_timestamp()
        WHERE s.client_id = v_client AND s.id = v_id;
        IF v_expires <= pg_catalog.clock_timestamp() THEN
            RETURN QUERY SELECT 'expired'::text, NULL::uuid, NULL::text, NULL::text;
        ELSE
            RETURN QUERY SELECT
                'ok'::text, v_client, v_redirect, v_base;
        END IF;
    END IF;
END;
$$;

COMMENT ON FUNCTION crm.consume_oauth_state(bytea, uuid) IS
'The OAuth callback''s check of its state parameter (by digest): ok (with the client, redirect
URI and API root of the flow, and the state is used up), unknown, reused or expired (used up
too). A caller acting for a client (the setting crm.client_id, else p_client_id) gets unknown
for another client''s state, which stays usable by its own client; a p_client_id other than
crm.client_id gets unknown for every state. A p_state_hash that is NULL or not 32 bytes: 22023.
SECURITY DEFINER: the callback comes from the consenting browser, which cannot say which client
it acts for until the state is read.';

REVOKE ALL ON FUNCTION crm.consume_oauth_state(bytea, uuid) FROM public;
