-- After a deal is created or changed: its stage history, and a pending push for the
-- client's CRM, in the writer's transaction.

CREATE OR REPLACE FUNCTION crm_private.tg_deals__after_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    -- The initial stage: one history row per deal, entered when stage_changed_at says.
    INSERT INTO crm.deal_stage_history (
        client_id, deal_id, from_stage, to_stage, probability, value, changed_at, reason
    )
    SELECT
        n.client_id,
        n.id,
        NULL,
        n.stage,
        n.probability,
        n.value,
        n.stage_changed_at,
        nullif(pg_catalog.current_setting('crm.stage_change_reason', TRUE), '')
    FROM new_deals AS n;

    -- A client with no config may be being connected: wait for it, so the INSERT below sees
    -- its config (crm_private.await_connects).
    PERFORM crm_private.await_connects(ARRAY(SELECT n.client_id FROM new_deals AS n));
    INSERT INTO crm.crm_push_queue (client_id, operation, lead_id, meeting_id, deal_id)
    SELECT n.client_id, 'deal_created', n.lead_id, n.meeting_id, n.id
    FROM new_deals AS n
    WHERE n.deleted_at IS NULL
      AND EXISTS (
          SELECT 1
          FROM crm.client_crm_configs AS cfg
          WHERE cfg.client_id = n.client_id AND cfg.deleted_at IS NULL AND cfg.is_active
      )
    ORDER BY n.client_id, n.id
    ON CONFLICT (client_id, operation, (coalesce(deal_id, meeting_id, lead_id)))
    WHERE status = 'pending'
    DO UPDATE SET updated_at = pg_catalog.now();
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_deals__after_insert() IS
'Trigger (AFTER INSERT on crm.deals, per statement): writes each deal''s initial
crm.deal_stage_history row and enqueues the deal_created pushes.';

REVOKE ALL ON FUNCTION crm_private.tg_deals__after_insert() FROM public;

CREATE OR REPLACE TRIGGER _500_after_insert
AFTER INSERT ON crm.deals
REFERENCING NEW TABLE AS new_deals
FOR EACH STATEMENT
EXECUTE FUNCTION crm_private.tg_deals__after_insert();

CREATE OR REPLACE FUNCTION crm_private.tg_deals__after_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF NEW.stage IS DISTINCT FROM OLD.stage THEN
        -- OLD is the row this update replaced (the latest committed version, even when two
        -- sessions update the deal at once), so each row's from_stage is the previous to_stage.
        INSERT INTO crm.deal_stage_history (
            client_id, deal_id, from_stage, to_stage, probability, value, changed_at,
            time_in_from_stage, reason
        )
        VALUES (
            NEW.client_id,
            NEW.id,
            OLD.stage,
            NEW.stage,
            NEW.probability,
            NEW.value,
            NEW.stage_changed_at,
            NEW.stage_changed_at - OLD.stage_changed_at,
            nullif(pg_catalog.current_setting('crm.stage_change_reason', TRUE), '')
        );
    END IF;
    IF NEW.deleted_at IS NULL THEN
        PERFORM crm_private.enqueue_push(NEW.client_id, 'deal_updated', NEW.lead_id, NULL, NEW.id);
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_deals__after_update() IS
'Trigger (AFTER UPDATE on crm.deals, when stage, value or won changed): records the stage
change in crm.deal_stage_history and enqueues the deal_updated push.';

REVOKE ALL ON FUNCTION crm_private.tg_deals__after_update() FROM public;

CREATE OR REPLACE TRIGGER _500_after_update
AFTER UPDATE ON crm.deals
FOR EACH ROW
WHEN (
    old.stage IS DISTINCT FROM new.stage
    OR old.value IS DISTINCT FROM new.value
    OR old.won IS DISTINCT FROM new.won
)
EXECUTE FUNCTION crm_private.tg_deals__after_update();
