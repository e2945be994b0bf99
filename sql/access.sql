-- Who may do what: the grants of the five agency-crm roles and the row-level security of every
-- tenant table (docs/security.md). `agency-crm db upgrade` applies this file after the functions
-- and triggers whenever it changed, a migration ran, the code was re-applied or the set of
-- roles that exist changed; `db upgrade` creates the roles first where it may (CREATEROLE).
-- Everything is derived from the catalogs, so a new table or function is covered the next
-- time it runs, and it runs start to finish each time: every privilege of the five roles on
-- the two schemas is revoked, then granted again, in one transaction.
--
-- The roles (NOLOGIN groups a deployment grants to its login roles):
--   crm_app            app code: reads and writes business rows (no DELETE), calls the
--                      lifecycle and analytics functions; writes secrets but cannot read them.
--   crm_analyst        reads every row of every client (no secret) and calls the analytics.
--   crm_runner         the push drainer: reads rows, configs and secrets; writes the queue, the
--                      id map, the push log and a config's status and OAuth token columns.
--   crm_client_viewer  one client's dashboard: what crm_analyst reads, restricted by row-level
--                      security to the client named by the setting crm.client_id (nothing
--                      when it is unset).
--   crm_api            the HTTP API (agency-crm serve): what crm_client_viewer reads, for the
--                      one client of each request (crm.client_id); connects, configures and
--                      disconnects that client's CRM and queues its backfill; reads its CRM
--                      credentials only through crm.scoped_crm_config().
-- None owns anything, none has BYPASSRLS, none may DELETE (rows are soft-deleted).

DO $access$
DECLARE
    c_roles CONSTANT text [] := ARRAY[
        'crm_app', 'crm_analyst', 'crm_runner', 'crm_client_viewer', 'crm_api'
    ];
    -- The rows app code writes.
    c_business CONSTANT text [] := ARRAY[
        'crm.clients', 'crm.campaigns', 'crm.leads', 'crm.activities', 'crm.meetings',
        'crm.deals', 'crm.deal_stage_history', 'crm.meeting_reschedules',
        'crm.client_crm_configs'
    ];
    -- What the runner writes, and how (a config: its status and OAuth token columns only).
    c_runner_writes CONSTANT text [] := ARRAY[
        'crm.crm_push_queue', 'crm.crm_external_ids', 'crm.crm_push_log'
    ];
    c_runner_config_columns CONSTANT text [] := ARRAY[
        'connection_status', 'last_error', 'last_successful_push_at', 'oauth_access_token',
        'oauth_refresh_token', 'oauth_expires_at'
    ];
    -- The public functions of each role beyond the analytics (crm.get_*, every role but the
    -- runner).
    c_runner_functions CONSTANT text [] := ARRAY[
        'claim_pushes', 'complete_pushes', 'finish_push', 'finish_pushes', 'hold_pushes',
        'retry_pushes', 'push_target', 'push_targets', 'record_crm_id', 'write_push_log',
        'claim_crm_create', 'release_crm_create', 'push_queue_status'
    ];
    c_app_functions CONSTANT text [] := ARRAY['reopen_deal', 'push_queue_status'];
    c_api_functions CONSTANT text [] := ARRAY[
        'save_crm_connection', 'disconnect_crm', 'backfill_pushes', 'begin_oauth_state',
        'write_push_log', 'push_queue_status'
    ];
    c_shared_functions CONSTANT text [] := ARRAY['push_queue_status'];
    -- Internal helpers only the lifecycle triggers of app code's writes call.
    c_app_helpers CONSTANT text [] := ARRAY[
        'create_deal_for_meeting', 'enqueue_push', 'lock_leads', 'given_in_update',
        'await_connects'
    ];
    -- Internal helpers only the connection functions of crm_api call: the lock serialising a
    -- client's connection changes, which another role taking would stall them.
    c_api_helpers CONSTANT text [] := ARRAY['connection_lock'];
    -- SECURITY DEFINER functions (owner's rights, search_path pinned) and who may call them:
    -- app code's writes of touches and deals keep the attribution credits, which no role
    -- may delete directly.
    c_definer_callers CONSTANT jsonb := '{
        "crm_private.refresh_deal_attribution(uuid,uuid[])": ["crm_app"],
        "crm.authenticate_api_token(bytea)": ["crm_api"],
        "crm.consume_oauth_state(bytea,uuid)": ["crm_api"],
        "crm.scoped_crm_config()": ["crm_api"]
    }';
    v_role text;
    v_existing text [];
    v_table record;
    v_function record;
    v_secret text [];
    v_readable text;
    v_roles text;
    v_tenant text;
    v_grant boolean;
    v_command text;
BEGIN
    SELECT coalesce(array_agg(r.rolname ORDER BY r.rolname), '{}')
    INTO v_existing
    FROM pg_catalog.pg_roles AS r
    WHERE r.rolname = ANY (c_roles);

    -- Nothing for PUBLIC: a login sees agency-crm only through one of the roles (or as owner).
    REVOKE ALL ON SCHEMA crm, crm_private FROM PUBLIC;
    REVOKE ALL ON ALL TABLES IN SCHEMA crm, crm_private FROM PUBLIC;
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA crm, crm_private FROM PUBLIC;
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA crm, crm_private FROM PUBLIC;

    FOREACH v_role IN ARRAY v_existing LOOP
        EXECUTE pg_catalog.format(
            'REVOKE ALL ON ALL TABLES IN SCHEMA crm, crm_private FROM %I', v_role
        );
        EXECUTE pg_catalog.format(
            'REVOKE ALL ON ALL SEQUENCES IN SCHEMA crm, crm_private FROM %I', v_role
        );
        EXECUTE pg_catalog.format(
            'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA crm, crm_private FROM %I', v_role
        );
        EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA crm, crm_private TO %I', v_role);
    END LOOP;

    -- Tables: column privileges where a table has secret columns (their comment starts with
    -- "Secret"), so only the runner reads a secret.
    FOR v_table IN
        SELECT
            c.oid::regclass AS rel,
            n.nspname || '.' || c.relname AS name
        FROM pg_catalog.pg_class AS c
        INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('crm', 'crm_private') AND c.relkind IN ('r', 'p')
        ORDER BY 2
    LOOP
        SELECT
            coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (
                WHERE pg_catalog.col_description(a.attrelid, a.attnum) LIKE 'Secret%'
            ), '{}'),
            string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) FILTER (
                WHERE coalesce(pg_catalog.col_description(a.attrelid, a.attnum), '')
                NOT LIKE 'Secret%'
            )
        INTO v_secret, v_readable
        FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = v_table.rel AND a.attnum > 0 AND NOT a.attisdropped;

        FOREACH v_role IN ARRAY v_existing LOOP
            -- Reading: every role reads every table; the secret columns only the runner.
            IF v_secret = '{}' OR v_role = 'crm_runner' THEN
                EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %I', v_table.rel, v_role);
            ELSE
                EXECUTE pg_catalog.format(
                    'GRANT SELECT (%s) ON %s TO %I', v_readable, v_table.rel, v_role
                );
            END IF;
            IF v_role = 'crm_app' AND v_table.name = ANY (c_business) THEN
                EXECUTE pg_catalog.format(
                    'GRANT INSERT, UPDATE ON %s TO %I', v_table.rel, v_role
                );
            ELSIF v_role = 'crm_app' AND v_table.name = 'crm.crm_push_queue' THEN
                -- The lifecycle triggers enqueue pushes in the writer's transaction: a new
                -- push, or a pending one collapsed into (ON CONFLICT ... SET updated_at, which
                -- also locks it). The app cannot change a push's status.
                EXECUTE pg_catalog.format(
                    'GRANT INSERT, UPDATE (updated_at) ON %s TO %I', v_table.rel, v_role
                );
            ELSIF v_role = 'crm_api' AND v_table.name = 'crm.client_crm_configs' THEN
                EXECUTE pg_catalog.format(
                    'GRANT INSERT, UPDATE ON %s TO %I', v_table.rel, v_role
                );
            ELSIF v_role = 'crm_api' AND v_table.name = 'crm.crm_push_queue' THEN
                EXECUTE pg_catalog.format(
                    'GRANT INSERT, UPDATE (status, last_error, finished_at, updated_at) ON %s TO %I',
                    v_table.rel, v_role
                );
            ELSIF v_role = 'crm_api'
                AND v_table.name IN ('crm_private.oauth_states', 'crm.crm_push_log') THEN
                EXECUTE pg_catalog.format('GRANT INSERT ON %s TO %I', v_table.rel, v_role);
            ELSIF v_role = 'crm_runner' AND v_table.name = ANY (c_runner_writes) THEN
                EXECUTE pg_catalog.format(
                    'GRANT INSERT, UPDATE ON %s TO %I', v_table.rel, v_role
                );
            ELSIF v_role = 'crm_runner' AND v_table.name = 'crm.client_crm_configs' THEN
                EXECUTE pg_catalog.format(
                    'GRANT UPDATE (%s) ON %s TO %I',
                    (
                        SELECT string_agg(pg_catalog.quote_ident(col), ', ')
                        FROM pg_catalog.unnest(c_runner_config_columns) AS col
                    ),
                    v_table.rel, v_role
                );
            END IF;
        END LOOP;
    END LOOP;

    -- Functions. Trigger functions need no grant (a trigger runs whoever writes); the
    -- internal helpers are invoker's rights, so granting them adds nothing a role could not do
    -- with its table privileges.
    FOR v_function IN
        SELECT
            p.oid::regprocedure AS fn,
            n.nspname AS schema_name,
            p.proname::text AS name,
            p.prosecdef AS definer
        FROM pg_catalog.pg_proc AS p
        INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('crm', 'crm_private')
          AND p.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype
        ORDER BY 1
    LOOP
        FOREACH v_role IN ARRAY v_existing LOOP
            v_grant := CASE
                WHEN v_function.definer THEN
                    coalesce(c_definer_callers -> v_function.fn::text, '[]') ? v_role
                WHEN v_function.schema_name = 'crm_private' THEN
                    CASE
                        WHEN v_function.name = ANY (c_app_helpers) THEN v_role = 'crm_app'
                        WHEN v_function.name = ANY (c_api_helpers) THEN v_role = 'crm_api'
                        ELSE TRUE
                    END
                WHEN v_function.name LIKE 'get\_%' THEN v_role <> 'crm_runner'
                WHEN v_function.name = ANY (c_shared_functions) THEN TRUE
                WHEN v_role = 'crm_runner' THEN v_function.name = ANY (c_runner_functions)
                WHEN v_role = 'crm_app' THEN v_function.name = ANY (c_app_functions)
                WHEN v_role = 'crm_api' THEN v_function.name = ANY (c_api_functions)
                ELSE FALSE
            END;
            IF v_grant THEN
                EXECUTE pg_catalog.format(
                    'GRANT EXECUTE ON FUNCTION %s TO %I', v_function.fn, v_role
                );
            END IF;
        END LOOP;
    END LOOP;

    -- Row-level security on every tenant table (those with a client_id, and crm.clients
    -- itself), forced so that the owner is held to it too. The policies follow the grants:
    -- each role may do, on every client's rows, what it was granted; the viewer's restrictive
    -- policy then keeps it to the client of crm.client_id (and to nothing when that is unset).
    FOR v_table IN
        SELECT
            c.oid::regclass AS rel,
            pg_catalog.pg_get_userbyid(c.relowner) AS owner,
            c.relrowsecurity AS enabled,
            c.relforcerowsecurity AS forced,
            CASE WHEN c.oid = 'crm.clients'::regclass THEN 'id' ELSE 'client_id' END AS tenant
        FROM pg_catalog.pg_class AS c
        INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('crm', 'crm_private')
          AND c.relkind IN ('r', 'p')
          AND (
              c.oid = 'crm.clients'::regclass
              OR EXISTS (
                  SELECT 1
                  FROM pg_catalog.pg_attribute AS a
                  WHERE a.attrelid = c.oid AND a.attname = 'client_id' AND NOT a.attisdropped
              )
          )
        ORDER BY 1
    LOOP
        IF NOT v_table.enabled THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', v_table.rel);
        END IF;
        IF NOT v_table.forced THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', v_table.rel);
        END IF;
        FOR v_roles IN
            SELECT pol.polname
            FROM pg_catalog.pg_policy AS pol
            WHERE pol.polrelid = v_table.rel AND pol.polname LIKE 'agency\_crm\_%'
        LOOP
            EXECUTE pg_catalog.format('DROP POLICY %I ON %s', v_roles, v_table.rel);
        END LOOP;
        -- The owner (and the SECURITY DEFINER functions, which run as the owner).
        EXECUTE pg_catalog.format(
            'CREATE POLICY agency_crm_owner ON %s AS PERMISSIVE FOR ALL TO %I'
            ' USING (true) WITH CHECK (true)',
            v_table.rel, v_table.owner
        );
        -- Each command, to the roles granted it on this table, on every client's rows.
        FOREACH v_command IN ARRAY ARRAY['SELECT', 'INSERT', 'UPDATE'] LOOP
            SELECT string_agg(pg_catalog.quote_ident(r), ', ' ORDER BY r)
            INTO v_roles
            FROM pg_catalog.unnest(v_existing) AS r
            WHERE pg_catalog.has_any_column_privilege(r, v_table.rel, v_command);
            CONTINUE WHEN v_roles IS NULL;
            EXECUTE pg_catalog.format(
                'CREATE POLICY %I ON %s AS PERMISSIVE FOR %s TO %s %s',
                CASE v_command
                    WHEN 'SELECT' THEN 'agency_crm_read'
                    ELSE 'agency_crm_' || pg_catalog.lower(v_command)
                END,
                v_table.rel, v_command, v_roles,
                CASE v_command
                    WHEN 'SELECT' THEN 'USING (true)'
                    WHEN 'INSERT' THEN 'WITH CHECK (true)'
                    ELSE 'USING (true) WITH CHECK (true)'
                END
            );
        END LOOP;
        SELECT string_agg(pg_catalog.quote_ident(r), ', ' ORDER BY r)
        INTO v_roles
        FROM pg_catalog.unnest(v_existing) AS r
        WHERE r IN ('crm_client_viewer', 'crm_api');
        IF v_roles IS NOT NULL THEN
            -- The setting is read in a scalar subquery, which PostgreSQL evaluates once per
            -- statement (an InitPlan); written bare, it is read again each time a correlated
            -- subquery runs (once per lost deal in crm.get_lost_deal_analysis: 6-7 % of its
            -- time, docs/benchmarks.md).
            v_tenant := pg_catalog.format(
                '%I = (SELECT nullif('
                'pg_catalog.current_setting(''crm.client_id'', true), '''')::uuid)',
                v_table.tenant
            );
            EXECUTE pg_catalog.format(
                'CREATE POLICY agency_crm_one_client ON %s AS RESTRICTIVE FOR ALL'
                ' TO %s USING (%s) WITH CHECK (%s)',
                v_table.rel, v_roles, v_tenant, v_tenant
            );
        END IF;
    END LOOP;
END;
$access$;
