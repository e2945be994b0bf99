-- Every write of crm.campaigns is checked before its constraints see it (docs/lifecycle.md,
-- "Errors"); the same shape as clients__validate.sql.

CREATE OR REPLACE FUNCTION crm_private.tg_campaigns__validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_insert boolean := TG_OP = 'INSERT';
    v_row jsonb;
    v_column text;
BEGIN
    IF pg_catalog.num_nulls(NEW.id, NEW.client_id, NEW.name, NEW.created_at, NEW.updated_at) > 0
        THEN
        v_column := crm_private.refused_null('campaigns', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'not_null_violation',
            MESSAGE = crm_private.refusal_message(
                'campaigns', NEW.id, v_column, NULL, 'is NULL, but it is required'
            ),
            HINT = crm_private.null_hint('campaigns', v_column),
            COLUMN = v_column, TABLE = 'campaigns', SCHEMA = 'crm';
    END IF;

    IF (v_insert OR NEW.client_id IS DISTINCT FROM OLD.client_id) THEN
        IF NOT EXISTS (
            SELECT 1 FROM crm.clients AS c WHERE c.id = NEW.client_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'campaigns', NEW.id, 'client_id', NEW.client_id::text, 'is not a client'
                ),
                DETAIL = crm_private.refusal_rule('campaigns', 'campaigns_client_id_fkey'),
                HINT = 'Use the id of a row of crm.clients.',
                COLUMN = 'client_id', TABLE = 'campaigns', SCHEMA = 'crm',
                CONSTRAINT = 'campaigns_client_id_fkey';
        END IF;
    END IF;

    IF (v_insert OR NEW.name IS DISTINCT FROM OLD.name)
        AND pg_catalog.length(pg_catalog.btrim(NEW.name)) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'campaigns', NEW.id, 'name', NEW.name,
                CASE
                    WHEN pg_catalog.btrim(NEW.name) = '' THEN 'is blank'
                    ELSE pg_catalog.format(
                        'is %s characters long', pg_catalog.length(pg_catalog.btrim(NEW.name))
                    )
                END
            ),
            DETAIL = crm_private.refusal_rule('campaigns', 'campaigns_name_check'),
            HINT = 'Give a name of 1 to 200 characters (spaces at either end do not count).',
            COLUMN = 'name', TABLE = 'campaigns', SCHEMA = 'crm',
            CONSTRAINT = 'campaigns_name_check';
    END IF;

    IF NOT (
        least(NEW.created_at, NEW.updated_at, NEW.deleted_at) <@ crm_private.timestamp_window()
        AND greatest(NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
    ) THEN
        v_row := pg_catalog.to_jsonb(NEW);
        v_column := crm_private.refused_timestamp('campaigns', v_row);
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'campaigns', NEW.id, v_column, (v_row ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule('campaigns', 'campaigns_timestamps_check'),
            HINT = crm_private.timestamp_hint('campaigns', v_column),
            COLUMN = v_column, TABLE = 'campaigns', SCHEMA = 'crm',
            CONSTRAINT = 'campaigns_timestamps_check';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_campaigns__validate() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.campaigns, before the others): refuses what the
constraints would, naming the field and its value, with a hint: a required column left NULL
(23502); a client_id that names no client (23503); a name not 1-200 characters, a time outside
crm_private.timestamp_window() (23514).';

REVOKE ALL ON FUNCTION crm_private.tg_campaigns__validate() FROM public;

CREATE OR REPLACE TRIGGER _080_validate
BEFORE INSERT OR UPDATE ON crm.campaigns
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_campaigns__validate();
