-- Every write of crm.meeting_reschedules is checked before its constraints see it
-- (docs/lifecycle.md, "Errors"); the same shape as clients__validate.sql. The meeting
-- lifecycle trigger writes this history; a refusal here means a writer bypassed it.

CREATE OR REPLACE FUNCTION crm_private.tg_meeting_reschedules__validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_insert boolean := TG_OP = 'INSERT';
    v_row jsonb;
    v_column text;
BEGIN
    IF pg_catalog.num_nulls(
        NEW.id, NEW.client_id, NEW.meeting_id, NEW.previous_scheduled_at, NEW.rescheduled_at,
        NEW.created_at
    ) > 0 THEN
        v_column := crm_private.refused_null('meeting_reschedules', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'not_null_violation',
            MESSAGE = crm_private.refusal_message(
                'meeting_reschedules', NEW.id, v_column, NULL, 'is NULL, but it is required'
            ),
            HINT = crm_private.null_hint('meeting_reschedules', v_column),
            COLUMN = v_column, TABLE = 'meeting_reschedules', SCHEMA = 'crm';
    END IF;

    IF (
        v_insert
        OR NEW.meeting_id IS DISTINCT FROM OLD.meeting_id
        OR NEW.client_id IS DISTINCT FROM OLD.client_id
    ) THEN
        IF NOT EXISTS (
            SELECT 1
            FROM crm.meetings AS m
            WHERE m.client_id = NEW.client_id AND m.id = NEW.meeting_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'meeting_reschedules', NEW.id, 'meeting_id', NEW.meeting_id::text,
                    pg_catalog.format('is not a meeting of client %s', NEW.client_id)
                ),
                DETAIL = crm_private.refusal_rule(
                    'meeting_reschedules', 'meeting_reschedules_client_id_meeting_id_fkey'
                ),
                HINT = 'Reschedule a meeting by changing crm.meetings.scheduled_at (or its outcome '
                    'to rescheduled): its lifecycle trigger writes this history.',
                COLUMN = 'meeting_id', TABLE = 'meeting_reschedules', SCHEMA = 'crm',
                CONSTRAINT = 'meeting_reschedules_client_id_meeting_id_fkey';
        END IF;
    END IF;

    IF NOT (
        least(NEW.previous_scheduled_at, NEW.new_scheduled_at, NEW.rescheduled_at, NEW.created_at)
        <@ crm_private.timestamp_window()
        AND greatest(
            NEW.previous_scheduled_at, NEW.new_scheduled_at, NEW.rescheduled_at, NEW.created_at
        ) <@ crm_private.timestamp_window()
    ) THEN
        v_row := pg_catalog.to_jsonb(NEW);
        v_column := crm_private.refused_timestamp('meeting_reschedules', v_row);
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'meeting_reschedules', NEW.id, v_column, (v_row ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule(
                'meeting_reschedules', 'meeting_reschedules_timestamps_check'
            ),
            HINT = crm_private.timestamp_hint('meeting_reschedules', v_column),
            COLUMN = v_column, TABLE = 'meeting_reschedules', SCHEMA = 'crm',
            CONSTRAINT = 'meeting_reschedules_timestamps_check';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_meeting_reschedules__validate() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.meeting_reschedules, before the others): refuses what
the constraints would, naming the field and its value, with a hint: a required column left NULL
(23502); a meeting_id that is not a meeting of the client (23503); a time outside
crm_private.timestamp_window() (23514).';

REVOKE ALL ON FUNCTION crm_private.tg_meeting_reschedules__validate() FROM public;

CREATE OR REPLACE TRIGGER _080_validate
BEFORE INSERT OR UPDATE ON crm.meeting_reschedules
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_meeting_reschedules__validate();
