-- Keep crm_private.deal_attribution current when deals are created or change what their
-- eligible touches are (created_at, lead_id).
-- requires: refresh_deal_attribution.sql, lock_leads.sql

CREATE OR REPLACE FUNCTION crm_private.tg_deals__attribution_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM crm_private.lock_leads(
        ARRAY(SELECT DISTINCT n.client_id FROM new_deals AS n),
        ARRAY(SELECT DISTINCT n.lead_id FROM new_deals AS n)
    );
    PERFORM crm_private.refresh_deal_attribution(n.client_id, array_agg(n.id))
    FROM new_deals AS n
    GROUP BY n.client_id;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_deals__attribution_insert() IS
'Trigger (AFTER INSERT on crm.deals, per statement): computes the new deals'' attribution credits.';

REVOKE ALL ON FUNCTION crm_private.tg_deals__attribution_insert() FROM public;

CREATE OR REPLACE TRIGGER _600_attribution_insert
AFTER INSERT ON crm.deals
REFERENCING NEW TABLE AS new_deals
FOR EACH STATEMENT
EXECUTE FUNCTION crm_private.tg_deals__attribution_insert();

CREATE OR REPLACE FUNCTION crm_private.tg_deals__attribution_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM crm_private.lock_leads(ARRAY[NEW.client_id], ARRAY[OLD.lead_id, NEW.lead_id]);
    PERFORM crm_private.refresh_deal_attribution(NEW.client_id, ARRAY[NEW.id]);
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_deals__attribution_update() IS
'Trigger (AFTER UPDATE on crm.deals, when created_at or lead_id changed): recomputes the deal''s
attribution credits.';

REVOKE ALL ON FUNCTION crm_private.tg_deals__attribution_update() FROM public;

CREATE OR REPLACE TRIGGER _600_attribution_update
AFTER UPDATE ON crm.deals
FOR EACH ROW
WHEN (
    old.created_at IS DISTINCT FROM new.created_at
    OR old.lead_id IS DISTINCT FROM new.lead_id
)
EXECUTE FUNCTION crm_private.tg_deals__attribution_update();
