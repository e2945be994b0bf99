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
minute.
SECURITY DEFINER: the API authenticates a request before it knows its client, and its role
reads no token digests.';

REVOKE ALL ON FUNCTION crm.authenticate_api_token(bytea) FROM public;
