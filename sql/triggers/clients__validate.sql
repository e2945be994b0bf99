-- Every write of crm.clients is checked before its constraints see it (docs/lifecycle.md,
-- "Errors"): a refusal names the table, the field and its value, with a hint and, as DETAIL,
-- the rule it breaks. The constraints stay as the last line of defence. On UPDATE a column
-- that did not change is not checked again (the times are tested together: the old ones
-- passed the same constraint).

CREATE OR REPLACE FUNCTION crm_private.tg_clients__validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_insert boolean := TG_OP = 'INSERT';
    v_row jsonb;
    v_column text;
    v_currency text;
BEGIN
    IF pg_catalog.num_nulls(
        NEW.id, NEW.name, NEW.default_currency, NEW.timezone, NEW.auto_create_deals,
        NEW.created_at, NEW.updated_at
    ) > 0 THEN
        v_column := crm_private.refused_null('clients', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'not_null_violation',
            MESSAGE = crm_private.refusal_message(
                'clients', NEW.id, v_column, NULL, 'is NULL, but it is required'
            ),
            HINT = crm_private.null_hint('clients', v_column),
            COLUMN = v_column, TABLE = 'clients', SCHEMA = 'crm';
    END IF;

    IF (v_insert OR NEW.name IS DISTINCT FROM OLD.name)
        AND pg_catalog.length(pg_catalog.btrim(NEW.name)) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'clients', NEW.id, 'name', NEW.name,
                CASE
                    WHEN pg_catalog.btrim(NEW.name) = '' THEN 'is blank'
                    ELSE pg_catalog.format(
                        'is %s characters long', pg_catalog.length(pg_catalog.btrim(NEW.name))
                    )
                END
            ),
            DETAIL = crm_private.refusal_rule('clients', 'clients_name_check'),
            HINT = 'Give a name of 1 to 200 characters (spaces at either end do not count).',
            COLUMN = 'name', TABLE = 'clients', SCHEMA = 'crm',
            CONSTRAINT = 'clients_name_check';
    END IF;
    IF (v_insert OR NEW.default_currency IS DISTINCT FROM OLD.default_currency)
        AND NEW.default_currency !~ '^[A-Z]{3}$' THEN
        v_currency := pg_catalog.upper(pg_catalog.btrim(NEW.default_currency));
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'clients', NEW.id, 'default_currency', NEW.default_currency,
                'is not an ISO-4217 currency code'
            ),
            DETAIL = crm_private.refusal_rule('clients', 'clients_default_currency_check'),
            HINT = 'Give three upper-case letters, e.g. AUD, USD or EUR.' || CASE
                WHEN v_currency ~ '^[A-Z]{3}$'
                    THEN pg_catalog.format(' Did you mean %s?', v_currency)
                ELSE ''
            END,
            COLUMN = 'default_currency', TABLE = 'clients', SCHEMA = 'crm',
            CONSTRAINT = 'clients_default_currency_check';
    END IF;
    IF (v_insert OR NEW.timezone IS DISTINCT FROM OLD.timezone)
        AND NOT crm_private.is_valid_time_zone(NEW.timezone) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'clients', NEW.id, 'timezone', NEW.timezone, 'is not a time zone PostgreSQL knows'
            ),
            DETAIL = crm_private.refusal_rule('clients', 'clients_timezone_check'),
            HINT = 'Use an IANA time zone name (see pg_timezone_names), e.g. Australia/Sydney, '
                'America/New_York or UTC.',
            COLUMN = 'timezone', TABLE = 'clients', SCHEMA = 'crm',
            CONSTRAINT = 'clients_timezone_check';
    END IF;

    IF NOT (
        least(NEW.created_at, NEW.updated_at, NEW.deleted_at) <@ crm_private.timestamp_window()
        AND greatest(NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
    ) THEN
        v_row := pg_catalog.to_jsonb(NEW);
        v_column := crm_private.refused_timestamp('clients', v_row);
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'clients', NEW.id, v_column, (v_row ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule('clients', 'clients_timestamps_check'),
            HINT = crm_private.timestamp_hint('clients', v_column),
            COLUMN = v_column, TABLE = 'clients', SCHEMA = 'crm',
            CONSTRAINT = 'clients_timestamps_check';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_clients__validate() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.clients, before the others): refuses what the
constraints would, naming the field and its value, with a hint: a required column left NULL
(23502); a name not 1-200 characters, a currency that is not three upper-case letters, an
unknown time zone, a time outside crm_private.timestamp_window() (23514).';

REVOKE ALL ON FUNCTION crm_private.tg_clients__validate() FROM public;

CREATE OR REPLACE TRIGGER _080_validate
BEFORE INSERT OR UPDATE ON crm.clients
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_clients__validate();
