-- Every write of crm.client_crm_configs is checked before its constraints see it
-- (docs/lifecycle.md, "Errors"); the same shape as clients__validate.sql. Secrets (api_key, the
-- OAuth tokens) are never quoted in a refusal.

CREATE OR REPLACE FUNCTION crm_private.tg_client_crm_configs__validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_insert boolean := TG_OP = 'INSERT';
    v_row jsonb;
    v_column text;
    v_other uuid;
    v_other_type text;
    -- The envelope of an encrypted secret, as the CHECKs of migration 0014 say.
    c_envelope CONSTANT text :=
        '^acrm:v1:[A-Za-z0-9_-]{1,32}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22,}$';
BEGIN
    IF pg_catalog.num_nulls(
        NEW.id, NEW.client_id, NEW.crm_type, NEW.is_active, NEW.connection_status,
        NEW.created_at, NEW.updated_at, NEW.stage_map, NEW.external_key_fields, NEW.max_attempts
    ) > 0 THEN
        v_column := crm_private.refused_null('client_crm_configs', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'not_null_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, v_column, NULL, 'is NULL, but it is required'
            ),
            HINT = crm_private.null_hint('client_crm_configs', v_column),
            COLUMN = v_column, TABLE = 'client_crm_configs', SCHEMA = 'crm';
    END IF;

    IF (v_insert OR NEW.client_id IS DISTINCT FROM OLD.client_id) THEN
        IF NOT EXISTS (
            SELECT 1 FROM crm.clients AS c WHERE c.id = NEW.client_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'client_crm_configs', NEW.id, 'client_id', NEW.client_id::text,
                    'is not a client'
                ),
                DETAIL = crm_private.refusal_rule(
                    'client_crm_configs', 'client_crm_configs_client_id_fkey'
                ),
                HINT = 'Use the id of a row of crm.clients.',
                COLUMN = 'client_id', TABLE = 'client_crm_configs', SCHEMA = 'crm',
                CONSTRAINT = 'client_crm_configs_client_id_fkey';
        END IF;
    END IF;

    IF (v_insert OR NEW.crm_type IS DISTINCT FROM OLD.crm_type)
        AND NEW.crm_type NOT IN ('hubspot', 'pipedrive', 'close') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, 'crm_type', NEW.crm_type, 'is not a CRM we push to'
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_crm_type_check'
            ),
            HINT = crm_private.refusal_choices(
                'client_crm_configs', 'client_crm_configs_crm_type_check', NEW.crm_type
            ),
            COLUMN = 'crm_type', TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_crm_type_check';
    END IF;
    IF (v_insert OR NEW.connection_status IS DISTINCT FROM OLD.connection_status)
        AND NEW.connection_status NOT IN ('pending', 'connected', 'error', 'disconnected') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, 'connection_status', NEW.connection_status,
                'is not a connection status'
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_connection_status_check'
            ),
            HINT = crm_private.refusal_choices(
                'client_crm_configs', 'client_crm_configs_connection_status_check',
                NEW.connection_status
            ),
            COLUMN = 'connection_status', TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_connection_status_check';
    END IF;
    IF NEW.crm_type <> 'hubspot' AND (
        v_insert
        OR NEW.crm_type IS DISTINCT FROM OLD.crm_type
        OR NEW.oauth_access_token IS DISTINCT FROM OLD.oauth_access_token
        OR NEW.oauth_refresh_token IS DISTINCT FROM OLD.oauth_refresh_token
        OR NEW.oauth_expires_at IS DISTINCT FROM OLD.oauth_expires_at
    ) AND pg_catalog.num_nonnulls(
        NEW.oauth_access_token, NEW.oauth_refresh_token, NEW.oauth_expires_at
    ) > 0 THEN
        v_column := CASE
            WHEN NEW.oauth_access_token IS NOT NULL THEN 'oauth_access_token'
            WHEN NEW.oauth_refresh_token IS NOT NULL THEN 'oauth_refresh_token'
            ELSE 'oauth_expires_at'
        END;
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            -- The tokens are secrets: the message says a token is set, never what it is.
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, v_column,
                CASE WHEN v_column = 'oauth_expires_at' THEN NEW.oauth_expires_at::text END,
                pg_catalog.format(
                    'is set, but OAuth is for crm_type hubspot and crm_type is %s',
                    crm_private.refusal_value(NEW.crm_type)
                )
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_oauth_check'
            ),
            HINT = 'Pipedrive and Close authenticate with api_key: leave oauth_access_token, '
                'oauth_refresh_token and oauth_expires_at NULL (or set crm_type to hubspot).',
            COLUMN = v_column, TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_oauth_check';
    END IF;
    -- Secrets are stored encrypted (migration 0014): a value that is not an envelope is a
    -- plaintext secret written by hand. The refusal names the column, never the value.
    IF (
        v_insert
        OR NEW.api_key IS DISTINCT FROM OLD.api_key
        OR NEW.oauth_access_token IS DISTINCT FROM OLD.oauth_access_token
        OR NEW.oauth_refresh_token IS DISTINCT FROM OLD.oauth_refresh_token
    ) AND (
        NEW.api_key !~ c_envelope
        OR NEW.oauth_access_token !~ c_envelope
        OR NEW.oauth_refresh_token !~ c_envelope
    ) IS TRUE THEN
        v_column := CASE
            WHEN NEW.api_key !~ c_envelope THEN 'api_key'
            WHEN NEW.oauth_access_token !~ c_envelope THEN 'oauth_access_token'
            ELSE 'oauth_refresh_token'
        END;
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, v_column, NULL,
                'is not an encrypted secret (the value is not shown)'
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_' || v_column || '_check'
            ),
            HINT = 'Secrets are stored encrypted, never in plaintext: write them through '
                'agency-crm (its CRM connection commands and Python API encrypt them with '
                'AGENCY_CRM_SECRET_KEYS; docs/security.md), or leave the column NULL.',
            COLUMN = v_column, TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_' || v_column || '_check';
    END IF;
    IF NEW.crm_type <> 'hubspot' AND NEW.hubspot_portal_id IS NOT NULL AND (
        v_insert
        OR NEW.crm_type IS DISTINCT FROM OLD.crm_type
        OR NEW.hubspot_portal_id IS DISTINCT FROM OLD.hubspot_portal_id
    ) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, 'hubspot_portal_id', NEW.hubspot_portal_id,
                pg_catalog.format(
                    'is set, but crm_type is %s', crm_private.refusal_value(NEW.crm_type)
                )
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_hubspot_portal_id_check'
            ),
            HINT = 'hubspot_portal_id is the HubSpot account: leave it NULL for Pipedrive and '
                'Close.',
            COLUMN = 'hubspot_portal_id', TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_hubspot_portal_id_check';
    END IF;
    IF (v_insert OR NEW.api_base_url IS DISTINCT FROM OLD.api_base_url)
        AND NEW.api_base_url !~ '^https?://[^[:space:]/]+(/[^[:space:]]*)?$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, 'api_base_url', NEW.api_base_url,
                'is not an http(s) URL without spaces'
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_api_base_url_check'
            ),
            HINT = 'Give the root URL of the CRM''s API, e.g. https://api.hubapi.com, or '
                'http://127.0.0.1:8701 for the local sandbox; NULL means the vendor''s public '
                'API.',
            COLUMN = 'api_base_url', TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_api_base_url_check';
    END IF;
    IF (v_insert OR NEW.stage_map IS DISTINCT FROM OLD.stage_map)
        AND pg_catalog.jsonb_typeof(NEW.stage_map) <> 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, 'stage_map', NEW.stage_map::text,
                pg_catalog.format(
                    'is a JSON %s, not an object', pg_catalog.jsonb_typeof(NEW.stage_map)
                )
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_stage_map_check'
            ),
            HINT = 'Map our deal stages to the CRM''s stage ids in a JSON object, e.g. '
                '{"proposal": "presentationscheduled"}; {} maps none.',
            COLUMN = 'stage_map', TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_stage_map_check';
    END IF;
    IF (v_insert OR NEW.external_key_fields IS DISTINCT FROM OLD.external_key_fields)
        AND pg_catalog.jsonb_typeof(NEW.external_key_fields) <> 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, 'external_key_fields', NEW.external_key_fields::text,
                pg_catalog.format(
                    'is a JSON %s, not an object',
                    pg_catalog.jsonb_typeof(NEW.external_key_fields)
                )
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_external_key_fields_check'
            ),
            HINT = 'Name the CRM field holding our key per entity in a JSON object, e.g. '
                '{"deal": "agency_crm_key"}; {} uses the defaults (docs/push.md).',
            COLUMN = 'external_key_fields', TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_external_key_fields_check';
    END IF;
    IF (v_insert OR NEW.max_attempts IS DISTINCT FROM OLD.max_attempts)
        AND NEW.max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, 'max_attempts', NEW.max_attempts::text,
                'is not between 1 and 100'
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_max_attempts_check'
            ),
            HINT = 'max_attempts is how many times a push is tried before it is dead: 1 to '
                '100, or leave it out for 10.',
            COLUMN = 'max_attempts', TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_max_attempts_check';
    END IF;

    IF NOT (
        least(
            NEW.oauth_expires_at, NEW.last_successful_push_at, NEW.created_at, NEW.updated_at,
            NEW.deleted_at
        ) <@ crm_private.timestamp_window()
        AND greatest(
            NEW.oauth_expires_at, NEW.last_successful_push_at, NEW.created_at, NEW.updated_at,
            NEW.deleted_at
        ) <@ crm_private.timestamp_window()
    ) THEN
        v_row := pg_catalog.to_jsonb(NEW);
        v_column := crm_private.refused_timestamp('client_crm_configs', v_row);
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'client_crm_configs', NEW.id, v_column, (v_row ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule(
                'client_crm_configs', 'client_crm_configs_timestamps_check'
            ),
            HINT = crm_private.timestamp_hint('client_crm_configs', v_column),
            COLUMN = v_column, TABLE = 'client_crm_configs', SCHEMA = 'crm',
            CONSTRAINT = 'client_crm_configs_timestamps_check';
    END IF;

    -- One live config per client (the unique index client_crm_configs_client_id_key).
    IF NEW.deleted_at IS NULL AND (
        v_insert OR NEW.client_id IS DISTINCT FROM OLD.client_id OR OLD.deleted_at IS NOT NULL
    ) THEN
        SELECT c.id, c.crm_type INTO v_other, v_other_type
        FROM crm.client_crm_configs AS c
        WHERE c.client_id = NEW.client_id AND c.deleted_at IS NULL AND c.id <> NEW.id
        LIMIT 1;
        IF v_other IS NOT NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'unique_violation',
                MESSAGE = crm_private.refusal_message(
                    'client_crm_configs', NEW.id, 'client_id', NEW.client_id::text,
                    pg_catalog.format(
                        'already has a live CRM config, %s (%s)', v_other, v_other_type
                    )
                ),
                DETAIL = crm_private.refusal_rule(
                    'client_crm_configs', 'client_crm_configs_client_id_key'
                ),
                HINT = pg_catalog.format(
                    'A client has one live CRM config: update %1$s, or soft-delete it first '
                    '(UPDATE crm.client_crm_configs SET deleted_at = now() WHERE id = %1$L).',
                    v_other
                ),
                COLUMN = 'client_id', TABLE = 'client_crm_configs', SCHEMA = 'crm',
                CONSTRAINT = 'client_crm_configs_client_id_key';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_client_crm_configs__validate() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.client_crm_configs, before the others): refuses what
the constraints would, naming the field and its value (never a secret), with a hint: a required
column left NULL (23502); a client_id that names no client (23503); an unknown crm_type or
connection_status, OAuth columns or a portal id on a config that is not hubspot, an api_base_url
that is not an http(s) URL, a stage_map or external_key_fields that is not a JSON object,
max_attempts outside 1-100, a secret that is not an encrypted envelope, a time outside crm_private.timestamp_window() (23514); a second live
config of the client (23505).';

REVOKE ALL ON FUNCTION crm_private.tg_client_crm_configs__validate() FROM public;

CREATE OR REPLACE TRIGGER _080_validate
BEFORE INSERT OR UPDATE ON crm.client_crm_configs
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_client_crm_configs__validate();
