-- A row's keys never change: id and client_id are fixed at INSERT on every table of schema
-- crm. Moving a row to another client (or renumbering it) would leave the old client's
-- pushes, history and counters pointing at a row that is no longer theirs.

CREATE OR REPLACE FUNCTION crm_private.tg__refuse_key_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_old jsonb := pg_catalog.to_jsonb(OLD);
    v_new jsonb := pg_catalog.to_jsonb(NEW);
    v_column text;
BEGIN
    FOREACH v_column IN ARRAY ARRAY['client_id', 'id'] LOOP
        IF v_old -> v_column IS DISTINCT FROM v_new -> v_column THEN
            RAISE EXCEPTION 'crm.%: % cannot change (from % to %)',
                TG_TABLE_NAME, v_column, v_old ->> v_column,
                coalesce(v_new ->> v_column, 'NULL')
                USING ERRCODE = 'check_violation',
                      COLUMN = v_column, TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
                      HINT = CASE v_column
                          WHEN 'client_id' THEN 'A row belongs to its client for good: to move '
                              'it, soft-delete it (SET deleted_at = now()) and insert a new row '
                              'for the other client.'
                          ELSE 'Ids are fixed when a row is inserted: leave id out of the '
                              'UPDATE''s SET list.'
                      END;
        END IF;
    END LOOP;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg__refuse_key_change() IS
'Trigger (BEFORE UPDATE OF id, client_id, when either changes): refuses the change with
SQLSTATE 23514 naming the column, its old and new value, and a hint.';

REVOKE ALL ON FUNCTION crm_private.tg__refuse_key_change() FROM public;

-- One trigger per table of schema crm with an id or client_id column (a catalog test checks
-- every table is covered). UPDATE OF: it fires only when the UPDATE names a key column, so
-- ordinary updates pay nothing.
DO $$
DECLARE
    v_table name;
    v_columns text[];
BEGIN
    FOR v_table, v_columns IN
        SELECT c.relname, array_agg(a.attname::text ORDER BY a.attname)
        FROM pg_catalog.pg_class AS c
        INNER JOIN pg_catalog.pg_attribute AS a
            ON a.attrelid = c.oid
        WHERE c.relnamespace = 'crm'::regnamespace
          AND c.relkind = 'r'
          AND a.attname IN ('id', 'client_id')
          AND NOT a.attisdropped
        GROUP BY c.relname
        ORDER BY c.relname
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE OR REPLACE TRIGGER _010_refuse_key_change BEFORE UPDATE OF %s ON crm.%I '
            'FOR EACH ROW WHEN (%s) EXECUTE FUNCTION crm_private.tg__refuse_key_change()',
            (
                SELECT pg_catalog.string_agg(pg_catalog.quote_ident(col), ', ')
                FROM unnest(v_columns) AS col
            ),
            v_table,
            (
                SELECT pg_catalog.string_agg(
                    pg_catalog.format('old.%1$I IS DISTINCT FROM new.%1$I', col), ' OR '
                )
                FROM unnest(v_columns) AS col
            )
        );
    END LOOP;
END;
$$;
