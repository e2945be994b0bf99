-- updated_at on every table that has one: set to now() by any update that changes
-- the row, unless the writer set updated_at itself (historical imports, repairs).

CREATE OR REPLACE FUNCTION crm_private.tg__set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := pg_catalog.now();
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg__set_updated_at() IS
'Trigger: sets updated_at to now() on an update that changes the row, unless the writer set
it.';

REVOKE ALL ON FUNCTION crm_private.tg__set_updated_at() FROM public;

-- One trigger per table of schema crm that has an updated_at column, so a table added
-- by a later migration is covered without anyone remembering (a catalog test checks).
DO $$
DECLARE
    v_table name;
BEGIN
    FOR v_table IN
        SELECT c.relname
        FROM pg_catalog.pg_class AS c
        INNER JOIN pg_catalog.pg_attribute AS a
            ON a.attrelid = c.oid
        WHERE c.relnamespace = 'crm'::regnamespace
          AND c.relkind = 'r'
          AND a.attname = 'updated_at'
          AND NOT a.attisdropped
        ORDER BY c.relname
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE OR REPLACE TRIGGER _100_set_updated_at BEFORE UPDATE ON crm.%I '
            'FOR EACH ROW WHEN (old.updated_at IS NOT DISTINCT FROM new.updated_at '
            'AND old.* IS DISTINCT FROM new.*) '
            'EXECUTE FUNCTION crm_private.tg__set_updated_at()',
            v_table
        );
    END LOOP;
END;
$$;
