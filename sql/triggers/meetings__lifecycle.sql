-- The meeting lifecycle, enforced on every write of crm.meetings (see docs/lifecycle.md):
-- booking defaults and attribution, lifecycle timestamps set once, outcome effects,
-- reschedules, and the impossible states rejected with a SQLSTATE, the field, its value and
-- a hint.

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
BEGIN
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
        ) OR EXISTS (
            SELECT 1
            FROM crm.campaigns AS c
            WHERE c.client_id = NEW.client_id AND c.id = NEW.campaign_id
        );
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
        IF v_outcome_changed AND NEW.meeting_outcome IN ('good', 'bad', 'no_show', 'pending')
            AND NEW.scheduled_at > v_now THEN
            RAISE EXCEPTION 'meeting %: meeting_outcome % needs a past scheduled_at, but it is %',
                NEW.id, NEW.meeting_outcome, NEW.scheduled_at
                USING ERRCODE = 'check_violation',
                      COLUMN = 'meeting_outcome', TABLE = 'meetings', SCHEMA = 'crm',
                      HINT = 'Record good, bad, no_show or pending once the meeting has started; a '
                          'meeting still to come can only be cancelled or rescheduled.';
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
                    NEW.meeting_notes := concat_ws(
                        E'\n',
                        NEW.meeting_notes,
                        'Cancelled: ' || coalesce(NEW.cancellation_reason, 'no reason given')
                    );
                ELSE
                    NULL;  -- rescheduled (counted above) or cleared (NULL)
            END CASE;
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
            IF NEW.showed_up IS TRUE AND NEW.meeting_outcome IS NULL THEN
                NEW.meeting_outcome := 'pending';  -- the default after a show
            END IF;
        END IF;
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
