-- Every write of crm.activities is checked before its constraints see it (docs/lifecycle.md,
-- "Errors"); the same shape as clients__validate.sql. channel is text with a CHECK listing the
-- crm.channel_type labels (migration 0013), so a bad one reaches this trigger.

CREATE OR REPLACE FUNCTION crm_private.tg_activities__validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_insert boolean := TG_OP = 'INSERT';
    v_row jsonb;
    v_column text;
    v_meant text;
BEGIN
    IF pg_catalog.num_nulls(
        NEW.id, NEW.client_id, NEW.lead_id, NEW.channel, NEW.activity_type, NEW.occurred_at,
        NEW.created_at, NEW.updated_at
    ) > 0 THEN
        v_column := crm_private.refused_null('activities', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'not_null_violation',
            MESSAGE = crm_private.refusal_message(
                'activities', NEW.id, v_column, NULL, 'is NULL, but it is required'
            ),
            HINT = crm_private.null_hint('activities', v_column),
            COLUMN = v_column, TABLE = 'activities', SCHEMA = 'crm';
    END IF;

    IF (
        v_insert
        OR NEW.lead_id IS DISTINCT FROM OLD.lead_id
        OR NEW.client_id IS DISTINCT FROM OLD.client_id
    ) THEN
        IF NOT EXISTS (
            SELECT 1
            FROM crm.leads AS l
            WHERE l.client_id = NEW.client_id AND l.id = NEW.lead_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'activities', NEW.id, 'lead_id', NEW.lead_id::text,
                    pg_catalog.format('is not a lead of client %s', NEW.client_id)
                ),
                DETAIL = crm_private.refusal_rule(
                    'activities', 'activities_client_id_lead_id_fkey'
                ),
                HINT = 'Use the id of a lead of the same client (crm.leads.client_id).',
                COLUMN = 'lead_id', TABLE = 'activities', SCHEMA = 'crm',
                CONSTRAINT = 'activities_client_id_lead_id_fkey';
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
                    'activities', NEW.id, 'campaign_id', NEW.campaign_id::text,
                    pg_catalog.format('is not a campaign of client %s', NEW.client_id)
                ),
                DETAIL = crm_private.refusal_rule(
                    'activities', 'activities_client_id_campaign_id_fkey'
                ),
                HINT = 'Use the id of a campaign of the same client (crm.campaigns.client_id), or '
                    'NULL.',
                COLUMN = 'campaign_id', TABLE = 'activities', SCHEMA = 'crm',
                CONSTRAINT = 'activities_client_id_campaign_id_fkey';
        END IF;
    END IF;

    IF NEW.channel NOT IN ('email', 'sms', 'linkedin', 'voice', 'mail') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'activities', NEW.id, 'channel', NEW.channel, 'is not an accepted value'
            ),
            DETAIL = crm_private.refusal_rule('activities', 'activities_channel_check'),
            HINT = crm_private.refusal_choices(
                'activities', 'activities_channel_check', NEW.channel
            ),
            COLUMN = 'channel', TABLE = 'activities', SCHEMA = 'crm',
            CONSTRAINT = 'activities_channel_check';
    END IF;

    IF (v_insert OR NEW.activity_type IS DISTINCT FROM OLD.activity_type)
        AND NEW.activity_type !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        v_meant := pg_catalog.btrim(
            pg_catalog.regexp_replace(
                pg_catalog.lower(NEW.activity_type), '[^a-z0-9_]+', '_', 'g'
            ),
            '_'
        );
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'activities', NEW.id, 'activity_type', NEW.activity_type,
                CASE
                    WHEN pg_catalog.length(NEW.activity_type) > 63
                        THEN pg_catalog.format(
                            'is %s characters long', pg_catalog.length(NEW.activity_type)
                        )
                    ELSE 'is not lower snake_case'
                END
            ),
            DETAIL = crm_private.refusal_rule('activities', 'activities_activity_type_check'),
            HINT = 'Use a-z, 0-9 and _, starting with a letter, at most 63 characters, e.g. '
                'touch, sent, reply, call, voicemail, connection_request.' || CASE
                    WHEN v_meant ~ '^[a-z][a-z0-9_]{0,62}$'
                        THEN pg_catalog.format(' Did you mean %s?', v_meant)
                    ELSE ''
                END,
            COLUMN = 'activity_type', TABLE = 'activities', SCHEMA = 'crm',
            CONSTRAINT = 'activities_activity_type_check';
    END IF;

    IF NOT (
        least(NEW.occurred_at, NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
        AND greatest(NEW.occurred_at, NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
    ) THEN
        v_row := pg_catalog.to_jsonb(NEW);
        v_column := crm_private.refused_timestamp('activities', v_row);
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'activities', NEW.id, v_column, (v_row ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule('activities', 'activities_timestamps_check'),
            HINT = crm_private.timestamp_hint('activities', v_column),
            COLUMN = v_column, TABLE = 'activities', SCHEMA = 'crm',
            CONSTRAINT = 'activities_timestamps_check';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_activities__validate() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.activities, before the others): refuses what the
constraints would, naming the field and its value, with a hint: a required column left NULL
(23502); a lead or campaign that is not the client''s (23503); a channel that is not a
crm.channel_type label, an activity_type that is not lower snake_case, a time outside
crm_private.timestamp_window() (23514).';

REVOKE ALL ON FUNCTION crm_private.tg_activities__validate() FROM public;

CREATE OR REPLACE TRIGGER _080_validate
BEFORE INSERT OR UPDATE ON crm.activities
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_activities__validate();
