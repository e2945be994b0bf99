-- PERFORM crm_private.refresh_deal_attribution(client_id, ARRAY[deal_id])
-- requires: compute_deal_attribution.sql

CREATE OR REPLACE FUNCTION crm_private.refresh_deal_attribution(
    p_client_id uuid,
    p_deal_ids uuid[]
)
RETURNS void
LANGUAGE plpgsql
-- The owner's rights: app code (crm_app) keeps the credits through its writes of touches and
-- deals, but may not delete them itself. EXECUTE: crm_app only (sql/access.sql).
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    DELETE FROM crm_private.deal_attribution AS x
    WHERE x.client_id = p_client_id AND x.deal_id = ANY(p_deal_ids);
    INSERT INTO crm_private.deal_attribution (
        client_id, deal_id, channel, touches, first_touch, last_touch, linear, time_decay,
        position_based, j_shaped, inverse_j
    )
    SELECT
        p_client_id,
        c.deal_id,
        c.channel,
        c.touches,
        c.first_touch,
        c.last_touch,
        c.linear,
        c.time_decay,
        c.position_based,
        c.j_shaped,
        c.inverse_j
    FROM crm_private.compute_deal_attribution(p_client_id, p_deal_ids) AS c;
END;
$$;

COMMENT ON FUNCTION crm_private.refresh_deal_attribution(uuid, uuid[]) IS
'Recompute the crm_private.deal_attribution rows of the given deals (called by the triggers of
crm.deals and crm.activities when a deal''s eligible touches may have changed).
SECURITY DEFINER: the writer need not be allowed to delete credits.';

REVOKE ALL ON FUNCTION crm_private.refresh_deal_attribution(uuid, uuid[]) FROM public;
