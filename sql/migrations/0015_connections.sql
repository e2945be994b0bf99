-- 0015: connecting a client's CRM through the HTTP API and the CLI (issue 13).
--
-- * crm_push_queue gains the terminal status skipped: a push that will never be sent because
--   the client disconnected its CRM (or because it was backfilled elsewhere); finished_at is set.
-- * crm_private.api_tokens: the bearer tokens of the HTTP API, stored as SHA-256 digests (a token
--   is 256 random bits, so a fast digest is enough), each scoped to one client or, with
--   client_id NULL, agency-wide.
-- * crm_private.oauth_states: the single-use state of a HubSpot OAuth flow, stored as a SHA-256
--   digest, bound to the client, expiring after ten minutes.

ALTER TABLE crm.crm_push_queue
DROP CONSTRAINT crm_push_queue_status_check,
DROP CONSTRAINT crm_push_queue_finished_at_check;

ALTER TABLE crm.crm_push_queue
ADD CONSTRAINT crm_push_queue_status_check CHECK (
    status IN ('pending', 'in_flight', 'done', 'failed', 'dead', 'held', 'skipped')
),
ADD CONSTRAINT crm_push_queue_finished_at_check CHECK (
    (status IN ('done', 'failed', 'dead', 'skipped')) = (finished_at IS NOT NULL)
);

COMMENT ON CONSTRAINT crm_push_queue_status_check ON crm.crm_push_queue IS
'status must be one of pending, in_flight, done, failed, dead, held, skipped.';
COMMENT ON CONSTRAINT crm_push_queue_finished_at_check ON crm.crm_push_queue IS
'finished_at is set exactly when status is done, failed, dead or skipped.';
COMMENT ON COLUMN crm.crm_push_queue.status IS
'pending (waiting for run_after), in_flight (claimed under a lease), done, failed (not
retryable), dead (retries exhausted), held (CRM credentials need fixing) or skipped (never
sent: the client disconnected its CRM; last_error says why).';
COMMENT ON COLUMN crm.crm_push_queue.finished_at IS
'When the push reached done, failed, dead or skipped.';

CREATE TABLE crm_private.api_tokens (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid,
    name text NOT NULL,
    token_hash bytea NOT NULL,
    token_prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    CONSTRAINT api_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT api_tokens_client_id_fkey FOREIGN KEY (client_id) REFERENCES crm.clients (id),
    CONSTRAINT api_tokens_name_check CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT api_tokens_token_hash_check CHECK (octet_length(token_hash) = 32),
    CONSTRAINT api_tokens_token_prefix_check CHECK (token_prefix ~ '^acrm_[A-Za-z0-9_-]{4,8}$')
);

CREATE INDEX api_tokens_client_id_idx ON crm_private.api_tokens (client_id);

COMMENT ON TABLE crm_private.api_tokens IS
'Bearer tokens of the HTTP API (agency-crm api-token create|list|revoke): only their SHA-256
digests are stored; a token is shown once, when it is created.';
COMMENT ON COLUMN crm_private.api_tokens.id IS 'Token id (what api-token revoke takes).';
COMMENT ON COLUMN crm_private.api_tokens.client_id IS
'The one client the token may act for; NULL: agency-wide (each request names its client).';
COMMENT ON COLUMN crm_private.api_tokens.name IS 'What the token is for, as its creator said.';
COMMENT ON COLUMN crm_private.api_tokens.token_hash IS
'Secret: SHA-256 digest of the token. Readable by crm_runner only.';
COMMENT ON COLUMN crm_private.api_tokens.token_prefix IS
'The first characters of the token (acrm_xxxx), to recognise it in a listing.';
COMMENT ON COLUMN crm_private.api_tokens.created_at IS 'When the token was created.';
COMMENT ON COLUMN crm_private.api_tokens.last_used_at IS
'When the token last authenticated a request (updated at most once a minute).';
COMMENT ON COLUMN crm_private.api_tokens.revoked_at IS
'When the token was revoked: it no longer works.';
COMMENT ON CONSTRAINT api_tokens_pkey ON crm_private.api_tokens IS 'Token id.';
COMMENT ON CONSTRAINT api_tokens_token_hash_key ON crm_private.api_tokens IS
'A token digest is stored once.';
COMMENT ON CONSTRAINT api_tokens_client_id_fkey ON crm_private.api_tokens IS
'client_id must name an existing client.';
COMMENT ON CONSTRAINT api_tokens_name_check ON crm_private.api_tokens IS
'name must be 1 to 200 characters.';
COMMENT ON CONSTRAINT api_tokens_token_hash_check ON crm_private.api_tokens IS
'token_hash must be a SHA-256 digest (32 bytes).';
COMMENT ON CONSTRAINT api_tokens_token_prefix_check ON crm_private.api_tokens IS
'token_prefix must be acrm_ and 4 to 8 token characters.';
COMMENT ON INDEX crm_private.api_tokens_client_id_idx IS 'Listing a client''s tokens.';

CREATE TABLE crm_private.oauth_states (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    crm_type text NOT NULL DEFAULT 'hubspot',
    state_hash bytea NOT NULL,
    redirect_uri text NOT NULL,
    api_base_url text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT now() + interval '10 minutes',
    used_at timestamptz,
    CONSTRAINT oauth_states_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT oauth_states_state_hash_key UNIQUE (state_hash),
    CONSTRAINT oauth_states_client_id_fkey FOREIGN KEY (client_id) REFERENCES crm.clients (id),
    CONSTRAINT oauth_states_crm_type_check CHECK (crm_type = 'hubspot'),
    CONSTRAINT oauth_states_state_hash_check CHECK (octet_length(state_hash) = 32),
    CONSTRAINT oauth_states_redirect_uri_check CHECK (
        redirect_uri ~ '^https?://[^[:space:]/]+(/[^[:space:]]*)?$'
    ),
    CONSTRAINT oauth_states_api_base_url_check CHECK (
        api_base_url ~ '^https?://[^[:space:]/]+(/[^[:space:]]*)?$'
    ),
    CONSTRAINT oauth_states_expires_at_check CHECK (expires_at > created_at)
);

COMMENT ON TABLE crm_private.oauth_states IS
'HubSpot OAuth flows in progress: the state parameter (as a digest) bound to the client that
started the flow, single-use, expiring after ten minutes.';
COMMENT ON COLUMN crm_private.oauth_states.id IS 'Flow id.';
COMMENT ON COLUMN crm_private.oauth_states.client_id IS 'The client connecting its HubSpot.';
COMMENT ON COLUMN crm_private.oauth_states.crm_type IS 'The CRM of the flow (hubspot).';
COMMENT ON COLUMN crm_private.oauth_states.state_hash IS
'Secret: SHA-256 digest of the state parameter. Readable by crm_runner only.';
COMMENT ON COLUMN crm_private.oauth_states.redirect_uri IS
'The redirect URI the authorisation URL named (the token exchange must name it again).';
COMMENT ON COLUMN crm_private.oauth_states.api_base_url IS
'The HubSpot API root to exchange the code at and push to; NULL: HubSpot''s own.';
COMMENT ON COLUMN crm_private.oauth_states.created_at IS 'When the flow started.';
COMMENT ON COLUMN crm_private.oauth_states.expires_at IS 'After this the state is refused.';
COMMENT ON COLUMN crm_private.oauth_states.used_at IS
'When the callback consumed the state: a second use is refused.';
COMMENT ON CONSTRAINT oauth_states_pkey ON crm_private.oauth_states IS 'Flow id, per client.';
COMMENT ON CONSTRAINT oauth_states_state_hash_key ON crm_private.oauth_states IS
'A state is stored once.';
COMMENT ON CONSTRAINT oauth_states_client_id_fkey ON crm_private.oauth_states IS
'client_id must name an existing client.';
COMMENT ON CONSTRAINT oauth_states_crm_type_check ON crm_private.oauth_states IS
'crm_type must be hubspot (the one CRM connected by OAuth).';
COMMENT ON CONSTRAINT oauth_states_state_hash_check ON crm_private.oauth_states IS
'state_hash must be a SHA-256 digest (32 bytes).';
COMMENT ON CONSTRAINT oauth_states_redirect_uri_check ON crm_private.oauth_states IS
'redirect_uri must be an http(s) URL.';
COMMENT ON CONSTRAINT oauth_states_api_base_url_check ON crm_private.oauth_states IS
'api_base_url must be an http(s) URL.';
COMMENT ON CONSTRAINT oauth_states_expires_at_check ON crm_private.oauth_states IS
'expires_at must be after created_at.';
