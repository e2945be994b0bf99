-- SELECT * FROM crm.authenticate_api_token(sha256('<token>'::bytea));

CREATE OR REPLACE FUNCTION crm.authenticate_api_token(p_token_hash bytea)
RETURNS TABLE (token_id uuid, client_id uuid)
LANGUAGE plpgsql
-- The owner's rights: a request is authenticated before it is known which client it acts
-- for, and the API's role reads no token digests. EXECUTE: crm_api (sql/access.sql).
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    IF p_token_hash IS NULL OR pg_catalog.octet_length(p_token_hash) <> 32 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format(
                'crm.authenticate_api_token: p_token_hash must be a SHA-256 digest (32 bytes), '
                'got %s',
                coalesce(pg_catalog.octet_length(p_token_hash) || ' bytes', 'NULL')
            ),
            HINT = 'Pass sha256() of the bearer token; a request without one is refused before '
                'it gets here.';
    END IF;
    RETURN QUERY
    UPDATE crm_private.api_tokens AS t
    SET last_used_at = pg_catalog.now()
    WHERE t.token_hash = p_token_hash
      AND t.revoked_at IS NULL
      AND (t.last_used_at IS NULL OR t.last_used_at < pg_catalog.now() - interval '1 minute')
    RETURNING t.id, t.client_id;
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT t.id, t.client_id
        FROM crm_private.api_tokens AS t
        WHERE t.token_hash = p_token_hash AND t.revoked_at IS NULL;
    END IF;
END;
$$;

COMMENT ON FUNCTION crm.authenticate_api_token(bytea) IS
'The API token with this SHA-256 digest, if it exists and is not revoked: its id and its client
(NULL: agency-wide). No row: the token is refused. Notes when it was used, at most once a
minute. A p_token_hash that is NULL or not 32 bytes: 22023.
SECURITY DEFINER: the API authenticates a request before it knows its client, and its role
reads no token digests.';

REVOKE ALL ON FUNCTION crm.authenticate_api_token(bytea) FROM public;
