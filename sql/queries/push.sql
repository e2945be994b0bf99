-- Named queries of the push runner and the `agency-crm push` commands, loaded by name
-- (agency_crm.queries). Named placeholders only: %(name)s. The rules live in the functions
-- these call; what is here reads or writes plainly.

-- name: live_configs
-- The live CRM configs, optionally only some clients', optionally only those that get pushes
-- (active, not in error), with the client's name.
SELECT
    cfg.id,
    cfg.client_id,
    c.name AS client_name,
    cfg.crm_type,
    cfg.api_key,
    cfg.oauth_access_token,
    cfg.oauth_refresh_token,
    cfg.oauth_expires_at,
    cfg.pipeline_id,
    cfg.stage_id,
    cfg.owner_id,
    cfg.api_base_url,
    cfg.stage_map,
    cfg.external_key_fields
FROM crm.client_crm_configs AS cfg
INNER JOIN crm.clients AS c ON cfg.client_id = c.id
WHERE
    cfg.deleted_at IS NULL
    AND (%(client_ids)s::uuid[] IS NULL OR cfg.client_id = any(%(client_ids)s::uuid[]))
    AND (
        NOT %(pushable_only)s::boolean
        OR (cfg.is_active AND cfg.connection_status <> 'error')
    )
ORDER BY c.name ASC, cfg.client_id ASC;

-- name: claim_pushes
SELECT
    p.client_id,
    p.id,
    p.operation,
    p.lead_id,
    p.meeting_id,
    p.deal_id,
    p.attempts
FROM crm.claim_pushes(%(client_id)s, %(owner)s, %(batch)s, %(lease_seconds)s) AS p;

-- name: due_pushes
-- Pending pushes of one client that are due, in claim order (push drain --dry-run).
SELECT
    q.client_id,
    q.id,
    q.operation,
    q.lead_id,
    q.meeting_id,
    q.deal_id,
    q.attempts
FROM crm.crm_push_queue AS q
WHERE
    q.client_id = %(client_id)s
    AND q.status = 'pending'
    AND q.run_after <= now()
ORDER BY q.run_after ASC, q.id ASC
LIMIT %(row_limit)s;

-- name: next_run_after
-- When the client's next pending push is due (NULL: nothing pending).
SELECT min(q.run_after) AS next_run_after
FROM crm.crm_push_queue AS q
WHERE q.client_id = %(client_id)s AND q.status = 'pending';

-- name: push_target
SELECT t.*  -- noqa: AM04
FROM crm.push_target(%(client_id)s, %(push_id)s) AS t;

-- name: push_targets
-- crm.push_target of each push of a claim, in one query (no row: the push does not exist).
SELECT t.*  -- noqa: AM04
FROM crm.push_targets(%(client_id)s, %(push_ids)s::bigint[]) AS t;

-- name: finish_pushes
-- The audit rows of a batch of pushes, the CRM ids they learnt since their last statement
-- (crm.record_crm_id each) and the outcomes of their claims (crm.finish_pushes), in one
-- statement: all or none.
WITH logged AS (
    SELECT crm.write_push_log(%(client_id)s, %(logs)s) AS n
),

recorded AS (
    SELECT
        count(
            crm.record_crm_id(
                %(client_id)s,
                %(crm_config_id)s,
                r.entity_type,
                r.external_key,
                r.entity_id,
                r.crm_id,
                r.create_sent_at
            )
        ) AS n
    FROM
        unnest(
            %(entity_types)s::text[],
            %(external_keys)s::text[],
            %(entity_ids)s::uuid[],
            %(crm_ids)s::text[],
            %(create_sent_ats)s::timestamptz[]
        ) AS r (entity_type, external_key, entity_id, crm_id, create_sent_at)
)

SELECT
    f.push_id,
    f.status
FROM
    crm.finish_pushes(
        %(client_id)s,
        %(owner)s,
        %(push_ids)s,
        %(attempts)s,
        %(outcomes)s,
        %(errors)s,
        %(retry_ats)s
    ) AS f
-- written first, whatever the outcomes (a one-time filter)
WHERE (SELECT l.n FROM logged AS l) >= 0 AND (SELECT r.n FROM recorded AS r) >= 0;

-- name: write_push_log
-- Audit rows of CRM calls made outside a push (push check, connect), in one statement.
SELECT crm.write_push_log(%(client_id)s, %(logs)s);

-- name: crm_id
-- What crm_external_ids holds for one (entity type, external key) of a config.
SELECT
    x.crm_id,
    x.create_sent_at
FROM crm.crm_external_ids AS x
WHERE
    x.client_id = %(client_id)s
    AND x.crm_config_id = %(crm_config_id)s
    AND x.entity_type = %(entity_type)s
    AND x.external_key = %(external_key)s;

-- name: record_crm_ids
-- crm.record_crm_id of many (entity type, external key) of one config, in one statement.
SELECT
    crm.record_crm_id(
        %(client_id)s,
        %(crm_config_id)s,
        r.entity_type,
        r.external_key,
        r.entity_id,
        r.crm_id,
        r.create_sent_at
    )
FROM
    unnest(
        %(entity_types)s::text[],
        %(external_keys)s::text[],
        %(entity_ids)s::uuid[],
        %(crm_ids)s::text[],
        %(create_sent_ats)s::timestamptz[]
    ) AS r (entity_type, external_key, entity_id, crm_id, create_sent_at);

-- name: claim_crm_create
-- crm.claim_crm_create with the audit rows of the calls so far and the CRM ids the push has
-- learnt since its last statement (crm.record_crm_id each), in one statement.
WITH logged AS (
    SELECT crm.write_push_log(%(client_id)s, %(logs)s) AS n
),

recorded AS (
    SELECT
        count(
            crm.record_crm_id(
                %(client_id)s,
                %(crm_config_id)s,
                r.entity_type,
                r.external_key,
                r.entity_id,
                r.crm_id,
                r.create_sent_at
            )
        ) AS n
    FROM
        unnest(
            %(entity_types)s::text[],
            %(external_keys)s::text[],
            %(entity_ids)s::uuid[],
            %(crm_ids)s::text[],
            %(create_sent_ats)s::timestamptz[]
        ) AS r (entity_type, external_key, entity_id, crm_id, create_sent_at)
)

SELECT
    c.claimed,
    c.crm_id,
    c.create_sent_at
FROM
    crm.claim_crm_create(
        %(client_id)s,
        %(crm_config_id)s,
        %(entity_type)s,
        %(external_key)s,
        %(entity_id)s,
        %(unknown_outcome_window)s
    ) AS c
-- written first, whatever the claim (a one-time filter)
WHERE (SELECT l.n FROM logged AS l) >= 0 AND (SELECT r.n FROM recorded AS r) >= 0;

-- name: release_crm_create
-- crm.release_crm_create with the audit rows of the calls so far, in one statement.
WITH logged AS (
    SELECT crm.write_push_log(%(client_id)s, %(logs)s) AS n
)

SELECT
    crm.release_crm_create(
        %(client_id)s, %(crm_config_id)s, %(entity_type)s, %(external_key)s
    )
FROM logged;

-- name: hold_pushes
SELECT crm.hold_pushes(%(client_id)s, %(error)s);

-- name: retry_pushes
SELECT crm.retry_pushes(%(client_id)s, %(statuses)s, %(push_ids)s);

-- name: save_oauth_tokens
-- Refreshed HubSpot OAuth tokens (bind parameters: never in statement text).
UPDATE crm.client_crm_configs
SET
    oauth_access_token = %(access_token)s,
    oauth_refresh_token = %(refresh_token)s,
    oauth_expires_at = %(expires_at)s
WHERE client_id = %(client_id)s AND id = %(config_id)s;

-- name: record_connection_check
-- The outcome of `push check`: connected, or error with what was wrong.
UPDATE crm.client_crm_configs
SET
    connection_status = CASE WHEN %(ok)s::boolean THEN 'connected' ELSE 'error' END,
    last_error = %(error)s
WHERE client_id = %(client_id)s AND id = %(config_id)s;

-- name: listen_push_queue
LISTEN crm_push_queue;

-- name: queue_status
SELECT s.*  -- noqa: AM04
FROM crm.push_queue_status() AS s
WHERE %(client_ids)s::uuid[] IS NULL OR s.client_id = any(%(client_ids)s::uuid[]);

-- name: due_count
-- Pushes a drain would work on now (the progress bar's total).
SELECT coalesce(sum(s.due + s.in_flight), 0) AS due
FROM crm.push_queue_status() AS s
WHERE %(client_ids)s::uuid[] IS NULL OR s.client_id = any(%(client_ids)s::uuid[]);

-- name: push_log
-- Recent rows of crm.crm_push_log, newest first (push logs).
SELECT
    l.created_at,
    l.client_id,
    l.push_id,
    l.operation,
    l.status,
    l.http_status,
    l.error_code,
    l.error_message,
    l.duration_ms,
    l.crm_contact_id,
    l.crm_deal_id,
    l.crm_org_id,
    l.request_payload,
    l.response_payload
FROM crm.crm_push_log AS l
WHERE
    (%(client_ids)s::uuid[] IS NULL OR l.client_id = any(%(client_ids)s::uuid[]))
    AND (%(push_id)s::bigint IS NULL OR l.push_id = %(push_id)s::bigint)
    AND (%(status)s::text IS NULL OR l.status = %(status)s::text)
    AND (%(operation)s::text IS NULL OR l.operation = %(operation)s::text)
ORDER BY l.created_at DESC, l.id ASC
LIMIT %(row_limit)s;
