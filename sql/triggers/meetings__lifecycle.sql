-- The meeting lifecycle, enforced on every write of crm.meetings (see docs/lifecycle.md):
-- booking defaults and attribution, lifecycle timestamps set once, outcome effects,
-- reschedules, and the impossible states rejected with a SQLSTATE, the field, its value and
-- a hint.
-- requires: refused_timestamp.sql, refusal_message.sql, refusal_rule.sql, timestamp_hint.sql,
-- requires: refusal_choices.sql

CREATE OR REPLACE FUNCTION crm_private.tg_meetings__lifecycle()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_old crm.meetings;
    v_now timestamptz := pg_catalog.now();
    v_lead_live boolean;
    v_campaign_ok boolean;
    v_showed_set boolean;
    v_outcome_changed boolean;
    v_held boolean;
    v_column text;
BEGIN
    -- Times outside crm_private.timestamp_window() (infinity included) are refused first,
    -- naming the column, before any arithmetic on them could fail (migration 0011).
    IF NOT (
        least(NEW.scheduled_at, NEW.booked_at, NEW.confirmed_at, NEW.reminder_sent_at, NEW.showed_up_confirmed_at, NEW.outcome_recorded_at, NEW.cancelled_at, NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
        AND greatest(NEW.scheduled_at, NEW.booked_at, NEW.confirmed_at, NEW.reminder_sent_at, NEW.showed_up_confirmed_at, NEW.outcome_recorded_at, NEW.cancelled_at, NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
    ) THEN
        v_column := crm_private.refused_timestamp('meetings', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'meetings', NEW.id, v_column,
                (pg_catalog.to_jsonb(NEW) ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule('meetings', 'meetings_timestamps_check'),
            HINT = crm_private.timestamp_hint('meetings', v_column),
            COLUMN = v_column, TABLE = 'meetings', SCHEMA = 'crm',
            CONSTRAINT = 'meetings_timestamps_check';
    END IF;

    -- Values the CHECK constraints would refuse, refused first with the field, the value and
    -- the accepted values (the constraints stay as the last line of defence).
    -- One test on the common path (every value fine); the checks below say which is not.
    IF NEW.meeting_type NOT IN ('discovery', 'demo', 'follow_up', 'close', 'onboarding', 'other')
        OR NEW.booked_by NOT IN ('ai', 'human', 'lead')
        OR NEW.booking_method NOT IN ('calendly', 'direct', 'phone')
        OR NEW.meeting_outcome NOT IN (
            'good', 'bad', 'rescheduled', 'no_show', 'cancelled', 'pending'
        )
        OR NEW.converting_channel NOT IN ('email', 'sms', 'linkedin', 'voice', 'mail')
        OR NEW.duration_minutes NOT BETWEEN 1 AND 1440
        OR NEW.deal_created AND NEW.deal_id IS NULL THEN
        IF NEW.meeting_type NOT IN ('discovery', 'demo', 'follow_up', 'close', 'onboarding', 'other') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'meeting_type', NEW.meeting_type, 'is not an accepted value'
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_meeting_type_check'),
                HINT = crm_private.refusal_choices('meetings', 'meetings_meeting_type_check', NEW.meeting_type),
                COLUMN = 'meeting_type', TABLE = 'meetings', SCHEMA = 'crm', CONSTRAINT = 'meetings_meeting_type_check';
        END IF;
        IF NEW.booked_by NOT IN ('ai', 'human', 'lead') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'booked_by', NEW.booked_by, 'is not an accepted value'
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_booked_by_check'),
                HINT = crm_private.refusal_choices('meetings', 'meetings_booked_by_check', NEW.booked_by),
                COLUMN = 'booked_by', TABLE = 'meetings', SCHEMA = 'crm', CONSTRAINT = 'meetings_booked_by_check';
        END IF;
        IF NEW.booking_method NOT IN ('calendly', 'direct', 'phone') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'booking_method', NEW.booking_method, 'is not an accepted value'
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_booking_method_check'),
                HINT = crm_private.refusal_choices('meetings', 'meetings_booking_method_check', NEW.booking_method),
                COLUMN = 'booking_method', TABLE = 'meetings', SCHEMA = 'crm', CONSTRAINT = 'meetings_booking_method_check';
        END IF;
        IF NEW.meeting_outcome NOT IN ('good', 'bad', 'rescheduled', 'no_show', 'cancelled', 'pending') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'meeting_outcome', NEW.meeting_outcome, 'is not an accepted value'
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_meeting_outcome_check'),
                HINT = crm_private.refusal_choices('meetings', 'meetings_meeting_outcome_check', NEW.meeting_outcome),
                COLUMN = 'meeting_outcome', TABLE = 'meetings', SCHEMA = 'crm', CONSTRAINT = 'meetings_meeting_outcome_check';
        END IF;
        IF NEW.converting_channel NOT IN ('email', 'sms', 'linkedin', 'voice', 'mail') THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'converting_channel', NEW.converting_channel, 'is not an accepted value'
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_converting_channel_check'),
                HINT = crm_private.refusal_choices('meetings', 'meetings_converting_channel_check', NEW.converting_channel),
                COLUMN = 'converting_channel', TABLE = 'meetings', SCHEMA = 'crm', CONSTRAINT = 'meetings_converting_channel_check';
        END IF;
        IF NEW.duration_minutes NOT BETWEEN 1 AND 1440 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'duration_minutes', NEW.duration_minutes::text,
                    'is not between 1 and 1440'
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_duration_minutes_check'),
                HINT = 'Give the length in whole minutes, 1 to 1440 (one day), or leave it out to use '
                    'the meeting type''s default.',
                COLUMN = 'duration_minutes', TABLE = 'meetings', SCHEMA = 'crm',
                CONSTRAINT = 'meetings_duration_minutes_check';
        END IF;
        IF NEW.deal_created AND NEW.deal_id IS NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'deal_created', 'true', 'needs a deal_id'
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_deal_created_check'),
                HINT = 'Set deal_id to the deal made from the meeting in the same write (a good '
                    'outcome does both when the client auto-creates deals).',
                COLUMN = 'deal_created', TABLE = 'meetings', SCHEMA = 'crm',
                CONSTRAINT = 'meetings_deal_created_check';
        END IF;
    END IF;
    IF NEW.converting_activity_id IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.converting_activity_id IS DISTINCT FROM OLD.converting_activity_id) THEN
        -- (nested: a condition with a subquery is a full query, run only when needed)
        IF NOT EXISTS (
            SELECT 1
            FROM crm.activities AS x
            WHERE x.client_id = NEW.client_id AND x.id = NEW.converting_activity_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'converting_activity_id', NEW.converting_activity_id::text,
                    pg_catalog.format('is not one of client %s''s activities', NEW.client_id)
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_client_id_converting_activity_id_fkey'),
                HINT = 'Use the id of a touch (crm.activities) of the same client, or leave it out to use the lead''s last touch.',
                COLUMN = 'converting_activity_id', TABLE = 'meetings', SCHEMA = 'crm', CONSTRAINT = 'meetings_client_id_converting_activity_id_fkey';
        END IF;
    END IF;
    IF NEW.deal_id IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.deal_id IS DISTINCT FROM OLD.deal_id) THEN
        -- (nested: a condition with a subquery is a full query, run only when needed)
        IF NOT EXISTS (
            SELECT 1
            FROM crm.deals AS x
            WHERE x.client_id = NEW.client_id AND x.id = NEW.deal_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'meetings', NEW.id, 'deal_id', NEW.deal_id::text,
                    pg_catalog.format('is not one of client %s''s deals', NEW.client_id)
                ),
                DETAIL = crm_private.refusal_rule('meetings', 'meetings_client_id_deal_id_fkey'),
                HINT = 'Use the id of a deal of the same client, or NULL.',
                COLUMN = 'deal_id', TABLE = 'meetings', SCHEMA = 'crm', CONSTRAINT = 'meetings_client_id_deal_id_fkey';
        END IF;
    END IF;

    -- The lead (and campaign) must belong to the meeting's client.
    IF TG_OP = 'INSERT' THEN
        -- Booking, in one query: the lead and campaign checks, the duration by meeting type,
        -- and attribution from the lead's touches up to booking (each only where not given).
        NEW.booked_at := coalesce(NEW.booked_at, NEW.created_at);
        SELECT
            l.deleted_at IS NULL,
            NEW.campaign_id IS NULL OR c.id IS NOT NULL,
            coalesce(
                NEW.duration_minutes,
                CASE NEW.meeting_type WHEN 'demo' THEN 45 WHEN 'onboarding' THEN 60 ELSE 30 END
            ),
            coalesce(NEW.converting_activity_id, t.last_id),
            CASE
                WHEN NEW.converting_activity_id IS NULL
                    THEN coalesce(NEW.converting_channel, t.last_channel)
                ELSE NEW.converting_channel
            END,
            coalesce(NEW.touches_before_booking, t.touches),
            coalesce(
                NEW.days_to_booking,
                pg_catalog.floor(
                    pg_catalog.date_part('epoch', NEW.booked_at - t.first_at) / 86400
                )::integer
            )
        INTO v_lead_live, v_campaign_ok, NEW.duration_minutes, NEW.converting_activity_id,
            NEW.converting_channel, NEW.touches_before_booking, NEW.days_to_booking
        FROM crm.leads AS l
        CROSS JOIN LATERAL (
            SELECT
                count(*)::integer AS touches,
                min(a.occurred_at) AS first_at,
                (array_agg(a.id ORDER BY a.occurred_at DESC, a.id DESC))[1] AS last_id,
                (array_agg(a.channel ORDER BY a.occurred_at DESC, a.id DESC))[1] AS last_channel
            FROM crm.activities AS a
            WHERE a.client_id = l.client_id
              AND a.lead_id = l.id
              AND a.deleted_at IS NULL
              AND a.occurred_at <= NEW.booked_at
        ) AS t
        LEFT JOIN crm.campaigns AS c ON c.client_id = NEW.client_id AND c.id = NEW.campaign_id
        WHERE l.client_id = NEW.client_id AND l.id = NEW.lead_id;
        IF NEW.converting_channel IS NULL AND NEW.converting_activity_id IS NOT NULL THEN
            -- A converting activity given without its channel.
            SELECT a.channel INTO NEW.converting_channel
            FROM crm.activities AS a
            WHERE a.client_id = NEW.client_id AND a.id = NEW.converting_activity_id;
        END IF;
        IF NEW.meeting_outcome = 'rescheduled' THEN
            NEW.rescheduled_count := greatest(NEW.rescheduled_count, 1);
        END IF;
    ELSE
        v_old := OLD;
        IF NEW.lead_id IS DISTINCT FROM OLD.lead_id OR NEW.client_id IS DISTINCT FROM OLD.client_id
            THEN
            SELECT l.deleted_at IS NULL INTO v_lead_live
            FROM crm.leads AS l
            WHERE l.client_id = NEW.client_id AND l.id = NEW.lead_id;
        ELSE
            v_lead_live := TRUE;
        END IF;
        v_campaign_ok := NEW.campaign_id IS NULL OR (
            NEW.campaign_id IS NOT DISTINCT FROM OLD.campaign_id
            AND NEW.client_id IS NOT DISTINCT FROM OLD.client_id
        );
        IF NOT v_campaign_ok THEN  -- (a subquery only when the campaign changed)
            v_campaign_ok := EXISTS (
                SELECT 1
                FROM crm.campaigns AS c
                WHERE c.client_id = NEW.client_id AND c.id = NEW.campaign_id
            );
        END IF;
    END IF;
    IF v_lead_live IS NULL THEN
        RAISE EXCEPTION 'meeting lead_id % is not a lead of client %', NEW.lead_id, NEW.client_id
            USING ERRCODE = 'foreign_key_violation',
                  COLUMN = 'lead_id', TABLE = 'meetings', SCHEMA = 'crm',
                  CONSTRAINT = 'meetings_client_id_lead_id_fkey',
                  HINT = 'Use the id of a lead of the same client (crm.leads.client_id).';
    ELSIF NOT v_lead_live THEN
        RAISE EXCEPTION 'meeting lead_id % names a soft-deleted lead', NEW.lead_id
            USING ERRCODE = 'foreign_key_violation',
                  COLUMN = 'lead_id', TABLE = 'meetings', SCHEMA = 'crm',
                  HINT = 'Restore the lead first (UPDATE crm.leads SET deleted_at = NULL).';
    ELSIF NOT v_campaign_ok THEN
        RAISE EXCEPTION 'meeting campaign_id % is not a campaign of client %',
            NEW.campaign_id, NEW.client_id
            USING ERRCODE = 'foreign_key_violation',
                  COLUMN = 'campaign_id', TABLE = 'meetings', SCHEMA = 'crm',
                  CONSTRAINT = 'meetings_client_id_campaign_id_fkey',
                  HINT = 'Use the id of a campaign of the same client, or NULL.';
    END IF;

    IF TG_OP = 'UPDATE' AND crm_private.meeting_reschedule_kind(OLD, NEW) = 'new'
        AND NEW.rescheduled_count IS NOT DISTINCT FROM OLD.rescheduled_count THEN
        NEW.rescheduled_count := OLD.rescheduled_count + 1;
    END IF;

    -- Outcomes (the spec's table). v_old is all NULL on INSERT.
    -- (A plain booking records neither, and skips all of this.)
    IF TG_OP = 'UPDATE' OR NEW.meeting_outcome IS NOT NULL OR NEW.showed_up IS NOT NULL THEN
        v_showed_set := NEW.showed_up IS DISTINCT FROM v_old.showed_up;
        v_outcome_changed := NEW.meeting_outcome IS DISTINCT FROM v_old.meeting_outcome;
        v_held := NEW.meeting_outcome IN ('good', 'bad', 'no_show', 'pending');
        IF v_outcome_changed AND v_held AND NEW.scheduled_at > v_now THEN
            RAISE EXCEPTION 'meeting %: meeting_outcome % needs a past scheduled_at, but it is %',
                NEW.id, NEW.meeting_outcome, NEW.scheduled_at
                USING ERRCODE = 'check_violation',
                      COLUMN = 'meeting_outcome', TABLE = 'meetings', SCHEMA = 'crm',
                      HINT = 'Record good, bad, no_show or pending once the meeting has started; a '
                          'meeting still to come can only be cancelled or rescheduled.';
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.scheduled_at IS DISTINCT FROM OLD.scheduled_at
            AND NEW.scheduled_at > v_now
            AND (
                v_held
                OR NEW.showed_up IS NOT NULL
                AND NEW.meeting_outcome IS DISTINCT FROM 'rescheduled'
            ) THEN
            RAISE EXCEPTION 'meeting %: scheduled_at cannot move to the future (%) once the '
                'meeting has taken place (meeting_outcome %, showed_up %)',
                NEW.id, NEW.scheduled_at, coalesce(NEW.meeting_outcome, 'NULL'),
                coalesce(NEW.showed_up::text, 'NULL')
                USING ERRCODE = 'check_violation',
                      COLUMN = 'scheduled_at', TABLE = 'meetings', SCHEMA = 'crm',
                      HINT = 'To book it again, set meeting_outcome = ''rescheduled'' together '
                          'with the new scheduled_at (or book a new meeting).';
        END IF;
        -- Leaving good: the deal created from the meeting must not stay open as if the
        -- meeting had gone well.
        IF v_outcome_changed AND OLD.meeting_outcome = 'good' AND NEW.deal_created THEN
            -- (nested: a condition with a subquery is a full query, run only when needed)
            IF EXISTS (
                    SELECT 1
                    FROM crm.deals AS d
                    WHERE d.client_id = NEW.client_id
                      AND d.id = NEW.deal_id
                      AND d.deleted_at IS NULL
                      AND d.stage NOT IN ('closed_won', 'closed_lost')
                ) THEN
                RAISE EXCEPTION 'meeting %: meeting_outcome cannot change from good to % while deal %, '
                    'created from it, is open', NEW.id, coalesce(NEW.meeting_outcome, 'NULL'),
                    NEW.deal_id
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          COLUMN = 'meeting_outcome', TABLE = 'meetings', SCHEMA = 'crm',
                          HINT = pg_catalog.format(
                              'Close the deal first (UPDATE crm.deals SET stage = ''closed_lost'', '
                              'lost_reason = ''other'' WHERE id = %L) or soft-delete it if it was '
                              'made by mistake (SET deleted_at = now()); then correct the outcome.',
                              NEW.deal_id
                          );
            END IF;
        END IF;
        IF v_showed_set AND NEW.showed_up IS NOT NULL AND NEW.scheduled_at > v_now THEN
            RAISE EXCEPTION 'meeting %: showed_up % needs a past scheduled_at, but it is %',
                NEW.id, NEW.showed_up::text, NEW.scheduled_at
                USING ERRCODE = 'check_violation',
                      COLUMN = 'showed_up', TABLE = 'meetings', SCHEMA = 'crm',
                      HINT = 'Attendance is recorded once the meeting has started.';
        END IF;
        IF v_outcome_changed THEN
            CASE NEW.meeting_outcome
                WHEN 'good', 'bad', 'pending' THEN
                    IF v_showed_set AND NEW.showed_up IS FALSE THEN
                        RAISE EXCEPTION 'meeting %: showed_up false contradicts meeting_outcome %',
                            NEW.id, NEW.meeting_outcome
                            USING ERRCODE = 'check_violation',
                                  COLUMN = 'showed_up', TABLE = 'meetings', SCHEMA = 'crm',
                                  CONSTRAINT = 'meetings_showed_up_check',
                                  HINT = 'Outcomes good, bad and pending set showed_up = true: '
                                      'leave showed_up out of the update.';
                    END IF;
                    NEW.showed_up := TRUE;
                WHEN 'no_show' THEN
                    IF v_showed_set AND NEW.showed_up IS TRUE THEN
                        RAISE EXCEPTION
                            'meeting %: showed_up true contradicts meeting_outcome no_show', NEW.id
                            USING ERRCODE = 'check_violation',
                                  COLUMN = 'showed_up', TABLE = 'meetings', SCHEMA = 'crm',
                                  CONSTRAINT = 'meetings_showed_up_check',
                                  HINT = 'Outcome no_show sets showed_up = false: leave showed_up '
                                      'out of the update.';
                    END IF;
                    NEW.showed_up := FALSE;
                WHEN 'cancelled' THEN
                    IF NEW.cancelled_at IS NOT DISTINCT FROM v_old.cancelled_at THEN
                        NEW.cancelled_at := v_now;
                    END IF;
                    -- A cancelled meeting did not take place: no attendance.
                    IF v_showed_set AND NEW.showed_up IS NOT NULL THEN
                        RAISE EXCEPTION
                            'meeting %: showed_up % contradicts meeting_outcome cancelled',
                            NEW.id, NEW.showed_up::text
                            USING ERRCODE = 'check_violation',
                                  COLUMN = 'showed_up', TABLE = 'meetings', SCHEMA = 'crm',
                                  HINT = 'A cancelled meeting has no attendance: leave showed_up '
                                      'out (it becomes NULL), or record no_show if the lead '
                                      'did not turn up.';
                    END IF;
                    NEW.showed_up := NULL;
                    NEW.meeting_notes := concat_ws(
                        E'\n',
                        NEW.meeting_notes,
                        'Cancelled: ' || coalesce(NEW.cancellation_reason, 'no reason given')
                    );
                WHEN 'rescheduled' THEN
                    NULL;  -- counted above; attendance of the old slot, if known, is kept
                ELSE
                    -- Cleared (a correction): back to not recorded, unless the writer says.
                    IF NOT v_showed_set THEN
                        NEW.showed_up := NULL;
                    END IF;
                    IF NEW.outcome_recorded_at IS NOT DISTINCT FROM v_old.outcome_recorded_at THEN
                        NEW.outcome_recorded_at := NULL;
                    END IF;
            END CASE;
            -- Un-cancelled (a correction): the cancellation time goes with it.
            IF v_old.meeting_outcome = 'cancelled'
                AND NEW.cancelled_at IS NOT DISTINCT FROM v_old.cancelled_at THEN
                NEW.cancelled_at := NULL;
            END IF;
            IF NEW.meeting_outcome IS NOT NULL AND NEW.meeting_outcome <> 'pending'
                AND NEW.outcome_recorded_at IS NOT DISTINCT FROM v_old.outcome_recorded_at THEN
                NEW.outcome_recorded_at := v_now;
            END IF;
        ELSIF v_showed_set THEN
            -- Attendance recorded without an outcome.
            IF NEW.showed_up IS TRUE AND NEW.meeting_outcome = 'no_show'
                OR NEW.showed_up IS FALSE AND NEW.meeting_outcome IN ('good', 'bad', 'pending') THEN
                RAISE EXCEPTION 'meeting %: showed_up % contradicts meeting_outcome %',
                    NEW.id, NEW.showed_up::text, NEW.meeting_outcome
                    USING ERRCODE = 'check_violation',
                          COLUMN = 'showed_up', TABLE = 'meetings', SCHEMA = 'crm',
                          CONSTRAINT = 'meetings_showed_up_check',
                          HINT = 'Record the outcome instead: it sets showed_up to match.';
            END IF;
            IF NEW.showed_up IS NOT NULL AND NEW.meeting_outcome = 'cancelled' THEN
                RAISE EXCEPTION 'meeting %: showed_up % contradicts meeting_outcome cancelled',
                    NEW.id, NEW.showed_up::text
                    USING ERRCODE = 'check_violation',
                          COLUMN = 'showed_up', TABLE = 'meetings', SCHEMA = 'crm',
                          HINT = 'A cancelled meeting has no attendance: if it took place after '
                              'all, record its outcome (good, bad, no_show or pending).';
            END IF;
            IF NEW.showed_up IS TRUE AND NEW.meeting_outcome IS NULL THEN
                NEW.meeting_outcome := 'pending';  -- the default after a show
            END IF;
        END IF;
    END IF;

    -- How the meeting went is recorded after it began.
    IF NEW.outcome_recorded_at < NEW.scheduled_at
        AND NEW.meeting_outcome IN ('good', 'bad', 'no_show', 'pending')
        AND (
            TG_OP = 'INSERT'
            OR NEW.outcome_recorded_at IS DISTINCT FROM OLD.outcome_recorded_at
            OR NEW.scheduled_at IS DISTINCT FROM OLD.scheduled_at
            OR v_outcome_changed
        ) THEN
        RAISE EXCEPTION 'meeting %: outcome_recorded_at % is before scheduled_at %',
            NEW.id, NEW.outcome_recorded_at, NEW.scheduled_at
            USING ERRCODE = 'check_violation',
                  COLUMN = 'outcome_recorded_at', TABLE = 'meetings', SCHEMA = 'crm',
                  HINT = 'An outcome of a meeting that took place (good, bad, no_show, pending) '
                      'is recorded at or after its scheduled_at: give a later '
                      'outcome_recorded_at, or leave it out to record it now.';
    END IF;

    -- Lifecycle flags set their timestamps once.
    IF NEW.confirmed AND NEW.confirmed_at IS NULL THEN
        NEW.confirmed_at := v_now;
    END IF;
    IF NEW.reminder_sent AND NEW.reminder_sent_at IS NULL THEN
        NEW.reminder_sent_at := v_now;
    END IF;
    IF NEW.showed_up IS NOT NULL AND NEW.showed_up_confirmed_at IS NULL THEN
        NEW.showed_up_confirmed_at := v_now;
    END IF;

    -- Counts are never negative.
    IF NEW.rescheduled_count < 0 OR NEW.touches_before_booking < 0 OR NEW.days_to_booking < 0 THEN
        RAISE EXCEPTION 'meeting %: counts must not be negative (rescheduled_count %, '
            'touches_before_booking %, days_to_booking %)',
            NEW.id, NEW.rescheduled_count, NEW.touches_before_booking, NEW.days_to_booking
            USING ERRCODE = 'check_violation', TABLE = 'meetings', SCHEMA = 'crm',
                  HINT = 'The lifecycle triggers maintain these counts: leave them out of '
                      'your writes, or give a value of 0 or more.';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_meetings__lifecycle() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.meetings): booking defaults and attribution, lifecycle
timestamps, outcome effects, reschedule count, and rejection of impossible states.';

REVOKE ALL ON FUNCTION crm_private.tg_meetings__lifecycle() FROM public;

CREATE OR REPLACE TRIGGER _200_lifecycle
BEFORE INSERT OR UPDATE ON crm.meetings
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_meetings__lifecycle();
