-- Named queries of the `agency-crm secrets` commands (agency_crm.secret_store), loaded by name
-- (agency_crm.queries). A secret is always a bind parameter, never part of a statement's text,
-- and the database never sees one in plaintext: these read and write envelopes
-- (acrm:v1:<key id>:<nonce>:<ciphertext>, python/agency_crm/crypto.py), whose third field is
-- the key id.

-- name: stored_secrets
-- Every config's secrets, soft-deleted configs too (secrets check), optionally only some
-- clients'.
SELECT
    cfg.client_id,
    cfg.id,
    cfg.deleted_at IS NOT NULL AS deleted,
    cfg.api_key,
    cfg.oauth_access_token,
    cfg.oauth_refresh_token
FROM crm.client_crm_configs AS cfg
WHERE
    num_nonnulls(cfg.api_key, cfg.oauth_access_token, cfg.oauth_refresh_token) > 0
    AND (%(client_ids)s::uuid[] IS NULL OR cfg.client_id = any(%(client_ids)s::uuid[]))
ORDER BY cfg.client_id ASC, cfg.id ASC;

-- name: secrets_by_key
-- How many secrets are stored under each key id, and in how many configs (soft-deleted ones
-- too).
WITH per_config AS (
    SELECT
        split_part(s.stored, ':', 3) AS key_id,
        count(*) AS secrets
    FROM crm.client_crm_configs AS cfg
    CROSS JOIN
        LATERAL (
            VALUES (cfg.api_key), (cfg.oauth_access_token), (cfg.oauth_refresh_token)
        ) AS s (stored)
    WHERE s.stored IS NOT NULL
    GROUP BY cfg.client_id, cfg.id, split_part(s.stored, ':', 3)
)

SELECT
    pc.key_id,
    sum(pc.secrets)::bigint AS secrets,
    count(*) AS configs
FROM per_config AS pc
GROUP BY pc.key_id
ORDER BY pc.key_id ASC;

-- name: configs_to_rotate
-- Configs holding a secret, and those holding one that is not under the key %(key_id)s.
SELECT
    count(*) AS with_secrets,
    count(*) FILTER (
        WHERE split_part(cfg.api_key, ':', 3) <> %(key_id)s
        OR split_part(cfg.oauth_access_token, ':', 3) <> %(key_id)s
        OR split_part(cfg.oauth_refresh_token, ':', 3) <> %(key_id)s
    ) AS to_rotate
FROM crm.client_crm_configs AS cfg
WHERE num_nonnulls(cfg.api_key, cfg.oauth_access_token, cfg.oauth_refresh_token) > 0;

-- name: rekey_on
-- For the rest of this transaction, writes of secrets are the same credentials re-encrypted:
-- the _400_credentials trigger leaves a config in error as it is.
SELECT set_config('crm.rekey', 'on', TRUE);

-- name: lock_rotation_batch
-- The next configs, in key order after (%(after_client_id)s, %(after_id)s), that hold a
-- secret not under the key %(key_id)s, locked until the batch commits. A config another
-- transaction is writing is waited for and read as that transaction left it (and skipped when
-- it now holds only secrets under the key).
SELECT
    cfg.client_id,
    cfg.id,
    cfg.deleted_at IS NOT NULL AS deleted,
    cfg.api_key,
    cfg.oauth_access_token,
    cfg.oauth_refresh_token
FROM crm.client_crm_configs AS cfg
WHERE
    (
        %(after_client_id)s::uuid IS NULL
        OR (cfg.client_id, cfg.id) > (%(after_client_id)s::uuid, %(after_id)s::uuid)
    )
    AND (
        split_part(cfg.api_key, ':', 3) <> %(key_id)s
        OR split_part(cfg.oauth_access_token, ':', 3) <> %(key_id)s
        OR split_part(cfg.oauth_refresh_token, ':', 3) <> %(key_id)s
    )
ORDER BY cfg.client_id ASC, cfg.id ASC
LIMIT %(batch_size)s
FOR UPDATE OF cfg;

-- name: store_rotated
-- The re-encrypted secrets of locked configs: one array element per config, NULL for a
-- column that stays as it is. Only the secret columns change.
UPDATE crm.client_crm_configs AS cfg
SET
    api_key = coalesce(r.api_key, cfg.api_key),
    oauth_access_token = coalesce(r.oauth_access_token, cfg.oauth_access_token),
    oauth_refresh_token = coalesce(r.oauth_refresh_token, cfg.oauth_refresh_token)
FROM
    unnest(
        %(client_ids)s::uuid[],
        %(config_ids)s::uuid[],
        %(api_keys)s::text[],
        %(oauth_access_tokens)s::text[],
        %(oauth_refresh_tokens)s::text[]
    ) AS r (client_id, id, api_key, oauth_access_token, oauth_refresh_token)
WHERE cfg.client_id = r.client_id AND cfg.id = r.id;

-- name: live_config
-- A client's live CRM config: the one `secrets set` writes.
SELECT
    cfg.id,
    cfg.crm_type,
    cfg.connection_status
FROM crm.client_crm_configs AS cfg
WHERE cfg.client_id = %(client_id)s AND cfg.deleted_at IS NULL;

-- name: store_api_key
-- A new api_key (an envelope) for a client's live config; new credentials set a config in
-- error back to pending (the _400_credentials trigger). Reads no secret back, so app code's
-- role may run it.
UPDATE crm.client_crm_configs AS cfg
SET api_key = %(value)s
WHERE cfg.client_id = %(client_id)s AND cfg.deleted_at IS NULL
RETURNING cfg.id, cfg.crm_type, cfg.connection_status;

-- name: store_oauth_access_token
-- A new oauth_access_token (an envelope) for a client's live config, as store_api_key.
UPDATE crm.client_crm_configs AS cfg
SET oauth_access_token = %(value)s
WHERE cfg.client_id = %(client_id)s AND cfg.deleted_at IS NULL
RETURNING cfg.id, cfg.crm_type, cfg.connection_status;

-- name: store_oauth_refresh_token
-- A new oauth_refresh_token (an envelope) for a client's live config, as store_api_key.
UPDATE crm.client_crm_configs AS cfg
SET oauth_refresh_token = %(value)s
WHERE cfg.client_id = %(client_id)s AND cfg.deleted_at IS NULL
RETURNING cfg.id, cfg.crm_type, cfg.connection_status;
