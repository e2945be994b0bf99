-- 0011: the constraints behind "every refusal speaks" (issue 11). The BEFORE INSERT OR UPDATE
-- triggers _080_validate (sql/triggers/<table>__validate.sql) refuse a bad write first, naming
-- the table, the field and its value, with a hint; the constraints below are the last line of
-- defence, for writes that skip the triggers (session_replication_role = replica).
--
-- Timestamps. A timestamptz column accepted -infinity, infinity and any time from 4713 BC to
-- 294276 AD; such a value later made unrelated writes and reports fail with 22008. Every
-- timestamptz column of the tenant tables (all of schema crm but the push queue and its log)
-- must now lie from 1900-01-01 00:00 UTC (included) to 2200-01-01 00:00 UTC (excluded): the
-- window of crm_private.timestamp_window() (sql/functions/timestamp_window.sql), spelled out
-- here: a CHECK is prepared again for every statement, and calling a function there (never
-- inlined: its search_path is pinned) cost several times as much as the literal bounds in
-- single-row INSERTs. tests/sql/test_refusals.py checks that every timestamptz column is
-- covered and that the bounds are the function's. One constraint per table, over least() and
-- greatest() of its columns (both skip NULLs), costs about half of one per column; the
-- triggers name the column.
--
-- Money. deals.value and deal_stage_history.value accepted NaN: value >= 0 holds for NaN,
-- which PostgreSQL sorts above every number. Their value CHECKs now also refuse it.
--
-- Rows written before this migration may break the new rules. The constraints are added NOT
-- VALID and validated at the end, one table scan each; a violation stops the upgrade, which
-- then applies nothing, with a message naming the table, the rule, how many rows break it and
-- the ids of a few of them (the rows are not changed here: a guessed time or amount would be
-- worse than a refused upgrade). Correct those rows, then upgrade again.

ALTER TABLE crm.clients
ADD CONSTRAINT clients_timestamps_check CHECK (
    least(created_at, updated_at, deleted_at)
    >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(created_at, updated_at, deleted_at)
    < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID;

ALTER TABLE crm.campaigns
ADD CONSTRAINT campaigns_timestamps_check CHECK (
    least(created_at, updated_at, deleted_at)
    >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(created_at, updated_at, deleted_at)
    < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID;

ALTER TABLE crm.leads
ADD CONSTRAINT leads_timestamps_check CHECK (
    least(meeting_booked_at, created_at, updated_at, deleted_at)
    >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(meeting_booked_at, created_at, updated_at, deleted_at)
    < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID;

ALTER TABLE crm.activities
ADD CONSTRAINT activities_timestamps_check CHECK (
    least(occurred_at, created_at, updated_at, deleted_at)
    >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(occurred_at, created_at, updated_at, deleted_at)
    < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID;

ALTER TABLE crm.client_crm_configs
ADD CONSTRAINT client_crm_configs_timestamps_check CHECK (
    least(oauth_expires_at, last_successful_push_at, created_at, updated_at, deleted_at)
    >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(oauth_expires_at, last_successful_push_at, created_at, updated_at, deleted_at)
    < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID;

ALTER TABLE crm.crm_external_ids
ADD CONSTRAINT crm_external_ids_timestamps_check CHECK (
    least(created_at, updated_at, create_sent_at)
    >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(created_at, updated_at, create_sent_at)
    < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID;

ALTER TABLE crm.meeting_reschedules
ADD CONSTRAINT meeting_reschedules_timestamps_check CHECK (
    least(previous_scheduled_at, new_scheduled_at, rescheduled_at, created_at)
    >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(previous_scheduled_at, new_scheduled_at, rescheduled_at, created_at)
    < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID;

ALTER TABLE crm.meetings
ADD CONSTRAINT meetings_timestamps_check CHECK (
    least(
        scheduled_at, booked_at, confirmed_at, reminder_sent_at, showed_up_confirmed_at,
        outcome_recorded_at, cancelled_at, created_at, updated_at, deleted_at
    ) >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(
        scheduled_at, booked_at, confirmed_at, reminder_sent_at, showed_up_confirmed_at,
        outcome_recorded_at, cancelled_at, created_at, updated_at, deleted_at
    ) < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID;

ALTER TABLE crm.deals
ADD CONSTRAINT deals_timestamps_check CHECK (
    least(stage_changed_at, closed_at, created_at, updated_at, deleted_at)
    >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(stage_changed_at, closed_at, created_at, updated_at, deleted_at)
    < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID,
DROP CONSTRAINT deals_value_check,
ADD CONSTRAINT deals_value_check CHECK (value >= 0 AND value <> 'NaN') NOT VALID;

ALTER TABLE crm.deal_stage_history
ADD CONSTRAINT deal_stage_history_timestamps_check CHECK (
    least(changed_at, created_at) >= ('1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
    AND greatest(changed_at, created_at) < ('2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC')
) NOT VALID,
DROP CONSTRAINT deal_stage_history_value_check,
ADD CONSTRAINT deal_stage_history_value_check CHECK (value >= 0 AND value <> 'NaN') NOT VALID;

COMMENT ON CONSTRAINT clients_timestamps_check ON crm.clients IS
'created_at, updated_at and deleted_at must be finite times from 1900-01-01 00:00 UTC
(included) to 2200-01-01 00:00 UTC (excluded): crm_private.timestamp_window().';
COMMENT ON CONSTRAINT campaigns_timestamps_check ON crm.campaigns IS
'created_at, updated_at and deleted_at must be finite times from 1900-01-01 00:00 UTC
(included) to 2200-01-01 00:00 UTC (excluded): crm_private.timestamp_window().';
COMMENT ON CONSTRAINT leads_timestamps_check ON crm.leads IS
'meeting_booked_at, created_at, updated_at and deleted_at must be finite times from 1900-01-01
00:00 UTC (included) to 2200-01-01 00:00 UTC (excluded): crm_private.timestamp_window().';
COMMENT ON CONSTRAINT activities_timestamps_check ON crm.activities IS
'occurred_at, created_at, updated_at and deleted_at must be finite times from 1900-01-01 00:00
UTC (included) to 2200-01-01 00:00 UTC (excluded): crm_private.timestamp_window().';
COMMENT ON CONSTRAINT client_crm_configs_timestamps_check ON crm.client_crm_configs IS
'oauth_expires_at, last_successful_push_at, created_at, updated_at and deleted_at must be finite
times from 1900-01-01 00:00 UTC (included) to 2200-01-01 00:00 UTC (excluded):
crm_private.timestamp_window().';
COMMENT ON CONSTRAINT crm_external_ids_timestamps_check ON crm.crm_external_ids IS
'created_at, updated_at and create_sent_at must be finite times from 1900-01-01 00:00 UTC
(included) to 2200-01-01 00:00 UTC (excluded): crm_private.timestamp_window().';
COMMENT ON CONSTRAINT meeting_reschedules_timestamps_check ON crm.meeting_reschedules IS
'previous_scheduled_at, new_scheduled_at, rescheduled_at and created_at must be finite times
from 1900-01-01 00:00 UTC (included) to 2200-01-01 00:00 UTC (excluded):
crm_private.timestamp_window().';
COMMENT ON CONSTRAINT meetings_timestamps_check ON crm.meetings IS
'scheduled_at, booked_at, confirmed_at, reminder_sent_at, showed_up_confirmed_at,
outcome_recorded_at, cancelled_at, created_at, updated_at and deleted_at must be finite times
from 1900-01-01 00:00 UTC (included) to 2200-01-01 00:00 UTC (excluded):
crm_private.timestamp_window().';
COMMENT ON CONSTRAINT deals_timestamps_check ON crm.deals IS
'stage_changed_at, closed_at, created_at, updated_at and deleted_at must be finite times from
1900-01-01 00:00 UTC (included) to 2200-01-01 00:00 UTC (excluded):
crm_private.timestamp_window().';
COMMENT ON CONSTRAINT deals_value_check ON crm.deals IS
'value must be a number (not NaN), zero or more.';
COMMENT ON CONSTRAINT deal_stage_history_timestamps_check ON crm.deal_stage_history IS
'changed_at and created_at must be finite times from 1900-01-01 00:00 UTC (included) to
2200-01-01 00:00 UTC (excluded): crm_private.timestamp_window().';
COMMENT ON CONSTRAINT deal_stage_history_value_check ON crm.deal_stage_history IS
'value must be a number (not NaN), zero or more.';

-- Validate, each constraint with one scan of its table. A violation is reported with the rows
-- that break the rule instead of PostgreSQL's "is violated by some row".
DO $$
DECLARE
    v_table name;
    v_constraint name;
    v_definition text;
    v_rows bigint;
    v_ids text;
BEGIN
    FOR v_table, v_constraint, v_definition IN
        SELECT c.relname, con.conname, pg_catalog.pg_get_expr(con.conbin, con.conrelid)
        FROM pg_catalog.pg_constraint AS con
        INNER JOIN pg_catalog.pg_class AS c ON c.oid = con.conrelid
        WHERE con.connamespace = 'crm'::regnamespace
          AND con.contype = 'c'
          AND NOT con.convalidated
          AND (con.conname LIKE '%\_timestamps\_check' OR con.conname IN (
              'deals_value_check', 'deal_stage_history_value_check'
          ))
        ORDER BY 1, 2
    LOOP
        BEGIN
            EXECUTE pg_catalog.format(
                'ALTER TABLE crm.%I VALIDATE CONSTRAINT %I', v_table, v_constraint
            );
        EXCEPTION
            WHEN check_violation THEN
                EXECUTE pg_catalog.format(
                    'SELECT count(*), pg_catalog.string_agg(s.id::text, '', '') FILTER ('
                    'WHERE s.n <= 5) FROM (SELECT t.id, row_number() OVER (ORDER BY t.id) AS n '
                    'FROM crm.%I AS t WHERE NOT (%s)) AS s',
                    v_table, v_definition
                ) INTO v_rows, v_ids;
                IF v_rows > 5 THEN
                    v_ids := v_ids || ', ...';
                END IF;
                RAISE EXCEPTION '% row(s) of crm.% break the new rule % (ids: %)',
                    v_rows, v_table, v_constraint, v_ids
                    USING ERRCODE = 'check_violation',
                          TABLE = v_table,
                          SCHEMA = 'crm', CONSTRAINT = v_constraint,
                          DETAIL = pg_catalog.format('The rule: CHECK (%s).', v_definition),
                          HINT = CASE
                              WHEN v_constraint LIKE '%\_value\_check'
                                  THEN 'Set those rows'' value to the real amount (0 or more)'
                              ELSE 'Set those rows'' times to real ones, from 1900-01-01 00:00'
                                  ' UTC to 2200-01-01 00:00 UTC (excluded), or NULL where the'
                                  ' column allows it'
                          END || CASE
                              WHEN v_constraint LIKE 'deal\_stage\_history\_%'
                                  THEN ' (the history is append-only: ALTER TABLE'
                                      ' crm.deal_stage_history DISABLE TRIGGER'
                                      ' _050_refuse_update for the fix)'
                              ELSE ''
                          END || ', then run the upgrade again: nothing was applied.';
        END;
    END LOOP;
END;
$$;
