-- Queries of the service layer (python/agency_crm/service/crm.py): the HTTP API and the CLI's
-- crm commands. Each runs in a transaction whose role and crm.client_id the service set.

-- name: act_for_client
-- The client the transaction acts for, which row-level security reads ('': none yet).
SELECT pg_catalog.set_config('crm.client_id', %(client_id)s, TRUE);

-- name: client_name
SELECT c.name
FROM crm.clients AS c
WHERE c.id = %(client_id)s AND c.deleted_at IS NULL;

-- name: find_client
-- The CLI's --client: a live client by its id or by its exact name (a few, to say a name is
-- ambiguous).
SELECT
    c.id,
    c.name
FROM crm.clients AS c
WHERE
    c.deleted_at IS NULL
    AND (c.id = %(client_id)s::uuid OR c.name = %(name)s::text)
ORDER BY c.created_at, c.id
LIMIT 5;

-- name: config
-- The client's live config, no secret column (crm_api may not read them), with which secrets
-- are set (from crm.scoped_crm_config, which reads them for the transaction's one client).
SELECT
    cfg.id,
    cfg.client_id,
    cfg.crm_type,
    cfg.is_active,
    cfg.connection_status,
    cfg.pipeline_id,
    cfg.stage_id,
    cfg.owner_id,
    cfg.stage_map,
    cfg.hubspot_portal_id,
    cfg.api_base_url,
    cfg.external_key_fields,
    cfg.last_successful_push_at,
    cfg.last_error,
    cfg.created_at,
    cfg.updated_at,
    cfg.oauth_expires_at,
    s.api_key IS NOT NULL AS has_api_key,
    s.oauth_access_token IS NOT NULL AS has_oauth_access_token,
    s.oauth_refresh_token IS NOT NULL AS has_oauth_refresh_token
FROM crm.client_crm_configs AS cfg
LEFT JOIN crm.scoped_crm_config() AS s ON s.id = cfg.id
WHERE cfg.client_id = %(client_id)s AND cfg.deleted_at IS NULL;

-- name: scoped_config
-- The config with its (encrypted) secrets, for a call to the CRM.
SELECT s.*  -- noqa: AM04
FROM crm.scoped_crm_config() AS s;

-- name: save_connection
SELECT
    r.config_id,
    r.replaced
FROM crm.save_crm_connection(
    p_client_id => %(client_id)s,
    p_crm_type => %(crm_type)s,
    p_api_key => %(api_key)s,
    p_oauth_access_token => %(oauth_access_token)s,
    p_oauth_refresh_token => %(oauth_refresh_token)s,
    p_oauth_expires_at => %(oauth_expires_at)s,
    p_hubspot_portal_id => %(hubspot_portal_id)s,
    p_api_base_url => %(api_base_url)s,
    p_external_key_fields => %(external_key_fields)s,
    p_pipeline_id => %(pipeline_id)s,
    p_stage_id => %(stage_id)s,
    p_owner_id => %(owner_id)s
) AS r;

-- name: backfill
SELECT
    b.meetings,
    b.deals
FROM crm.backfill_pushes(%(client_id)s, %(since)s) AS b;

-- name: disconnect
SELECT crm.disconnect_crm(%(client_id)s) AS skipped;

-- name: begin_oauth
SELECT crm.begin_oauth_state(
    %(client_id)s, %(state_hash)s, %(redirect_uri)s, %(api_base_url)s
) AS expires_at;

-- name: oauth_state
-- `agency-crm crm connect hubspot --redirect-uri` waits for the API's callback: whether it
-- used the flow's state yet.
SELECT
    s.used_at,
    s.expires_at
FROM crm_private.oauth_states AS s
WHERE s.state_hash = %(state_hash)s;

-- name: consume_oauth
SELECT
    s.outcome,
    s.client_id,
    s.redirect_uri,
    s.api_base_url
FROM crm.consume_oauth_state(%(state_hash)s, %(client_id)s) AS s;

-- name: update_config
-- PUT /crm/config: each setting changes only when its "set_" flag is true.
UPDATE crm.client_crm_configs AS cfg
SET
    pipeline_id = CASE WHEN %(set_pipeline)s::boolean THEN %(pipeline_id)s ELSE cfg.pipeline_id END,
    stage_id = CASE WHEN %(set_stage)s::boolean THEN %(stage_id)s ELSE cfg.stage_id END,
    owner_id = CASE WHEN %(set_owner)s::boolean THEN %(owner_id)s ELSE cfg.owner_id END,
    stage_map = CASE WHEN %(set_stage_map)s::boolean THEN %(stage_map)s ELSE cfg.stage_map END
WHERE cfg.client_id = %(client_id)s AND cfg.deleted_at IS NULL
RETURNING cfg.id;

-- name: meetings
-- One page of the client's live meetings: upcoming (scheduled from now on, not cancelled),
-- past, or all; ordered by when they are scheduled, next first or newest first.
SELECT
    m.id,
    m.client_id,
    m.lead_id,
    m.campaign_id,
    m.scheduled_at,
    m.duration_minutes,
    m.meeting_type,
    m.booked_at,
    m.booked_by,
    m.booking_method,
    m.meeting_link,
    m.confirmed,
    m.reminder_sent,
    m.showed_up,
    m.meeting_outcome,
    m.rescheduled_count,
    m.cancelled_at,
    m.deal_id,
    m.converting_channel,
    m.created_at,
    m.updated_at
FROM crm.meetings AS m
WHERE
    m.client_id = %(client_id)s
    AND m.deleted_at IS NULL
    AND (
        %(upcoming)s::boolean IS NULL
        OR (%(upcoming)s AND m.scheduled_at >= now() AND m.cancelled_at IS NULL)
        OR (NOT %(upcoming)s AND (m.scheduled_at < now() OR m.cancelled_at IS NOT NULL))
    )
ORDER BY
    CASE WHEN %(next_first)s::boolean THEN m.scheduled_at END ASC,
    CASE WHEN NOT %(next_first)s::boolean THEN m.scheduled_at END DESC,
    m.id ASC
LIMIT %(page_size)s OFFSET %(page_offset)s;

-- name: logs
-- One page of the client's CRM call log, newest first, filtered.
SELECT
    l.id,
    l.created_at,
    l.push_id,
    l.operation,
    l.status,
    l.http_status,
    l.error_code,
    l.error_message,
    l.duration_ms,
    l.lead_id,
    l.meeting_id,
    l.deal_id,
    l.crm_contact_id,
    l.crm_deal_id,
    l.crm_org_id,
    l.request_payload,
    l.response_payload
FROM crm.crm_push_log AS l
WHERE
    l.client_id = %(client_id)s
    AND l.deleted_at IS NULL
    AND (%(status)s::text IS NULL OR l.status = %(status)s)
    AND (%(operation)s::text IS NULL OR l.operation = %(operation)s)
    AND (%(push_id)s::bigint IS NULL OR l.push_id = %(push_id)s)
    AND (%(lead_id)s::uuid IS NULL OR l.lead_id = %(lead_id)s)
    AND (%(meeting_id)s::uuid IS NULL OR l.meeting_id = %(meeting_id)s)
    AND (%(deal_id)s::uuid IS NULL OR l.deal_id = %(deal_id)s)
    AND (%(since)s::timestamptz IS NULL OR l.created_at >= %(since)s)
    AND (%(until)s::timestamptz IS NULL OR l.created_at < %(until)s)
ORDER BY l.created_at DESC, l.id DESC
LIMIT %(page_size)s OFFSET %(page_offset)s;

-- name: create_api_token
INSERT INTO crm_private.api_tokens (client_id, name, token_hash, token_prefix)
VALUES (%(client_id)s, %(name)s, %(token_hash)s, %(token_prefix)s)
RETURNING id, client_id, name, token_prefix, created_at;

-- name: list_api_tokens
SELECT
    t.id,
    t.client_id,
    c.name AS client_name,
    t.name,
    t.token_prefix,
    t.created_at,
    t.last_used_at,
    t.revoked_at
FROM crm_private.api_tokens AS t
LEFT JOIN crm.clients AS c ON t.client_id = c.id
WHERE
    (%(client_id)s::uuid IS NULL OR t.client_id = %(client_id)s)
    AND (%(include_revoked)s::boolean OR t.revoked_at IS NULL)
ORDER BY t.created_at, t.id;

-- name: revoke_api_token
UPDATE crm_private.api_tokens AS t
SET revoked_at = coalesce(t.revoked_at, now())
WHERE t.id = %(id)s
RETURNING t.id, t.revoked_at;

-- name: authenticate_api_token
SELECT
    a.token_id,
    a.client_id
FROM crm.authenticate_api_token(%(token_hash)s) AS a;
