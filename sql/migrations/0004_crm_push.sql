-- 0004: CRM connections, the pending-push queue (outbox), the map of our entities
-- to their CRM ids, and the push audit log.

CREATE TABLE crm.client_crm_configs (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    crm_type text NOT NULL,
    api_key text,
    oauth_access_token text,
    oauth_refresh_token text,
    oauth_expires_at timestamptz,
    hubspot_portal_id text,
    pipeline_id text,
    stage_id text,
    owner_id text,
    is_active boolean NOT NULL DEFAULT TRUE,
    connection_status text NOT NULL DEFAULT 'pending',
    last_successful_push_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT client_crm_configs_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT client_crm_configs_client_id_fkey FOREIGN KEY (client_id)
    REFERENCES crm.clients (id),
    CONSTRAINT client_crm_configs_crm_type_check CHECK (
        crm_type IN ('hubspot', 'pipedrive', 'close')
    ),
    CONSTRAINT client_crm_configs_connection_status_check CHECK (
        connection_status IN ('pending', 'connected', 'error', 'disconnected')
    ),
    CONSTRAINT client_crm_configs_oauth_check CHECK (
        crm_type = 'hubspot'
        OR num_nonnulls(oauth_access_token, oauth_refresh_token, oauth_expires_at) = 0
    ),
    CONSTRAINT client_crm_configs_hubspot_portal_id_check CHECK (
        crm_type = 'hubspot' OR hubspot_portal_id IS NULL
    )
);

COMMENT ON TABLE crm.client_crm_configs IS
'The CRM a client pushes meetings and deals into: at most one live (not soft-deleted)
config per client.';
COMMENT ON COLUMN crm.client_crm_configs.id IS 'Config id.';
COMMENT ON COLUMN crm.client_crm_configs.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.client_crm_configs.crm_type IS 'hubspot, pipedrive or close.';
COMMENT ON COLUMN crm.client_crm_configs.api_key IS
'Secret. API key (Pipedrive, Close) or HubSpot private-app token. Never logged.';
COMMENT ON COLUMN crm.client_crm_configs.oauth_access_token IS
'Secret. HubSpot OAuth access token. Never logged.';
COMMENT ON COLUMN crm.client_crm_configs.oauth_refresh_token IS
'Secret. HubSpot OAuth refresh token. Never logged.';
COMMENT ON COLUMN crm.client_crm_configs.oauth_expires_at IS
'When the HubSpot access token expires; refreshed when within 5 minutes of it.';
COMMENT ON COLUMN crm.client_crm_configs.hubspot_portal_id IS 'HubSpot account (portal) id.';
COMMENT ON COLUMN crm.client_crm_configs.pipeline_id IS 'CRM pipeline new deals go into.';
COMMENT ON COLUMN crm.client_crm_configs.stage_id IS 'CRM stage new deals start in.';
COMMENT ON COLUMN crm.client_crm_configs.owner_id IS 'CRM user who owns new deals.';
COMMENT ON COLUMN crm.client_crm_configs.is_active IS
'Pushes are made only while true; false pauses the connection.';
COMMENT ON COLUMN crm.client_crm_configs.connection_status IS
'pending (not yet tested), connected, error (see last_error) or disconnected.';
COMMENT ON COLUMN crm.client_crm_configs.last_successful_push_at IS
'When a push last succeeded.';
COMMENT ON COLUMN crm.client_crm_configs.last_error IS
'Most recent error from the CRM, secrets redacted.';
COMMENT ON COLUMN crm.client_crm_configs.created_at IS 'When the row was created.';
COMMENT ON COLUMN crm.client_crm_configs.updated_at IS
'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.client_crm_configs.deleted_at IS
'Soft-delete time; NULL while the row is live.';
COMMENT ON CONSTRAINT client_crm_configs_client_id_fkey ON crm.client_crm_configs IS
'client_id must name an existing client.';
COMMENT ON CONSTRAINT client_crm_configs_crm_type_check ON crm.client_crm_configs IS
'crm_type must be one of hubspot, pipedrive, close.';
COMMENT ON CONSTRAINT client_crm_configs_connection_status_check ON crm.client_crm_configs IS
'connection_status must be one of pending, connected, error, disconnected.';
COMMENT ON CONSTRAINT client_crm_configs_oauth_check ON crm.client_crm_configs IS
'oauth_access_token, oauth_refresh_token and oauth_expires_at are for hubspot configs only.';
COMMENT ON CONSTRAINT client_crm_configs_hubspot_portal_id_check ON crm.client_crm_configs IS
'hubspot_portal_id is for hubspot configs only.';

CREATE UNIQUE INDEX client_crm_configs_client_id_key
ON crm.client_crm_configs (client_id)
WHERE deleted_at IS NULL;

COMMENT ON INDEX crm.client_crm_configs_client_id_key IS
'One live CRM config per client: soft-delete the old one (set deleted_at) before adding another.';

CREATE TABLE crm.crm_external_ids (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    crm_config_id uuid NOT NULL,
    entity_type text NOT NULL,
    external_key text NOT NULL,
    entity_id uuid,
    crm_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT crm_external_ids_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT crm_external_ids_client_id_crm_config_id_fkey
    FOREIGN KEY (client_id, crm_config_id)
    REFERENCES crm.client_crm_configs (client_id, id),
    CONSTRAINT crm_external_ids_entity_type_check CHECK (
        entity_type IN ('lead', 'contact', 'deal', 'organisation')
    ),
    CONSTRAINT crm_external_ids_external_key_check CHECK (
        length(external_key) BETWEEN 1 AND 200
    ),
    CONSTRAINT crm_external_ids_crm_id_check CHECK (length(crm_id) BETWEEN 1 AND 200),
    CONSTRAINT crm_external_ids_entity_key
    UNIQUE (client_id, crm_config_id, entity_type, external_key)
);

COMMENT ON TABLE crm.crm_external_ids IS
'Where each of our entities lives in the client''s CRM: one row per (config, entity type,
our stable external key), written the moment the CRM id is known.';
COMMENT ON COLUMN crm.crm_external_ids.id IS 'Row id.';
COMMENT ON COLUMN crm.crm_external_ids.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.crm_external_ids.crm_config_id IS 'CRM connection the id belongs to.';
COMMENT ON COLUMN crm.crm_external_ids.entity_type IS
'lead (HubSpot contact, Pipedrive person, Close lead), contact (the Close contact inside a
lead), deal (deal or opportunity) or organisation (Pipedrive organization).';
COMMENT ON COLUMN crm.crm_external_ids.external_key IS
'Our stable key, also written into the CRM record, e.g. the lead or deal id, or the
normalised company name of an organisation.';
COMMENT ON COLUMN crm.crm_external_ids.entity_id IS
'Our lead or deal id when the entity is one of ours; NULL for organisations.';
COMMENT ON COLUMN crm.crm_external_ids.crm_id IS 'Id of the record in the CRM.';
COMMENT ON COLUMN crm.crm_external_ids.created_at IS 'When the mapping was first recorded.';
COMMENT ON COLUMN crm.crm_external_ids.updated_at IS
'When the row last changed (maintained by trigger).';
COMMENT ON CONSTRAINT crm_external_ids_client_id_crm_config_id_fkey ON crm.crm_external_ids IS
'crm_config_id must name a CRM config of the same client.';
COMMENT ON CONSTRAINT crm_external_ids_entity_type_check ON crm.crm_external_ids IS
'entity_type must be one of lead, contact, deal, organisation.';
COMMENT ON CONSTRAINT crm_external_ids_external_key_check ON crm.crm_external_ids IS
'external_key must be 1-200 characters.';
COMMENT ON CONSTRAINT crm_external_ids_crm_id_check ON crm.crm_external_ids IS
'crm_id must be 1-200 characters.';
COMMENT ON CONSTRAINT crm_external_ids_entity_key
ON crm.crm_external_ids IS
'One CRM id per config, entity type and external key.';

CREATE INDEX crm_external_ids_client_id_entity_id_idx
ON crm.crm_external_ids (client_id, entity_id);

CREATE TABLE crm.crm_push_queue (
    id bigint GENERATED ALWAYS AS IDENTITY,
    client_id uuid NOT NULL,
    operation text NOT NULL,
    lead_id uuid,
    meeting_id uuid,
    deal_id uuid,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    run_after timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT crm_push_queue_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT crm_push_queue_client_id_fkey FOREIGN KEY (client_id) REFERENCES crm.clients (id),
    CONSTRAINT crm_push_queue_client_id_lead_id_fkey FOREIGN KEY (client_id, lead_id)
    REFERENCES crm.leads (client_id, id),
    CONSTRAINT crm_push_queue_client_id_meeting_id_fkey FOREIGN KEY (client_id, meeting_id)
    REFERENCES crm.meetings (client_id, id),
    CONSTRAINT crm_push_queue_client_id_deal_id_fkey FOREIGN KEY (client_id, deal_id)
    REFERENCES crm.deals (client_id, id),
    CONSTRAINT crm_push_queue_operation_check CHECK (
        operation IN ('meeting_booked', 'meeting_outcome', 'deal_created', 'deal_updated')
    ),
    CONSTRAINT crm_push_queue_entity_check CHECK (num_nonnulls(lead_id, meeting_id, deal_id) >= 1),
    CONSTRAINT crm_push_queue_status_check CHECK (
        status IN ('pending', 'in_flight', 'done', 'failed', 'dead', 'held')
    ),
    CONSTRAINT crm_push_queue_attempts_check CHECK (attempts >= 0),
    CONSTRAINT crm_push_queue_lease_check CHECK (
        status <> 'in_flight' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)
    ),
    CONSTRAINT crm_push_queue_finished_at_check CHECK (
        (status IN ('done', 'failed', 'dead')) = (finished_at IS NOT NULL)
    )
);

COMMENT ON TABLE crm.crm_push_queue IS
'Pending pushes (transactional outbox): written by triggers in the same transaction as the
change, drained into the CRMs by `agency-crm push drain`.';
COMMENT ON COLUMN crm.crm_push_queue.id IS 'Push id (identity): increases in insert order.';
COMMENT ON COLUMN crm.crm_push_queue.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.crm_push_queue.operation IS
'What the CRM must learn: meeting_booked, meeting_outcome, deal_created or deal_updated.';
COMMENT ON COLUMN crm.crm_push_queue.lead_id IS 'Lead concerned.';
COMMENT ON COLUMN crm.crm_push_queue.meeting_id IS 'Meeting concerned, if any.';
COMMENT ON COLUMN crm.crm_push_queue.deal_id IS 'Deal concerned, if any.';
COMMENT ON COLUMN crm.crm_push_queue.status IS
'pending (waiting for run_after), in_flight (claimed under a lease), done, failed (not
retryable), dead (retries exhausted) or held (CRM credentials need fixing).';
COMMENT ON COLUMN crm.crm_push_queue.attempts IS 'How many times the push has been claimed.';
COMMENT ON COLUMN crm.crm_push_queue.run_after IS 'Not claimed before this time (retry backoff).';
COMMENT ON COLUMN crm.crm_push_queue.lease_owner IS 'Runner that holds the claim.';
COMMENT ON COLUMN crm.crm_push_queue.lease_expires_at IS
'When the claim lapses; an expired in_flight row is claimed again.';
COMMENT ON COLUMN crm.crm_push_queue.last_error IS 'Error of the last failed attempt, redacted.';
COMMENT ON COLUMN crm.crm_push_queue.created_at IS 'When the push was enqueued.';
COMMENT ON COLUMN crm.crm_push_queue.updated_at IS
'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.crm_push_queue.finished_at IS
'When the push reached done, failed or dead.';
COMMENT ON CONSTRAINT crm_push_queue_client_id_fkey ON crm.crm_push_queue IS
'client_id must name an existing client.';
COMMENT ON CONSTRAINT crm_push_queue_client_id_lead_id_fkey ON crm.crm_push_queue IS
'lead_id must name a lead of the same client.';
COMMENT ON CONSTRAINT crm_push_queue_client_id_meeting_id_fkey ON crm.crm_push_queue IS
'meeting_id must name a meeting of the same client.';
COMMENT ON CONSTRAINT crm_push_queue_client_id_deal_id_fkey ON crm.crm_push_queue IS
'deal_id must name a deal of the same client.';
COMMENT ON CONSTRAINT crm_push_queue_operation_check ON crm.crm_push_queue IS
'operation must be one of meeting_booked, meeting_outcome, deal_created, deal_updated.';
COMMENT ON CONSTRAINT crm_push_queue_entity_check ON crm.crm_push_queue IS
'A push must name at least one of lead_id, meeting_id, deal_id.';
COMMENT ON CONSTRAINT crm_push_queue_status_check ON crm.crm_push_queue IS
'status must be one of pending, in_flight, done, failed, dead, held.';
COMMENT ON CONSTRAINT crm_push_queue_attempts_check ON crm.crm_push_queue IS
'attempts must not be negative.';
COMMENT ON CONSTRAINT crm_push_queue_lease_check ON crm.crm_push_queue IS
'status in_flight requires lease_owner and lease_expires_at (the claim lease).';
COMMENT ON CONSTRAINT crm_push_queue_finished_at_check ON crm.crm_push_queue IS
'finished_at is set exactly when status is done, failed or dead.';

CREATE INDEX crm_push_queue_claim_idx
ON crm.crm_push_queue (client_id, run_after, id)
WHERE status = 'pending';
CREATE INDEX crm_push_queue_lease_expires_at_idx
ON crm.crm_push_queue (lease_expires_at)
WHERE status = 'in_flight';
CREATE INDEX crm_push_queue_client_id_lead_id_idx ON crm.crm_push_queue (client_id, lead_id);
CREATE INDEX crm_push_queue_client_id_meeting_id_idx ON crm.crm_push_queue (client_id, meeting_id);
CREATE INDEX crm_push_queue_client_id_deal_id_idx ON crm.crm_push_queue (client_id, deal_id);

COMMENT ON INDEX crm.crm_push_queue_claim_idx IS
'Claim path of the drainer: pending pushes of one client in run_after order.';
COMMENT ON INDEX crm.crm_push_queue_lease_expires_at_idx IS
'Finds in_flight pushes whose lease lapsed (crashed runner).';

CREATE TABLE crm.crm_push_log (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    crm_config_id uuid,
    push_id bigint,
    operation text NOT NULL,
    lead_id uuid,
    meeting_id uuid,
    deal_id uuid,
    crm_contact_id text,
    crm_deal_id text,
    crm_org_id text,
    request_payload jsonb,
    response_payload jsonb,
    status text NOT NULL,
    http_status integer,
    error_code text,
    error_message text,
    duration_ms integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT crm_push_log_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT crm_push_log_client_id_fkey FOREIGN KEY (client_id) REFERENCES crm.clients (id),
    CONSTRAINT crm_push_log_client_id_crm_config_id_fkey FOREIGN KEY (client_id, crm_config_id)
    REFERENCES crm.client_crm_configs (client_id, id),
    CONSTRAINT crm_push_log_client_id_lead_id_fkey FOREIGN KEY (client_id, lead_id)
    REFERENCES crm.leads (client_id, id),
    CONSTRAINT crm_push_log_client_id_meeting_id_fkey FOREIGN KEY (client_id, meeting_id)
    REFERENCES crm.meetings (client_id, id),
    CONSTRAINT crm_push_log_client_id_deal_id_fkey FOREIGN KEY (client_id, deal_id)
    REFERENCES crm.deals (client_id, id),
    CONSTRAINT crm_push_log_operation_check CHECK (operation ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT crm_push_log_status_check CHECK (status IN ('success', 'failed', 'skipped')),
    CONSTRAINT crm_push_log_http_status_check CHECK (http_status BETWEEN 100 AND 599),
    CONSTRAINT crm_push_log_duration_ms_check CHECK (duration_ms >= 0)
);

COMMENT ON TABLE crm.crm_push_log IS
'Audit trail: one row per CRM call (or skipped push), with request and response payloads
with secrets redacted.';
COMMENT ON COLUMN crm.crm_push_log.id IS 'Log row id.';
COMMENT ON COLUMN crm.crm_push_log.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.crm_push_log.crm_config_id IS 'CRM config used; NULL when none (skipped).';
COMMENT ON COLUMN crm.crm_push_log.push_id IS 'crm_push_queue row the call served, if any.';
COMMENT ON COLUMN crm.crm_push_log.operation IS
'CRM operation in lower snake_case: find_contact, create_contact, create_deal, update_deal,
refresh_token, ...';
COMMENT ON COLUMN crm.crm_push_log.lead_id IS 'Lead concerned.';
COMMENT ON COLUMN crm.crm_push_log.meeting_id IS 'Meeting concerned.';
COMMENT ON COLUMN crm.crm_push_log.deal_id IS 'Deal concerned.';
COMMENT ON COLUMN crm.crm_push_log.crm_contact_id IS 'CRM contact (person, lead) id.';
COMMENT ON COLUMN crm.crm_push_log.crm_deal_id IS 'CRM deal (opportunity) id.';
COMMENT ON COLUMN crm.crm_push_log.crm_org_id IS 'CRM organisation id (Pipedrive).';
COMMENT ON COLUMN crm.crm_push_log.request_payload IS 'Request body sent, secrets redacted.';
COMMENT ON COLUMN crm.crm_push_log.response_payload IS
'Response body received, secrets redacted.';
COMMENT ON COLUMN crm.crm_push_log.status IS 'success, failed or skipped.';
COMMENT ON COLUMN crm.crm_push_log.http_status IS 'HTTP status code of the response, if any.';
COMMENT ON COLUMN crm.crm_push_log.error_code IS
'Error type, e.g. rate_limited, timeout, unauthorized.';
COMMENT ON COLUMN crm.crm_push_log.error_message IS 'Error details, secrets redacted.';
COMMENT ON COLUMN crm.crm_push_log.duration_ms IS 'Duration of the API call in milliseconds.';
COMMENT ON COLUMN crm.crm_push_log.created_at IS 'When the call was made.';
COMMENT ON COLUMN crm.crm_push_log.updated_at IS
'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.crm_push_log.deleted_at IS 'Soft-delete time; NULL while the row is live.';
COMMENT ON CONSTRAINT crm_push_log_client_id_fkey ON crm.crm_push_log IS
'client_id must name an existing client.';
COMMENT ON CONSTRAINT crm_push_log_client_id_crm_config_id_fkey ON crm.crm_push_log IS
'crm_config_id must name a CRM config of the same client.';
COMMENT ON CONSTRAINT crm_push_log_client_id_lead_id_fkey ON crm.crm_push_log IS
'lead_id must name a lead of the same client.';
COMMENT ON CONSTRAINT crm_push_log_client_id_meeting_id_fkey ON crm.crm_push_log IS
'meeting_id must name a meeting of the same client.';
COMMENT ON CONSTRAINT crm_push_log_client_id_deal_id_fkey ON crm.crm_push_log IS
'deal_id must name a deal of the same client.';
COMMENT ON CONSTRAINT crm_push_log_operation_check ON crm.crm_push_log IS
'operation must be lower snake_case (a-z, 0-9, _), starting with a letter.';
COMMENT ON CONSTRAINT crm_push_log_status_check ON crm.crm_push_log IS
'status must be one of success, failed, skipped.';
COMMENT ON CONSTRAINT crm_push_log_http_status_check ON crm.crm_push_log IS
'http_status must be an HTTP status code between 100 and 599.';
COMMENT ON CONSTRAINT crm_push_log_duration_ms_check ON crm.crm_push_log IS
'duration_ms must not be negative.';

CREATE INDEX crm_push_log_client_id_created_at_idx ON crm.crm_push_log (client_id, created_at);
CREATE INDEX crm_push_log_client_id_crm_config_id_idx
ON crm.crm_push_log (client_id, crm_config_id);
CREATE INDEX crm_push_log_client_id_push_id_idx ON crm.crm_push_log (client_id, push_id);
CREATE INDEX crm_push_log_client_id_lead_id_idx ON crm.crm_push_log (client_id, lead_id);
CREATE INDEX crm_push_log_client_id_meeting_id_idx ON crm.crm_push_log (client_id, meeting_id);
CREATE INDEX crm_push_log_client_id_deal_id_idx ON crm.crm_push_log (client_id, deal_id);
