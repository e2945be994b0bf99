-- Named queries of the demo's data (python/agency_crm/demo/seed.py), loaded by name
-- (agency_crm.queries). They write crm.* rows the way app code does (role crm_app): plain
-- INSERTs and UPDATEs whose lifecycle triggers do the rest, and crm.reopen_deal. Many rows
-- go in one statement (arrays, unnested in order), so every row still passes its triggers.
-- Named placeholders only: %(name)s.

-- name: existing_clients
-- Which of these client ids exist already (soft-deleted ones too).
SELECT c.id
FROM crm.clients AS c
WHERE c.id = any(%(ids)s::uuid[])
ORDER BY c.id;

-- name: database_now
-- The transaction's now(): the lifecycle triggers refuse outcomes of meetings after it.
SELECT pg_catalog.now() AS now;

-- name: insert_clients
INSERT INTO crm.clients (
    id, name, default_currency, timezone, auto_create_deals, created_at
)
SELECT
    v.id,
    v.name,
    v.currency,
    v.timezone,
    TRUE AS auto_create_deals,
    v.created_at
FROM unnest(
    %(id)s::uuid[],
    %(name)s::text[],
    %(currency)s::text[],
    %(timezone)s::text[],
    %(created_at)s::timestamptz[]
) AS v (id, name, currency, timezone, created_at);

-- name: insert_campaigns
INSERT INTO crm.campaigns (id, client_id, name, created_at)
SELECT
    v.id,
    v.client_id,
    v.name,
    v.created_at
FROM unnest(
    %(id)s::uuid[],
    %(client_id)s::uuid[],
    %(name)s::text[],
    %(created_at)s::timestamptz[]
) AS v (id, client_id, name, created_at);

-- name: insert_leads
INSERT INTO crm.leads (
    id, client_id, campaign_id, email, first_name, last_name, company, title, phone, status,
    created_at
)
SELECT
    v.id,
    v.client_id,
    v.campaign_id,
    v.email,
    v.first_name,
    v.last_name,
    v.company,
    v.title,
    v.phone,
    v.status,
    v.created_at
FROM unnest(
    %(id)s::uuid[],
    %(client_id)s::uuid[],
    %(campaign_id)s::uuid[],
    %(email)s::text[],
    %(first_name)s::text[],
    %(last_name)s::text[],
    %(company)s::text[],
    %(title)s::text[],
    %(phone)s::text[],
    %(status)s::text[],
    %(created_at)s::timestamptz[]
) AS v (
    id, client_id, campaign_id, email, first_name, last_name, company, title, phone, status,
    created_at
);

-- name: insert_activities
INSERT INTO crm.activities (
    id, client_id, lead_id, campaign_id, channel, activity_type, occurred_at, created_at
)
SELECT
    v.id,
    v.client_id,
    v.lead_id,
    v.campaign_id,
    v.channel,
    v.activity_type,
    v.occurred_at,
    v.occurred_at AS created_at
FROM unnest(
    %(id)s::uuid[],
    %(client_id)s::uuid[],
    %(lead_id)s::uuid[],
    %(campaign_id)s::uuid[],
    %(channel)s::text[],
    %(activity_type)s::text[],
    %(occurred_at)s::timestamptz[]
) AS v (id, client_id, lead_id, campaign_id, channel, activity_type, occurred_at);

-- name: insert_meetings
-- A booking as the calendar sync writes it. NULL booked_at, duration_minutes: the triggers'
-- defaults (created_at, the meeting type's length); attribution is always the triggers'.
-- An outcome or deleted_at given: a meeting imported as it already stands; a deal_id: a
-- meeting booked for a deal that exists.
INSERT INTO crm.meetings (
    id, client_id, lead_id, campaign_id, scheduled_at, duration_minutes, meeting_type,
    booked_by, booking_method, meeting_link, booked_at, created_at, meeting_outcome,
    outcome_recorded_at, cancellation_reason, deleted_at, deal_id
)
SELECT
    v.id,
    v.client_id,
    v.lead_id,
    v.campaign_id,
    v.scheduled_at,
    v.duration_minutes,
    v.meeting_type,
    v.booked_by,
    v.booking_method,
    v.meeting_link,
    v.booked_at,
    v.created_at,
    v.meeting_outcome,
    v.outcome_recorded_at,
    v.cancellation_reason,
    v.deleted_at,
    v.deal_id
FROM unnest(
    %(id)s::uuid[],
    %(client_id)s::uuid[],
    %(lead_id)s::uuid[],
    %(campaign_id)s::uuid[],
    %(scheduled_at)s::timestamptz[],
    %(duration_minutes)s::integer[],
    %(meeting_type)s::text[],
    %(booked_by)s::text[],
    %(booking_method)s::text[],
    %(meeting_link)s::text[],
    %(booked_at)s::timestamptz[],
    %(created_at)s::timestamptz[],
    %(meeting_outcome)s::text[],
    %(outcome_recorded_at)s::timestamptz[],
    %(cancellation_reason)s::text[],
    %(deleted_at)s::timestamptz[],
    %(deal_id)s::uuid[]
) AS v (
    id, client_id, lead_id, campaign_id, scheduled_at, duration_minutes, meeting_type,
    booked_by, booking_method, meeting_link, booked_at, created_at, meeting_outcome,
    outcome_recorded_at, cancellation_reason, deleted_at, deal_id
);

-- name: confirm_meetings
-- The lead confirmed (the time it did).
UPDATE crm.meetings AS m
SET
    confirmed = TRUE,
    confirmed_at = v.at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(at)s::timestamptz[]
    ) AS v (client_id, id, at)
WHERE m.client_id = v.client_id AND m.id = v.id;

-- name: remind_meetings
-- The reminder went out (the time it did).
UPDATE crm.meetings AS m
SET
    reminder_sent = TRUE,
    reminder_sent_at = v.at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(at)s::timestamptz[]
    ) AS v (client_id, id, at)
WHERE m.client_id = v.client_id AND m.id = v.id;

-- name: move_meetings
-- The calendar moved the meeting: a new scheduled_at, nothing else.
UPDATE crm.meetings AS m
SET scheduled_at = v.scheduled_at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(scheduled_at)s::timestamptz[]
    ) AS v (client_id, id, scheduled_at)
WHERE m.client_id = v.client_id AND m.id = v.id;

-- name: record_attendance
-- Attendance ticked without an outcome (the outcome to be decided).
UPDATE crm.meetings AS m
SET
    showed_up = TRUE,
    showed_up_confirmed_at = v.at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(at)s::timestamptz[]
    ) AS v (client_id, id, at)
WHERE m.client_id = v.client_id AND m.id = v.id;

-- name: record_outcomes
-- An outcome as the rep records it, with the time they did. recorded_at NULL: the time is
-- left as it is (pending, or a cleared outcome). A meeting that took place gets its
-- attendance time unless it has one; a cancellation its time and reason; new_scheduled_at
-- given with rescheduled: the new time in the same write.
UPDATE crm.meetings AS m
SET
    meeting_outcome = v.outcome,
    outcome_recorded_at = coalesce(v.recorded_at, m.outcome_recorded_at),
    showed_up_confirmed_at = CASE
        WHEN v.outcome IN ('good', 'bad', 'no_show', 'pending')
            THEN coalesce(m.showed_up_confirmed_at, v.attended_at)
        ELSE m.showed_up_confirmed_at
    END,
    cancelled_at = CASE WHEN v.outcome = 'cancelled' THEN v.recorded_at ELSE m.cancelled_at END,
    cancellation_reason = CASE
        WHEN v.outcome = 'cancelled' THEN v.reason ELSE m.cancellation_reason
    END,
    no_show_reason = CASE WHEN v.outcome = 'no_show' THEN v.reason ELSE m.no_show_reason END,
    scheduled_at = coalesce(v.new_scheduled_at, m.scheduled_at),
    next_steps = coalesce(v.next_steps, m.next_steps)
FROM
    unnest(
        %(client_id)s::uuid[],
        %(id)s::uuid[],
        %(outcome)s::text[],
        %(recorded_at)s::timestamptz[],
        %(attended_at)s::timestamptz[],
        %(reason)s::text[],
        %(new_scheduled_at)s::timestamptz[],
        %(next_steps)s::text[]
    )
        AS v (
            client_id, id, outcome, recorded_at, attended_at, reason, new_scheduled_at, next_steps
        )
WHERE m.client_id = v.client_id AND m.id = v.id;

-- name: soft_delete_meetings
UPDATE crm.meetings AS m
SET deleted_at = v.at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(at)s::timestamptz[]
    ) AS v (client_id, id, at)
WHERE m.client_id = v.client_id AND m.id = v.id;

-- name: meeting_deals
-- The deal each meeting has now (made by the good outcome's trigger, or linked by it).
SELECT
    m.id,
    m.deal_id
FROM crm.meetings AS m
WHERE m.client_id = any(%(client_ids)s::uuid[]) AND m.id = any(%(ids)s::uuid[]);

-- name: insert_deals
-- A deal entered by hand (or imported): probability, stage_changed_at and currency NULL get
-- the triggers' defaults, as do the attribution columns.
INSERT INTO crm.deals (
    id, client_id, lead_id, meeting_id, name, value, stage, expected_close_date, closed_at,
    lost_reason, lost_notes, created_at
)
SELECT
    v.id,
    v.client_id,
    v.lead_id,
    v.meeting_id,
    v.name,
    v.value,
    v.stage::crm.deal_stage_type,
    v.expected_close_date,
    v.closed_at,
    v.lost_reason,
    v.lost_notes,
    v.created_at
FROM unnest(
    %(id)s::uuid[],
    %(client_id)s::uuid[],
    %(lead_id)s::uuid[],
    %(meeting_id)s::uuid[],
    %(name)s::text[],
    %(value)s::numeric[],
    %(stage)s::text[],
    %(expected_close_date)s::date[],
    %(closed_at)s::timestamptz[],
    %(lost_reason)s::text[],
    %(lost_notes)s::text[],
    %(created_at)s::timestamptz[]
) AS v (
    id, client_id, lead_id, meeting_id, name, value, stage, expected_close_date, closed_at,
    lost_reason, lost_notes, created_at
);

-- name: move_deals
-- A stage change at the time it happened (closing: closed_at too, a lost reason when lost);
-- value NULL keeps the deal's.
UPDATE crm.deals AS d
SET
    stage = v.stage::crm.deal_stage_type,
    stage_changed_at = v.at,
    closed_at = CASE WHEN v.stage IN ('closed_won', 'closed_lost') THEN v.at END,
    lost_reason = v.lost_reason,
    lost_notes = coalesce(v.lost_notes, d.lost_notes),
    value = coalesce(v.value, d.value)
FROM
    unnest(
        %(client_id)s::uuid[],
        %(id)s::uuid[],
        %(stage)s::text[],
        %(at)s::timestamptz[],
        %(lost_reason)s::text[],
        %(lost_notes)s::text[],
        %(value)s::numeric[]
    ) AS v (client_id, id, stage, at, lost_reason, lost_notes, value)
WHERE d.client_id = v.client_id AND d.id = v.id;

-- name: close_deals_now
-- A stage change without a time: the triggers date it (now, or the last change if later).
UPDATE crm.deals AS d
SET
    stage = v.stage::crm.deal_stage_type,
    lost_reason = v.lost_reason
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(stage)s::text[], %(lost_reason)s::text[]
    ) AS v (client_id, id, stage, lost_reason)
WHERE d.client_id = v.client_id AND d.id = v.id;

-- name: set_deal_terms
-- The rep enters or revises the amount and the expected close date.
UPDATE crm.deals AS d
SET
    value = v.value,
    expected_close_date = v.expected_close_date
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(value)s::numeric[],
        %(expected_close_date)s::date[]
    ) AS v (client_id, id, value, expected_close_date)
WHERE d.client_id = v.client_id AND d.id = v.id;

-- name: set_deal_probability
-- The rep's own win probability for an open deal.
UPDATE crm.deals AS d
SET probability = v.probability
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(probability)s::integer[]
    ) AS v (client_id, id, probability)
WHERE d.client_id = v.client_id AND d.id = v.id;

-- name: backdate_deals
-- A correction: the deal began earlier than it was entered.
UPDATE crm.deals AS d
SET created_at = v.created_at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(created_at)s::timestamptz[]
    ) AS v (client_id, id, created_at)
WHERE d.client_id = v.client_id AND d.id = v.id;

-- name: soft_delete_deals
UPDATE crm.deals AS d
SET deleted_at = v.at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(at)s::timestamptz[]
    ) AS v (client_id, id, at)
WHERE d.client_id = v.client_id AND d.id = v.id;

-- name: stage_change_reason
-- Why the next stage changes of this transaction are made ('' : none), kept in the history.
SELECT pg_catalog.set_config('crm.stage_change_reason', %(reason)s, TRUE);

-- name: reopen_deal
SELECT d.id
FROM crm.reopen_deal(%(deal_id)s, %(reason)s, %(stage)s::crm.deal_stage_type) AS d;

-- name: set_lead_status
UPDATE crm.leads AS l
SET status = v.status
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(status)s::text[]
    ) AS v (client_id, id, status)
WHERE l.client_id = v.client_id AND l.id = v.id;

-- name: soft_delete_leads
UPDATE crm.leads AS l
SET deleted_at = v.at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(at)s::timestamptz[]
    ) AS v (client_id, id, at)
WHERE l.client_id = v.client_id AND l.id = v.id;

-- name: soft_delete_activities
UPDATE crm.activities AS a
SET deleted_at = v.at
FROM
    unnest(
        %(client_id)s::uuid[], %(id)s::uuid[], %(at)s::timestamptz[]
    ) AS v (client_id, id, at)
WHERE a.client_id = v.client_id AND a.id = v.id;

-- name: summary_counts
-- What the seed made, per kind of row, for these clients.
SELECT
    (
        SELECT count(*) FROM crm.clients AS c
        WHERE c.id = any(%(client_ids)s::uuid[])
    ) AS clients,
    (
        SELECT count(*) FROM crm.campaigns AS c
        WHERE c.client_id = any(%(client_ids)s::uuid[])
    ) AS campaigns,
    (
        SELECT count(*) FROM crm.leads AS l
        WHERE l.client_id = any(%(client_ids)s::uuid[])
    ) AS leads,
    (
        SELECT count(*) FROM crm.activities AS a
        WHERE a.client_id = any(%(client_ids)s::uuid[])
    ) AS activities,
    (
        SELECT count(*) FROM crm.meetings AS m
        WHERE m.client_id = any(%(client_ids)s::uuid[])
    ) AS meetings,
    (
        SELECT count(*)
        FROM crm.meetings AS m
        WHERE m.client_id = any(%(client_ids)s::uuid[]) AND m.deleted_at IS NULL
    ) AS live_meetings,
    (
        SELECT count(*) FROM crm.deals AS d
        WHERE d.client_id = any(%(client_ids)s::uuid[])
    ) AS deals,
    (
        SELECT count(*)
        FROM crm.deals AS d
        WHERE d.client_id = any(%(client_ids)s::uuid[]) AND d.deleted_at IS NULL
    ) AS live_deals,
    (
        SELECT count(*)
        FROM crm.deal_stage_history AS h
        WHERE h.client_id = any(%(client_ids)s::uuid[])
    ) AS stage_changes,
    (
        SELECT count(*)
        FROM crm.meeting_reschedules AS r
        WHERE r.client_id = any(%(client_ids)s::uuid[])
    ) AS reschedules;

-- name: exercised_rules
-- How often the data of these clients shows each lifecycle rule (docs/lifecycle.md) at work:
-- one row per rule, counted from what the triggers left in the tables (docs/demo.md says
-- what each count looks for).
WITH
meetings AS (
    SELECT m.*
    FROM crm.meetings AS m
    WHERE m.client_id = any(%(client_ids)s::uuid[])
),

deals AS (
    SELECT d.*
    FROM crm.deals AS d
    WHERE d.client_id = any(%(client_ids)s::uuid[])
),

leads AS (
    SELECT l.*
    FROM crm.leads AS l
    WHERE l.client_id = any(%(client_ids)s::uuid[])
),

history AS (
    SELECT
        h.*,
        h.changed_at - lag(h.changed_at) OVER (
            PARTITION BY h.client_id, h.deal_id ORDER BY h.seq
        ) AS since_previous,
        row_number() OVER (
            PARTITION BY h.client_id, h.deal_id ORDER BY h.seq DESC
        ) AS from_latest
    FROM crm.deal_stage_history AS h
    WHERE h.client_id = any(%(client_ids)s::uuid[])
),

reschedules AS (
    SELECT
        r.*,
        m.meeting_outcome,
        m.scheduled_at,
        m.meeting_notes
    FROM crm.meeting_reschedules AS r
    INNER JOIN meetings AS m ON m.client_id = r.client_id AND m.id = r.meeting_id
),

-- the lead's live touches up to the booking, as they stand now
at_booking AS (
    SELECT
        m.client_id,
        m.id,
        t.touches,
        t.first_at,
        t.last_id,
        t.last_channel
    FROM meetings AS m
    CROSS JOIN LATERAL (
        SELECT
            count(*) AS touches,
            min(a.occurred_at) AS first_at,
            (array_agg(a.id ORDER BY a.occurred_at DESC, a.id DESC))[1] AS last_id,
            (array_agg(a.channel ORDER BY a.occurred_at DESC, a.id DESC))[1] AS last_channel
        FROM crm.activities AS a
        WHERE
            a.client_id = m.client_id
            AND a.lead_id = m.lead_id
            AND a.deleted_at IS NULL
            AND a.occurred_at <= m.booked_at
    ) AS t
),

-- the lead's live touches up to the deal's creation, as they stand now
at_deal AS (
    SELECT
        d.client_id,
        d.id,
        t.touches,
        t.first_channel
    FROM deals AS d
    CROSS JOIN LATERAL (
        SELECT
            count(*) AS touches,
            (array_agg(a.channel ORDER BY a.occurred_at, a.id))[1] AS first_channel
        FROM crm.activities AS a
        WHERE
            a.client_id = d.client_id
            AND a.lead_id = d.lead_id
            AND a.deleted_at IS NULL
            AND a.occurred_at <= d.created_at
    ) AS t
),

meeting_deal AS (
    SELECT
        d.*,
        m.outcome_recorded_at,
        m.meeting_outcome,
        m.converting_activity_id AS meeting_converting_activity_id,
        m.converting_channel AS meeting_converting_channel
    FROM deals AS d
    INNER JOIN meetings AS m
        ON
            m.client_id = d.client_id
            AND m.id = d.meeting_id
            AND m.deal_id = d.id
            AND m.deal_created
)

SELECT
    r.rule,
    r.times
FROM (
    VALUES
    (
        1, 'meeting.booked_at_from_created_at',
        (
            SELECT count(*) FROM meetings AS m
            WHERE m.booked_at = m.created_at
        )
    ),
    (
        2, 'meeting.duration_from_type',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE m.duration_minutes = CASE m.meeting_type
                WHEN 'demo' THEN 45 WHEN 'onboarding' THEN 60 ELSE 30
            END
        )
    ),
    (
        3, 'meeting.converting_touch_from_activities',
        (
            SELECT count(*)
            FROM meetings AS m
            INNER JOIN at_booking AS t ON t.client_id = m.client_id AND t.id = m.id
            WHERE
                m.converting_activity_id = t.last_id
                AND m.converting_channel = t.last_channel
        )
    ),
    (
        4, 'meeting.touch_counts_from_activities',
        (
            SELECT count(*)
            FROM meetings AS m
            INNER JOIN at_booking AS t ON t.client_id = m.client_id AND t.id = m.id
            WHERE
                t.touches > 0
                AND m.touches_before_booking = t.touches
                AND m.days_to_booking
                = floor(extract(EPOCH FROM m.booked_at - t.first_at) / 86400)
        )
    ),
    (
        5, 'meeting.booked_without_touches',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.touches_before_booking = 0
                AND m.days_to_booking IS NULL
                AND m.converting_activity_id IS NULL
        )
    ),
    (
        6, 'lead.meeting_booked_at_first_booking',
        (
            SELECT count(*)
            FROM leads AS l
            WHERE
                l.meeting_booked
                AND l.meeting_booked_at = (
                    SELECT min(m.booked_at)
                    FROM meetings AS m
                    WHERE m.client_id = l.client_id AND m.lead_id = l.id
                )
        )
    ),
    (
        7, 'lead.status_meeting_booked',
        (
            SELECT count(*) FROM leads AS l
            WHERE l.meeting_booked AND l.status = 'meeting_booked'
        )
    ),
    (
        8, 'lead.status_qualified_kept',
        (
            SELECT count(*) FROM leads AS l
            WHERE l.meeting_booked AND l.status = 'qualified'
        )
    ),
    (
        9, 'meeting.inserted_deleted_books_nothing',
        (
            SELECT count(*)
            FROM meetings AS m
            INNER JOIN leads AS l ON l.client_id = m.client_id AND l.id = m.lead_id
            WHERE m.deleted_at IS NOT NULL AND NOT l.meeting_booked
        )
    ),
    (
        10, 'meeting.inserted_rescheduled_counted',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_outcome = 'rescheduled'
                AND m.rescheduled_count >= 1
                AND NOT EXISTS (
                    SELECT 1
                    FROM reschedules AS r
                    WHERE r.client_id = m.client_id AND r.meeting_id = m.id
                )
        )
    ),
    (
        11, 'meeting.confirmed_at_set',
        (
            SELECT count(*) FROM meetings AS m
            WHERE m.confirmed AND m.confirmed_at IS NOT NULL
        )
    ),
    (
        12, 'meeting.reminder_sent_at_set',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE m.reminder_sent AND m.reminder_sent_at IS NOT NULL
        )
    ),
    (
        13, 'meeting.attendance_time_set',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE m.showed_up IS NOT NULL AND m.showed_up_confirmed_at IS NOT NULL
        )
    ),
    (
        14, 'meeting.good_means_showed_up',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_outcome = 'good'
                AND m.showed_up
                AND m.outcome_recorded_at >= m.scheduled_at
        )
    ),
    (
        15, 'meeting.bad_means_showed_up',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_outcome = 'bad'
                AND m.showed_up
                AND m.outcome_recorded_at >= m.scheduled_at
        )
    ),
    (
        16, 'meeting.no_show_means_absent',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_outcome = 'no_show'
                AND NOT m.showed_up
                AND m.outcome_recorded_at >= m.scheduled_at
        )
    ),
    (
        17, 'meeting.show_defaults_to_pending',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE m.meeting_outcome = 'pending' AND m.showed_up AND m.outcome_recorded_at IS NULL
        )
    ),
    (
        18, 'meeting.cancelled',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_outcome = 'cancelled'
                AND m.cancelled_at IS NOT NULL
                AND m.showed_up IS NULL
                AND position('Cancelled: ' || m.cancellation_reason IN m.meeting_notes) > 0
        )
    ),
    (
        19, 'meeting.cancelled_without_reason',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_outcome = 'cancelled'
                AND m.cancellation_reason IS NULL
                AND m.meeting_notes LIKE '%%Cancelled: no reason given%%'
        )
    ),
    (
        20, 'meeting.reschedule_by_time',
        (
            SELECT count(*)
            FROM reschedules AS r
            WHERE
                r.new_scheduled_at IS NOT NULL
                AND r.meeting_outcome IS DISTINCT FROM 'rescheduled'
                AND coalesce(r.meeting_notes, '') NOT LIKE '%%Cancelled:%%'
        )
    ),
    (
        21, 'meeting.reschedule_by_outcome',
        (
            SELECT count(*) FROM reschedules AS r
            WHERE r.new_scheduled_at IS NULL
        )
    ),
    (
        22, 'meeting.reschedule_both',
        (
            SELECT count(*)
            FROM reschedules AS r
            WHERE r.meeting_outcome = 'rescheduled' AND r.new_scheduled_at = r.scheduled_at
        )
    ),
    (
        23, 'meeting.rescheduled_count_follows',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.rescheduled_count > 0
                AND m.rescheduled_count = (
                    SELECT count(*)
                    FROM reschedules AS r
                    WHERE r.client_id = m.client_id AND r.meeting_id = m.id
                )
        )
    ),
    (
        24, 'meeting.rescheduled_keeps_no_show',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE m.meeting_outcome = 'rescheduled' AND m.showed_up IS FALSE
        )
    ),
    (
        25, 'meeting.correction_uncancelled',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_notes LIKE '%%Cancelled:%%'
                AND m.meeting_outcome IS DISTINCT FROM 'cancelled'
                AND m.cancelled_at IS NULL
        )
    ),
    (
        26, 'meeting.correction_no_show_to_held',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_outcome IN ('good', 'bad', 'pending')
                AND m.showed_up
                AND m.no_show_reason IS NOT NULL
        )
    ),
    (
        27, 'meeting.correction_from_good',
        (
            SELECT count(*)
            FROM meetings AS m
            INNER JOIN deals AS d ON d.client_id = m.client_id AND d.id = m.deal_id
            WHERE
                m.deal_created
                AND m.meeting_outcome IS DISTINCT FROM 'good'
                AND (d.deleted_at IS NOT NULL OR d.stage IN ('closed_won', 'closed_lost'))
        )
    ),
    (
        28, 'meeting.outcome_cleared',
        (
            SELECT count(*)
            FROM meetings AS m
            WHERE
                m.meeting_outcome IS NULL
                AND m.showed_up IS NULL
                AND m.outcome_recorded_at IS NULL
                AND m.showed_up_confirmed_at IS NOT NULL
        )
    ),
    (
        29, 'meeting.soft_deleted',
        (
            SELECT count(*)
            FROM meetings AS m
            INNER JOIN leads AS l ON l.client_id = m.client_id AND l.id = m.lead_id
            WHERE m.deleted_at IS NOT NULL AND l.meeting_booked
        )
    ),
    (
        30, 'meeting.good_with_deal_makes_none',
        (
            SELECT count(*)
            FROM meetings AS m
            INNER JOIN deals AS d ON d.client_id = m.client_id AND d.id = m.deal_id
            WHERE
                m.meeting_outcome = 'good'
                AND NOT m.deal_created
                AND d.meeting_id IS DISTINCT FROM m.id
        )
    ),
    (
        31, 'deal.auto_created',
        (
            SELECT count(*)
            FROM meeting_deal AS d
            WHERE
                d.created_at = d.outcome_recorded_at
                AND d.stage_changed_at >= d.created_at
                AND d.name LIKE '%% meeting)'
        )
    ),
    (
        32, 'deal.hand_made_linked',
        (
            SELECT count(*)
            FROM meeting_deal AS d
            WHERE
                d.meeting_outcome = 'good'
                AND d.created_at < d.outcome_recorded_at
                AND d.name NOT LIKE '%% meeting)'
        )
    ),
    (
        33, 'deal.currency_from_client',
        (
            SELECT count(*)
            FROM deals AS d
            INNER JOIN crm.clients AS c ON c.id = d.client_id
            WHERE d.currency = c.default_currency
        )
    ),
    (
        34, 'deal.touches_from_activities',
        (
            SELECT count(*)
            FROM deals AS d
            INNER JOIN at_deal AS t ON t.client_id = d.client_id AND t.id = d.id
            WHERE
                t.touches > 0
                AND d.touches_before_deal = t.touches
                AND d.first_touch_channel = t.first_channel
        )
    ),
    (
        35, 'deal.converting_touch_from_meeting',
        (
            SELECT count(*)
            FROM meeting_deal AS d
            WHERE
                d.converting_activity_id = d.meeting_converting_activity_id
                AND d.converting_channel = d.meeting_converting_channel
        )
    ),
    (
        36, 'deal.probability_from_stage',
        (
            SELECT count(*)
            FROM deals AS d
            WHERE
                d.stage NOT IN ('closed_won', 'closed_lost')
                AND d.probability = CASE d.stage
                    WHEN 'qualification' THEN 20 WHEN 'proposal' THEN 40
                    WHEN 'negotiation' THEN 60 WHEN 'verbal_commit' THEN 80 ELSE 90
                END
        )
    ),
    (
        37, 'deal.probability_given_kept',
        (
            SELECT count(*)
            FROM deals AS d
            WHERE
                d.stage NOT IN ('closed_won', 'closed_lost')
                AND d.probability <> CASE d.stage
                    WHEN 'qualification' THEN 20 WHEN 'proposal' THEN 40
                    WHEN 'negotiation' THEN 60 WHEN 'verbal_commit' THEN 80 ELSE 90
                END
        )
    ),
    (
        38, 'deal.history_first_row',
        (
            SELECT count(*) FROM history AS h
            WHERE h.from_stage IS NULL
        )
    ),
    (
        39, 'deal.stage_forward',
        (
            SELECT count(*)
            FROM history AS h
            WHERE h.to_stage > h.from_stage AND h.to_stage NOT IN ('closed_won', 'closed_lost')
        )
    ),
    (
        40, 'deal.stage_regression',
        (
            SELECT count(*)
            FROM history AS h
            WHERE h.to_stage < h.from_stage AND h.from_stage NOT IN ('closed_won', 'closed_lost')
        )
    ),
    (
        41, 'deal.stage_change_reason',
        (
            SELECT count(*)
            FROM history AS h
            WHERE h.reason IS NOT NULL AND h.from_stage NOT IN ('closed_won', 'closed_lost')
        )
    ),
    (
        42, 'deal.time_in_stage',
        (
            SELECT count(*)
            FROM history AS h
            WHERE h.from_stage IS NOT NULL AND h.time_in_from_stage = h.since_previous
        )
    ),
    (
        43, 'deal.stage_changed_at_is_history',
        (
            SELECT count(*)
            FROM deals AS d
            INNER JOIN history AS h
                ON h.client_id = d.client_id AND h.deal_id = d.id AND h.from_latest = 1
            WHERE d.stage_changed_at = h.changed_at AND d.stage = h.to_stage
        )
    ),
    (
        44, 'deal.closed_won',
        (
            SELECT count(*)
            FROM deals AS d
            WHERE
                d.stage = 'closed_won'
                AND d.won
                AND d.probability = 100
                AND d.closed_at = d.stage_changed_at
                AND d.days_to_close = floor(extract(EPOCH FROM d.closed_at - d.created_at) / 86400)
        )
    ),
    (
        45, 'deal.closed_lost',
        (
            SELECT count(*)
            FROM deals AS d
            WHERE
                d.stage = 'closed_lost'
                AND NOT d.won
                AND d.probability = 0
                AND d.lost_reason IS NOT NULL
                AND d.closed_at = d.stage_changed_at
                AND d.days_to_close = floor(extract(EPOCH FROM d.closed_at - d.created_at) / 86400)
        )
    ),
    (
        46, 'deal.inserted_closed',
        (
            SELECT count(*)
            FROM history AS h
            WHERE h.from_stage IS NULL AND h.to_stage IN ('closed_won', 'closed_lost')
        )
    ),
    (
        47, 'deal.reopened',
        (
            SELECT count(*)
            FROM history AS h
            WHERE
                h.from_stage IN ('closed_won', 'closed_lost')
                AND h.to_stage NOT IN ('closed_won', 'closed_lost')
                AND h.reason IS NOT NULL
        )
    ),
    (
        48, 'deal.closed_again_after_reopen',
        (
            SELECT count(DISTINCT h.deal_id)
            FROM history AS h
            INNER JOIN history AS later
                ON
                    later.client_id = h.client_id
                    AND later.deal_id = h.deal_id
                    AND later.seq > h.seq
            WHERE
                h.from_stage IN ('closed_won', 'closed_lost')
                AND h.to_stage NOT IN ('closed_won', 'closed_lost')
                AND later.to_stage IN ('closed_won', 'closed_lost')
        )
    ),
    (
        49, 'deal.created_at_moved_earlier',
        (
            SELECT count(*)
            FROM deals AS d
            INNER JOIN history AS h
                ON h.client_id = d.client_id AND h.deal_id = d.id AND h.from_stage IS NULL
            WHERE h.to_stage NOT IN ('closed_won', 'closed_lost') AND d.created_at < h.changed_at
        )
    ),
    (
        50, 'deal.soft_deleted',
        (
            SELECT count(*) FROM deals AS d
            WHERE d.deleted_at IS NOT NULL
        )
    ),
    (
        51, 'lead.soft_deleted',
        (
            SELECT count(*) FROM leads AS l
            WHERE l.deleted_at IS NOT NULL
        )
    ),
    (
        52, 'activity.soft_deleted',
        (
            SELECT count(*)
            FROM crm.activities AS a
            WHERE a.client_id = any(%(client_ids)s::uuid[]) AND a.deleted_at IS NOT NULL
        )
    )
) AS r (position, rule, times)
ORDER BY r.position;
