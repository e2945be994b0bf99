-- Every write of crm.leads is checked before its constraints see it (docs/lifecycle.md,
-- "Errors"); the same shape as clients__validate.sql. A second live lead with the same email
-- is refused here too (23505), so the check runs on INSERT: a writer that upserts leads by
-- email uses MERGE, or looks the lead up first, rather than INSERT ... ON CONFLICT.

CREATE OR REPLACE FUNCTION crm_private.tg_leads__validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_insert boolean := TG_OP = 'INSERT';
    v_row jsonb;
    v_column text;
    v_other uuid;
BEGIN
    IF pg_catalog.num_nulls(
        NEW.id, NEW.client_id, NEW.status, NEW.meeting_booked, NEW.created_at, NEW.updated_at
    ) > 0 THEN
        v_column := crm_private.refused_null('leads', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'not_null_violation',
            MESSAGE = crm_private.refusal_message(
                'leads', NEW.id, v_column, NULL, 'is NULL, but it is required'
            ),
            HINT = crm_private.null_hint('leads', v_column),
            COLUMN = v_column, TABLE = 'leads', SCHEMA = 'crm';
    END IF;

    IF (v_insert OR NEW.client_id IS DISTINCT FROM OLD.client_id) THEN
        IF NOT EXISTS (
            SELECT 1 FROM crm.clients AS c WHERE c.id = NEW.client_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'leads', NEW.id, 'client_id', NEW.client_id::text, 'is not a client'
                ),
                DETAIL = crm_private.refusal_rule('leads', 'leads_client_id_fkey'),
                HINT = 'Use the id of a row of crm.clients.',
                COLUMN = 'client_id', TABLE = 'leads', SCHEMA = 'crm',
                CONSTRAINT = 'leads_client_id_fkey';
        END IF;
    END IF;
    IF NEW.campaign_id IS NOT NULL AND (
        v_insert
        OR NEW.campaign_id IS DISTINCT FROM OLD.campaign_id
        OR NEW.client_id IS DISTINCT FROM OLD.client_id
    ) THEN
        IF NOT EXISTS (
            SELECT 1
            FROM crm.campaigns AS c
            WHERE c.client_id = NEW.client_id AND c.id = NEW.campaign_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'leads', NEW.id, 'campaign_id', NEW.campaign_id::text,
                    pg_catalog.format('is not a campaign of client %s', NEW.client_id)
                ),
                DETAIL = crm_private.refusal_rule('leads', 'leads_client_id_campaign_id_fkey'),
                HINT = 'Use the id of a campaign of the same client (crm.campaigns.client_id), or '
                    'NULL.',
                COLUMN = 'campaign_id', TABLE = 'leads', SCHEMA = 'crm',
                CONSTRAINT = 'leads_client_id_campaign_id_fkey';
        END IF;
    END IF;

    IF (v_insert OR NEW.email IS DISTINCT FROM OLD.email)
        AND NOT (
            pg_catalog.length(NEW.email) <= 320 AND NEW.email ~ '^[^@[:space:]]+@[^@[:space:]]+$'
        ) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'leads', NEW.id, 'email', NEW.email,
                CASE
                    WHEN pg_catalog.length(NEW.email) > 320
                        THEN pg_catalog.format(
                            'is %s characters long', pg_catalog.length(NEW.email)
                        )
                    ELSE 'is not an email address'
                END
            ),
            DETAIL = crm_private.refusal_rule('leads', 'leads_email_check'),
            HINT = 'An email looks like name@domain: one @, no spaces, at most 320 characters. '
                'Leave it NULL when it is not known.',
            COLUMN = 'email', TABLE = 'leads', SCHEMA = 'crm',
            CONSTRAINT = 'leads_email_check';
    END IF;
    IF (v_insert OR NEW.status IS DISTINCT FROM OLD.status)
        AND NEW.status NOT IN (
            'new', 'contacted', 'engaged', 'meeting_booked', 'qualified', 'disqualified',
            'customer', 'unsubscribed', 'bounced'
        ) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'leads', NEW.id, 'status', NEW.status, 'is not a lead status'
            ),
            DETAIL = crm_private.refusal_rule('leads', 'leads_status_check'),
            HINT = crm_private.refusal_choices('leads', 'leads_status_check', NEW.status),
            COLUMN = 'status', TABLE = 'leads', SCHEMA = 'crm',
            CONSTRAINT = 'leads_status_check';
    END IF;
    IF (
        v_insert
        OR NEW.meeting_booked IS DISTINCT FROM OLD.meeting_booked
        OR NEW.meeting_booked_at IS DISTINCT FROM OLD.meeting_booked_at
    ) AND NEW.meeting_booked <> (NEW.meeting_booked_at IS NOT NULL) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = CASE
                WHEN NEW.meeting_booked THEN crm_private.refusal_message(
                    'leads', NEW.id, 'meeting_booked', 'true', 'needs a meeting_booked_at'
                )
                ELSE crm_private.refusal_message(
                    'leads', NEW.id, 'meeting_booked_at', NEW.meeting_booked_at::text,
                    'is set, but meeting_booked is false'
                )
            END,
            DETAIL = crm_private.refusal_rule('leads', 'leads_meeting_booked_at_check'),
            HINT = 'Booking a meeting (INSERT INTO crm.meetings) sets meeting_booked and '
                'meeting_booked_at together; set both, or neither.',
            COLUMN = CASE
                WHEN NEW.meeting_booked THEN 'meeting_booked' ELSE 'meeting_booked_at'
            END,
            TABLE = 'leads', SCHEMA = 'crm',
            CONSTRAINT = 'leads_meeting_booked_at_check';
    END IF;

    IF NOT (
        least(NEW.meeting_booked_at, NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
        AND greatest(NEW.meeting_booked_at, NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
    ) THEN
        v_row := pg_catalog.to_jsonb(NEW);
        v_column := crm_private.refused_timestamp('leads', v_row);
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'leads', NEW.id, v_column, (v_row ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule('leads', 'leads_timestamps_check'),
            HINT = crm_private.timestamp_hint('leads', v_column),
            COLUMN = v_column, TABLE = 'leads', SCHEMA = 'crm',
            CONSTRAINT = 'leads_timestamps_check';
    END IF;

    -- One live lead per client and lower-cased email (the unique index
    -- leads_client_id_email_key): an index lookup, only when the key or liveness changed.
    IF NEW.email IS NOT NULL AND NEW.deleted_at IS NULL AND (
        v_insert
        OR pg_catalog.lower(NEW.email) IS DISTINCT FROM pg_catalog.lower(OLD.email)
        OR NEW.client_id IS DISTINCT FROM OLD.client_id
        OR OLD.deleted_at IS NOT NULL
    ) THEN
        SELECT l.id INTO v_other
        FROM crm.leads AS l
        WHERE l.client_id = NEW.client_id
          AND pg_catalog.lower(l.email) = pg_catalog.lower(NEW.email)
          AND l.deleted_at IS NULL
          AND l.email IS NOT NULL
          AND l.id <> NEW.id
        LIMIT 1;
        IF v_other IS NOT NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'unique_violation',
                MESSAGE = crm_private.refusal_message(
                    'leads', NEW.id, 'email', NEW.email,
                    pg_catalog.format(
                        'is already the email of live lead %s of client %s (compared '
                        'lower-cased)', v_other, NEW.client_id
                    )
                ),
                DETAIL = crm_private.refusal_rule('leads', 'leads_client_id_email_key'),
                HINT = pg_catalog.format(
                    'Update lead %1$s instead, or soft-delete it first: UPDATE crm.leads SET '
                    'deleted_at = now() WHERE id = %1$L.', v_other
                ),
                COLUMN = 'email', TABLE = 'leads', SCHEMA = 'crm',
                CONSTRAINT = 'leads_client_id_email_key';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_leads__validate() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.leads, before the others): refuses what the constraints
would, naming the field and its value, with a hint: a required column left NULL (23502); a
client or campaign that is not the client''s (23503); an email that is not name@domain or longer
than 320 characters, an unknown status, meeting_booked without meeting_booked_at or the other
way round, a time outside crm_private.timestamp_window() (23514); a second live lead of the
client with the same lower-cased email (23505).';

REVOKE ALL ON FUNCTION crm_private.tg_leads__validate() FROM public;

CREATE OR REPLACE TRIGGER _080_validate
BEFORE INSERT OR UPDATE ON crm.leads
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_leads__validate();
