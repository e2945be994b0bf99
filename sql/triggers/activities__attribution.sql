-- Keep crm_private.deal_attribution current when a touch that counts for a deal (its lead's,
-- up to the deal's creation) is added, moved, re-channelled or soft-deleted.
-- requires: refresh_deal_attribution.sql, lock_leads.sql

CREATE OR REPLACE FUNCTION crm_private.tg_activities__attribution_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    -- Writers of one lead's touches and deals take turns (see crm_private.lock_leads): the
    -- next statement, run once the lock is ours, sees what the previous writer committed.
    PERFORM crm_private.lock_leads(
        ARRAY(
            SELECT DISTINCT n.client_id FROM new_activities AS n WHERE n.deleted_at IS NULL
        ),
        ARRAY(
            SELECT DISTINCT n.lead_id FROM new_activities AS n WHERE n.deleted_at IS NULL
        )
    );
    -- Per touched lead, an index lookup of its deals (LATERAL): the transition table has no
    -- statistics, and a join the planner could turn around would scan every deal per touch.
    PERFORM crm_private.refresh_deal_attribution(t.client_id, array_agg(d.id))
    FROM (
        SELECT n.client_id, n.lead_id, min(n.occurred_at) AS first_at
        FROM new_activities AS n
        WHERE n.deleted_at IS NULL
        GROUP BY n.client_id, n.lead_id
    ) AS t
    CROSS JOIN LATERAL (
        SELECT x.id
        FROM crm.deals AS x
        WHERE x.client_id = t.client_id AND x.lead_id = t.lead_id AND x.created_at >= t.first_at
    ) AS d
    GROUP BY t.client_id;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_activities__attribution_insert() IS
'Trigger (AFTER INSERT on crm.activities, per statement): recomputes the attribution credits of
the deals the new touches count for.';

REVOKE ALL ON FUNCTION crm_private.tg_activities__attribution_insert() FROM public;

CREATE OR REPLACE TRIGGER _600_attribution_insert
AFTER INSERT ON crm.activities
REFERENCING NEW TABLE AS new_activities
FOR EACH STATEMENT
EXECUTE FUNCTION crm_private.tg_activities__attribution_insert();

CREATE OR REPLACE FUNCTION crm_private.tg_activities__attribution_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM crm_private.lock_leads(ARRAY[NEW.client_id], ARRAY[OLD.lead_id, NEW.lead_id]);
    PERFORM crm_private.refresh_deal_attribution(d.client_id, array_agg(d.id))
    FROM crm.deals AS d
    WHERE
        d.client_id = NEW.client_id
        AND d.lead_id IN (OLD.lead_id, NEW.lead_id)
        AND d.created_at >= least(OLD.occurred_at, NEW.occurred_at)
    GROUP BY d.client_id;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_activities__attribution_update() IS
'Trigger (AFTER UPDATE on crm.activities, when lead_id, channel, occurred_at or deleted_at
changed): recomputes the attribution credits of the deals the touch counted or counts for.';

REVOKE ALL ON FUNCTION crm_private.tg_activities__attribution_update() FROM public;

CREATE OR REPLACE TRIGGER _600_attribution_update
AFTER UPDATE ON crm.activities
FOR EACH ROW
WHEN (
    old.lead_id IS DISTINCT FROM new.lead_id
    OR old.channel IS DISTINCT FROM new.channel
    OR old.occurred_at IS DISTINCT FROM new.occurred_at
    OR old.deleted_at IS DISTINCT FROM new.deleted_at
)
EXECUTE FUNCTION crm_private.tg_activities__attribution_update();
