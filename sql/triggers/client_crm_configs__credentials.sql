-- A CRM config in error (refused credentials) is retried as soon as it is fixed: new
-- credentials reset it to pending, and leaving error releases its held pushes. Re-encrypting
-- the same credentials under a new key (`agency-crm secrets rotate`, which sets crm.rekey to on
-- in its transactions) is not new credentials.

CREATE OR REPLACE FUNCTION crm_private.tg_client_crm_configs__credentials()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF OLD.connection_status = 'error'
       AND NEW.connection_status = 'error'
       AND pg_catalog.current_setting('crm.rekey', TRUE) IS DISTINCT FROM 'on'
       AND (
           NEW.api_key IS DISTINCT FROM OLD.api_key
           OR NEW.oauth_access_token IS DISTINCT FROM OLD.oauth_access_token
           OR NEW.oauth_refresh_token IS DISTINCT FROM OLD.oauth_refresh_token
           OR NEW.api_base_url IS DISTINCT FROM OLD.api_base_url
       ) THEN
        NEW.connection_status := 'pending';
        NEW.last_error := NULL;
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_client_crm_configs__credentials() IS
'Trigger (BEFORE UPDATE on crm.client_crm_configs): new credentials (or base URL) on a config
in error set it back to pending and clear last_error (not when crm.rekey is on: the same
credentials re-encrypted under a new key).';

REVOKE ALL ON FUNCTION crm_private.tg_client_crm_configs__credentials() FROM public;

CREATE OR REPLACE TRIGGER _400_credentials
BEFORE UPDATE ON crm.client_crm_configs
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_client_crm_configs__credentials();

CREATE OR REPLACE FUNCTION crm_private.tg_client_crm_configs__release_held()
RETURNS trigger
LANGUAGE plpgsql
-- The owner's rights: app code fixing a config's credentials releases its held pushes, but
-- may not change a push's status itself.
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    -- Of several held pushes of one entity and operation, or a held one and a pending one,
    -- only the newest goes on: it sends the entity's current state.
    UPDATE crm.crm_push_queue AS q
    SET status = 'done',
        finished_at = pg_catalog.clock_timestamp(),
        last_error = 'superseded by a newer push of the same entity and operation'
    WHERE q.client_id = NEW.client_id
      AND q.status = 'held'
      AND EXISTS (
          SELECT 1
          FROM crm.crm_push_queue AS p
          WHERE p.client_id = q.client_id
            AND p.operation = q.operation
            AND coalesce(p.deal_id, p.meeting_id, p.lead_id)
            = coalesce(q.deal_id, q.meeting_id, q.lead_id)
            AND (p.status = 'pending' OR (p.status = 'held' AND p.id > q.id))
      );
    UPDATE crm.crm_push_queue AS q
    SET status = 'pending',
        run_after = pg_catalog.now()
    WHERE q.client_id = NEW.client_id AND q.status = 'held';
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_client_crm_configs__release_held() IS
'Trigger (AFTER UPDATE on crm.client_crm_configs, when connection_status leaves error, also
when a BEFORE trigger changed it): the client''s held pushes become pending again, due now; of
several of one entity and operation only the newest.
SECURITY DEFINER: the writer of the config need not be allowed to change pushes.';

REVOKE ALL ON FUNCTION crm_private.tg_client_crm_configs__release_held() FROM public;

CREATE OR REPLACE TRIGGER _600_release_held
AFTER UPDATE ON crm.client_crm_configs
FOR EACH ROW
WHEN (old.connection_status = 'error' AND new.connection_status <> 'error')
EXECUTE FUNCTION crm_private.tg_client_crm_configs__release_held();
