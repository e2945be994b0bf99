-- 0008: what the push runner needs: per-config API base URL, stage map, external-key fields
-- and retry budget; create intents in the CRM id map (a create whose outcome is unknown is
-- looked up before it is ever sent again); the per-entity ordering index of the queue.

ALTER TABLE crm.client_crm_configs
ADD COLUMN api_base_url text,
ADD COLUMN stage_map jsonb NOT NULL DEFAULT '{}',
ADD COLUMN external_key_fields jsonb NOT NULL DEFAULT '{}',
ADD COLUMN max_attempts integer NOT NULL DEFAULT 10,
ADD CONSTRAINT client_crm_configs_api_base_url_check CHECK (
    api_base_url ~ '^https?://[^[:space:]/]+(/[^[:space:]]*)?$'
),
ADD CONSTRAINT client_crm_configs_stage_map_check CHECK (jsonb_typeof(stage_map) = 'object'),
ADD CONSTRAINT client_crm_configs_external_key_fields_check CHECK (
    jsonb_typeof(external_key_fields) = 'object'
),
ADD CONSTRAINT client_crm_configs_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 100);

COMMENT ON COLUMN crm.client_crm_configs.api_base_url IS
'Root URL of the CRM API (scheme and host, no path), e.g. https://api.hubapi.com. NULL means
the vendor''s public API; set it to talk to a proxy or the local CRM sandbox.';
COMMENT ON COLUMN crm.client_crm_configs.stage_map IS
'Our deal stage -> the CRM''s stage id, e.g. {"proposal": "presentationscheduled"}. An open
stage that is not mapped leaves the CRM deal''s stage as it is; closed_won and closed_lost fall
back to the CRM''s own won and lost (see docs/push.md).';
COMMENT ON COLUMN crm.client_crm_configs.external_key_fields IS
'Where our stable external key is written in the CRM, per CRM entity, e.g. {"deal":
"agency_crm_key"}: a HubSpot unique property, a Pipedrive custom field key or a Close custom
field id (cf_...). Missing entries use the defaults in docs/push.md.';
COMMENT ON COLUMN crm.client_crm_configs.max_attempts IS
'How many times a push is tried before it becomes dead.';
COMMENT ON CONSTRAINT client_crm_configs_api_base_url_check ON crm.client_crm_configs IS
'api_base_url must be an http(s) URL without spaces.';
COMMENT ON CONSTRAINT client_crm_configs_stage_map_check ON crm.client_crm_configs IS
'stage_map must be a JSON object.';
COMMENT ON CONSTRAINT client_crm_configs_external_key_fields_check ON crm.client_crm_configs IS
'external_key_fields must be a JSON object.';
COMMENT ON CONSTRAINT client_crm_configs_max_attempts_check ON crm.client_crm_configs IS
'max_attempts must be between 1 and 100.';

-- A create intent: written (crm_id NULL) in its own transaction before the create is sent,
-- completed with the CRM id the moment it is known, released (create_sent_at NULL) when the
-- CRM refused the create outright.
ALTER TABLE crm.crm_external_ids
ALTER COLUMN crm_id DROP NOT NULL,
ADD COLUMN create_sent_at timestamptz;

COMMENT ON COLUMN crm.crm_external_ids.crm_id IS
'Id of the record in the CRM; NULL while no record is known (see create_sent_at).';
COMMENT ON COLUMN crm.crm_external_ids.create_sent_at IS
'When the runner last sent a create for this key whose outcome is not yet settled. With crm_id
NULL the create may or may not have landed, so the next attempt looks the record up by its key
and no other create is sent until the runner''s unknown-outcome window has passed; NULL once
the id is stored or the CRM refused the create.';

-- Per-entity order: a push is claimed only when no earlier push of the same lead is
-- unfinished; this index answers that question.
CREATE INDEX crm_push_queue_unfinished_lead_idx
ON crm.crm_push_queue (client_id, lead_id, id)
WHERE status IN ('pending', 'in_flight', 'held');

COMMENT ON INDEX crm.crm_push_queue_unfinished_lead_idx IS
'Unfinished pushes per lead in id order: the claim takes a push only when none of its lead''s
earlier pushes is unfinished, so one lead''s pushes reach the CRM one at a time, in order.';

CREATE INDEX crm_push_queue_held_idx
ON crm.crm_push_queue (client_id, id)
WHERE status = 'held';

COMMENT ON INDEX crm.crm_push_queue_held_idx IS
'Held pushes of a client, released when its CRM config is fixed.';

CREATE INDEX crm_push_queue_stuck_idx
ON crm.crm_push_queue (client_id, status, id)
WHERE status IN ('failed', 'dead');

COMMENT ON INDEX crm.crm_push_queue_stuck_idx IS
'Failed and dead pushes per client, for push status and push retry.';
