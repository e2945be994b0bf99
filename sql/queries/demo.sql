-- Queries of the demo (python/agency_crm/demo): what each client's CRM should hold once the
-- queue is drained, read from the tables the pushes read (crm.push_target's keys).

-- name: expected_records
-- One row per record the client's CRM should hold: its kind (contact, organisation, deal), our
-- key, and for deals the status and amount. Live rows of live leads only: a push of a deleted
-- lead, meeting or deal is skipped. A meeting and the deal made from it are one CRM deal
-- (acrm-meeting-<meeting id>); a deal without a meeting is acrm-deal-<deal id>.
WITH
live_leads AS (
    SELECT
        l.client_id,
        l.id,
        nullif(btrim(regexp_replace(lower(l.company), '\s+', ' ', 'g'), ' '), '') AS org
    FROM crm.leads AS l
    WHERE l.client_id = any(%(client_ids)s::uuid[]) AND l.deleted_at IS NULL
),

meeting_deals AS (
    SELECT
        m.client_id,
        m.lead_id,
        'acrm-meeting-' || m.id AS key,
        d.id AS deal_id,
        CASE WHEN m.meeting_outcome IN ('cancelled', 'bad') THEN 'lost' ELSE 'open' END
            AS meeting_status
    FROM crm.meetings AS m
    INNER JOIN live_leads AS l ON l.client_id = m.client_id AND l.id = m.lead_id
    LEFT JOIN crm.deals AS d
        ON d.client_id = m.client_id AND d.meeting_id = m.id AND d.deleted_at IS NULL
    WHERE m.deleted_at IS NULL
),

deal_keys AS (
    SELECT
        d.client_id,
        d.lead_id,
        coalesce('acrm-meeting-' || d.meeting_id, 'acrm-deal-' || d.id) AS key,
        d.id AS deal_id,
        NULL::text AS meeting_status
    FROM crm.deals AS d
    INNER JOIN live_leads AS l ON l.client_id = d.client_id AND l.id = d.lead_id
    WHERE d.deleted_at IS NULL
),

crm_deals AS (
    SELECT DISTINCT ON (k.client_id, k.key)
        k.client_id,
        k.lead_id,
        k.key,
        CASE
            WHEN d.id IS NULL THEN k.meeting_status
            WHEN d.won THEN 'won'
            WHEN d.stage = 'closed_lost' THEN 'lost'
            ELSE 'open'
        END AS status,
        coalesce(d.value, 0) AS amount
    FROM (
        SELECT * FROM meeting_deals
        UNION ALL
        SELECT * FROM deal_keys
    ) AS k
    LEFT JOIN crm.deals AS d ON d.client_id = k.client_id AND d.id = k.deal_id
    ORDER BY k.client_id, k.key, d.id NULLS LAST
),

pushed_leads AS (
    SELECT DISTINCT
        l.client_id,
        l.id,
        l.org
    FROM live_leads AS l
    INNER JOIN crm_deals AS cd ON cd.client_id = l.client_id AND cd.lead_id = l.id
)

SELECT
    pl.client_id,
    'contact' AS kind,
    'acrm-lead-' || pl.id AS key,
    NULL::text AS status,
    NULL::numeric AS amount
FROM pushed_leads AS pl
UNION ALL
SELECT DISTINCT
    pl.client_id,
    'organisation' AS kind,
    CASE
        WHEN length(pl.org) <= 180 THEN 'acrm-org-' || pl.org
        ELSE 'acrm-org-sha256-' || encode(sha256(convert_to(pl.org, 'UTF8')), 'hex')
    END AS key,
    NULL::text AS status,
    NULL::numeric AS amount
FROM pushed_leads AS pl
WHERE pl.org IS NOT NULL
UNION ALL
SELECT
    cd.client_id,
    'deal' AS kind,
    cd.key,
    cd.status,
    cd.amount
FROM crm_deals AS cd
ORDER BY client_id, kind, key;

-- name: key_fields
-- Where a connected CRM keeps our keys (property or field per kind) and our stages' ids.
SELECT
    cfg.external_key_fields,
    cfg.stage_map
FROM crm.client_crm_configs AS cfg
WHERE cfg.id = %(config_id)s;

-- name: confirm_upcoming
-- App code at work: the next few upcoming meetings of each client, not yet confirmed and
-- without an outcome, are confirmed now (the triggers set confirmed_at and queue a push).
WITH
next_meetings AS (
    SELECT
        m2.client_id,
        m2.id,
        row_number() OVER (
            PARTITION BY m2.client_id ORDER BY m2.scheduled_at, m2.id
        ) AS n
    FROM crm.meetings AS m2
    WHERE
        m2.client_id = any(%(client_ids)s::uuid[])
        AND m2.deleted_at IS NULL
        AND NOT m2.confirmed
        AND m2.meeting_outcome IS NULL
        AND m2.scheduled_at > now()
)

UPDATE crm.meetings AS m
SET confirmed = TRUE
FROM next_meetings AS n
WHERE m.client_id = n.client_id AND m.id = n.id AND n.n <= %(per_client)s
RETURNING m.client_id, m.id;
