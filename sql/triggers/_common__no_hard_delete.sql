-- Soft deletes only (spec key rule 10): DELETE and TRUNCATE are refused on every business
-- table, with a hint to set deleted_at (or, on crm_external_ids, which has none, what to do
-- instead); the history tables are append-only. Nothing is ever lost, and soft-deleted rows
-- stay for the audit trail.

CREATE OR REPLACE FUNCTION crm_private.tg__refuse_hard_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_what text := pg_catalog.lower(TG_OP);
BEGIN
    IF TG_ARGV[0] = 'append-only' THEN
        RAISE EXCEPTION '% on crm.% is not allowed: the table is an append-only history',
            TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'feature_not_supported',
                  TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
                  HINT = 'History rows are written by the lifecycle triggers and never changed.';
    END IF;
    -- The hint names what the table offers instead: deleted_at where it has one.
    RAISE EXCEPTION '% on crm.% is not allowed: agency-crm only soft-deletes', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'feature_not_supported',
              TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
              HINT = CASE
                  WHEN EXISTS (
                      SELECT 1
                      FROM pg_catalog.pg_attribute AS a
                      WHERE a.attrelid = TG_RELID
                        AND a.attname = 'deleted_at'
                        AND NOT a.attisdropped
                  ) THEN pg_catalog.format(
                      'Instead of %s, set deleted_at: UPDATE crm.%I SET deleted_at = now() WHERE '
                      'id = ...', v_what, TG_TABLE_NAME
                  )
                  WHEN TG_TABLE_NAME = 'crm_external_ids' THEN
                      'crm_external_ids has no deleted_at: its rows say where our leads and deals '
                      'live in each CRM, and without them the next push would create them there '
                      'again. To stop pushing to a CRM, set is_active = false on its config in '
                      'crm.client_crm_configs (or soft-delete the config); to point a row at '
                      'another CRM record, update its crm_id.'
                  ELSE pg_catalog.format(
                      'crm.%I has no deleted_at: its rows are kept for good.', TG_TABLE_NAME
                  )
              END;
END;
$$;

COMMENT ON FUNCTION crm_private.tg__refuse_hard_delete() IS
'Trigger: refuses DELETE and TRUNCATE (and UPDATE on append-only history) with SQLSTATE 0A000
and a hint: soft-delete by setting deleted_at, or, on a table without one (crm_external_ids),
what to do instead.';

REVOKE ALL ON FUNCTION crm_private.tg__refuse_hard_delete() FROM public;

-- Business tables: every table of schema crm with a deleted_at column, plus the map of CRM ids
-- (losing a row would create duplicates in the CRM). History tables: append-only.
DO $$
DECLARE
    v_table name;
    v_kind text;
BEGIN
    FOR v_table, v_kind IN
        SELECT c.relname, 'soft'
        FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = 'crm'::regnamespace
          AND c.relkind = 'r'
          AND (
              c.relname = 'crm_external_ids'
              OR EXISTS (
                  SELECT 1
                  FROM pg_catalog.pg_attribute AS a
                  WHERE a.attrelid = c.oid AND a.attname = 'deleted_at' AND NOT a.attisdropped
              )
          )
        UNION ALL
        SELECT t.relname, 'append-only'
        FROM (VALUES ('deal_stage_history'::name), ('meeting_reschedules'::name)) AS t (relname)
        ORDER BY 1
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE OR REPLACE TRIGGER _050_refuse_delete BEFORE DELETE ON crm.%I '
            'FOR EACH ROW EXECUTE FUNCTION crm_private.tg__refuse_hard_delete(%L)',
            v_table, v_kind
        );
        EXECUTE pg_catalog.format(
            'CREATE OR REPLACE TRIGGER _050_refuse_truncate BEFORE TRUNCATE ON crm.%I '
            'FOR EACH STATEMENT EXECUTE FUNCTION crm_private.tg__refuse_hard_delete(%L)',
            v_table, v_kind
        );
    END LOOP;
END;
$$;

-- Stage history is never rewritten (meeting_reschedules gets its new time filled in once).
CREATE OR REPLACE TRIGGER _050_refuse_update
BEFORE UPDATE ON crm.deal_stage_history
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg__refuse_hard_delete('append-only');
