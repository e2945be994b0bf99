-- 0014: the CRM secrets are stored encrypted (issue 12). api_key, oauth_access_token and
-- oauth_refresh_token hold AES-256-GCM envelopes written by agency-crm
-- (python/agency_crm/crypto.py): acrm:v1:<key id>:<nonce>:<ciphertext>, bound to the client and
-- the column. A CHECK per column recognises the envelope, so a plaintext secret written by SQL
-- is refused (the BEFORE trigger _080_validate refuses it first, with a hint, never quoting it).
-- The database never sees a plaintext secret or a key: encryption and decryption happen in
-- Python, where the secret is used.
--
-- Rows written before this migration hold plaintext. `agency-crm db upgrade` encrypts them under
-- the first key of AGENCY_CRM_SECRET_KEYS in the same transaction, just before this file runs,
-- and refuses, changing nothing, when such rows exist and no key is configured.

ALTER TABLE crm.client_crm_configs
ADD CONSTRAINT client_crm_configs_api_key_check CHECK (
    api_key ~ '^acrm:v1:[A-Za-z0-9_-]{1,32}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22,}$'
),
ADD CONSTRAINT client_crm_configs_oauth_access_token_check CHECK (
    oauth_access_token ~ '^acrm:v1:[A-Za-z0-9_-]{1,32}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22,}$'
),
ADD CONSTRAINT client_crm_configs_oauth_refresh_token_check CHECK (
    oauth_refresh_token ~ '^acrm:v1:[A-Za-z0-9_-]{1,32}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22,}$'
);

COMMENT ON CONSTRAINT client_crm_configs_api_key_check ON crm.client_crm_configs IS
'api_key must be an encrypted envelope (acrm:v1:<key id>:<nonce>:<ciphertext>), never plaintext.';
COMMENT ON CONSTRAINT client_crm_configs_oauth_access_token_check ON crm.client_crm_configs IS
'oauth_access_token must be an encrypted envelope (acrm:v1:<key id>:<nonce>:<ciphertext>), never
plaintext.';
COMMENT ON CONSTRAINT client_crm_configs_oauth_refresh_token_check ON crm.client_crm_configs IS
'oauth_refresh_token must be an encrypted envelope (acrm:v1:<key id>:<nonce>:<ciphertext>), never
plaintext.';

COMMENT ON COLUMN crm.client_crm_configs.api_key IS
'Secret, encrypted. API key (Pipedrive, Close) or HubSpot private-app token, as an AES-256-GCM
envelope agency-crm writes and reads (docs/security.md). Readable by crm_runner only.';
COMMENT ON COLUMN crm.client_crm_configs.oauth_access_token IS
'Secret, encrypted. HubSpot OAuth access token, as an AES-256-GCM envelope (docs/security.md).
Readable by crm_runner only.';
COMMENT ON COLUMN crm.client_crm_configs.oauth_refresh_token IS
'Secret, encrypted. HubSpot OAuth refresh token, as an AES-256-GCM envelope (docs/security.md).
Readable by crm_runner only.';
