-- Every write of crm.crm_external_ids is checked before its constraints see it
-- (docs/lifecycle.md, "Errors"); the same shape as clients__validate.sql. A second row for the
-- same (config, entity type, external key) is left to the constraint crm_external_ids_entity_key:
-- the push runner writes this table with INSERT ... ON CONFLICT on that key
-- (crm.claim_crm_create, crm.record_crm_id), and a BEFORE INSERT trigger cannot tell an upsert,
-- whose conflict is expected, from a plain INSERT.

CREATE OR REPLACE FUNCTION crm_private.tg_crm_external_ids__validate()
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
        NEW.id, NEW.client_id, NEW.crm_config_id, NEW.entity_type, NEW.external_key,
        NEW.created_at, NEW.updated_at
    ) > 0 THEN
        v_column := crm_private.refused_null('crm_external_ids', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'not_null_violation',
            MESSAGE = crm_private.refusal_message(
                'crm_external_ids', NEW.id, v_column, NULL, 'is NULL, but it is required'
            ),
            HINT = crm_private.null_hint('crm_external_ids', v_column),
            COLUMN = v_column, TABLE = 'crm_external_ids', SCHEMA = 'crm';
    END IF;

    IF (
        v_insert
        OR NEW.crm_config_id IS DISTINCT FROM OLD.crm_config_id
        OR NEW.client_id IS DISTINCT FROM OLD.client_id
    ) THEN
        IF NOT EXISTS (
            SELECT 1
            FROM crm.client_crm_configs AS c
            WHERE c.client_id = NEW.client_id AND c.id = NEW.crm_config_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'crm_external_ids', NEW.id, 'crm_config_id', NEW.crm_config_id::text,
                    pg_catalog.format('is not a CRM config of client %s', NEW.client_id)
                ),
                DETAIL = crm_private.refusal_rule(
                    'crm_external_ids', 'crm_external_ids_client_id_crm_config_id_fkey'
                ),
                HINT = 'Use the id of a CRM config of the same client '
                    '(crm.client_crm_configs.client_id).',
                COLUMN = 'crm_config_id', TABLE = 'crm_external_ids', SCHEMA = 'crm',
                CONSTRAINT = 'crm_external_ids_client_id_crm_config_id_fkey';
        END IF;
    END IF;

    IF (v_insert OR NEW.entity_type IS DISTINCT FROM OLD.entity_type)
        AND NEW.entity_type NOT IN ('lead', 'contact', 'deal', 'organisation') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'crm_external_ids', NEW.id, 'entity_type', NEW.entity_type,
                'is not an entity type'
            ),
            DETAIL = crm_private.refusal_rule(
                'crm_external_ids', 'crm_external_ids_entity_type_check'
            ),
            HINT = crm_private.refusal_choices(
                'crm_external_ids', 'crm_external_ids_entity_type_check', NEW.entity_type
            ),
            COLUMN = 'entity_type', TABLE = 'crm_external_ids', SCHEMA = 'crm',
            CONSTRAINT = 'crm_external_ids_entity_type_check';
    END IF;
    IF (v_insert OR NEW.external_key IS DISTINCT FROM OLD.external_key)
        AND pg_catalog.length(NEW.external_key) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'crm_external_ids', NEW.id, 'external_key', NEW.external_key,
                CASE
                    WHEN NEW.external_key = '' THEN 'is empty'
                    ELSE pg_catalog.format(
                        'is %s characters long', pg_catalog.length(NEW.external_key)
                    )
                END
            ),
            DETAIL = crm_private.refusal_rule(
                'crm_external_ids', 'crm_external_ids_external_key_check'
            ),
            HINT = 'external_key is our stable key of the record, 1 to 200 characters, e.g. the '
                'lead or deal id.',
            COLUMN = 'external_key', TABLE = 'crm_external_ids', SCHEMA = 'crm',
            CONSTRAINT = 'crm_external_ids_external_key_check';
    END IF;
    IF (v_insert OR NEW.crm_id IS DISTINCT FROM OLD.crm_id)
        AND pg_catalog.length(NEW.crm_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'crm_external_ids', NEW.id, 'crm_id', NEW.crm_id,
                CASE
                    WHEN NEW.crm_id = '' THEN 'is empty'
                    ELSE pg_catalog.format('is %s characters long', pg_catalog.length(NEW.crm_id))
                END
            ),
            DETAIL = crm_private.refusal_rule('crm_external_ids', 'crm_external_ids_crm_id_check'),
            HINT = 'crm_id is the CRM''s id of the record, 1 to 200 characters; NULL while no '
                'record is known.',
            COLUMN = 'crm_id', TABLE = 'crm_external_ids', SCHEMA = 'crm',
            CONSTRAINT = 'crm_external_ids_crm_id_check';
    END IF;

    IF NOT (
        least(NEW.created_at, NEW.updated_at, NEW.create_sent_at)
        <@ crm_private.timestamp_window()
        AND greatest(NEW.created_at, NEW.updated_at, NEW.create_sent_at)
        <@ crm_private.timestamp_window()
    ) THEN
        v_row := pg_catalog.to_jsonb(NEW);
        v_column := crm_private.refused_timestamp('crm_external_ids', v_row);
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'crm_external_ids', NEW.id, v_column, (v_row ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule(
                'crm_external_ids', 'crm_external_ids_timestamps_check'
            ),
            HINT = crm_private.timestamp_hint('crm_external_ids', v_column),
            COLUMN = v_column, TABLE = 'crm_external_ids', SCHEMA = 'crm',
            CONSTRAINT = 'crm_external_ids_timestamps_check';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_crm_external_ids__validate() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.crm_external_ids, before the others): refuses what the
constraints would, naming the field and its value, with a hint: a required column left NULL
(23502); a crm_config_id that is not a config of the client (23503); an unknown entity_type, an
external_key or crm_id not 1-200 characters, a time outside crm_private.timestamp_window()
(23514). A duplicate key is left to the constraint (the push runner upserts on it).';

REVOKE ALL ON FUNCTION crm_private.tg_crm_external_ids__validate() FROM public;

CREATE OR REPLACE TRIGGER _080_validate
BEFORE INSERT OR UPDATE ON crm.crm_external_ids
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_crm_external_ids__validate();
