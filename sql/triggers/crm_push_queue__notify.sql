-- New pushes wake `agency-crm push drain --watch` (LISTEN crm_push_queue) at commit.

CREATE OR REPLACE FUNCTION crm_private.tg_crm_push_queue__notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_client_id uuid;
BEGIN
    -- One notification per client per statement; PostgreSQL folds repeats within a
    -- transaction and delivers them at commit (none on rollback).
    FOR v_client_id IN SELECT DISTINCT n.client_id FROM new_pushes AS n LOOP
        PERFORM pg_catalog.pg_notify('crm_push_queue', v_client_id::text);
    END LOOP;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_crm_push_queue__notify() IS
'Trigger (AFTER INSERT on crm.crm_push_queue, per statement): NOTIFY crm_push_queue with the
client id of the new pushes, so a watching drainer starts at once.';

REVOKE ALL ON FUNCTION crm_private.tg_crm_push_queue__notify() FROM public;

CREATE OR REPLACE TRIGGER _900_notify
AFTER INSERT ON crm.crm_push_queue
REFERENCING NEW TABLE AS new_pushes
FOR EACH STATEMENT
EXECUTE FUNCTION crm_private.tg_crm_push_queue__notify();
