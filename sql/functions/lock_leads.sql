-- PERFORM crm_private.lock_leads(ARRAY[client_id], ARRAY[lead_id])

CREATE OR REPLACE FUNCTION crm_private.lock_leads(
    p_client_ids uuid[],
    p_lead_ids uuid[]
)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    -- FOR NO KEY UPDATE: writers of the same lead's touches and deals wait for each other,
    -- while foreign-key checks (KEY SHARE) and readers do not. In (client_id, id) order, so
    -- two writers of several leads each cannot deadlock on these rows.
    PERFORM 1
    FROM crm.leads AS l
    WHERE l.client_id = ANY(p_client_ids) AND l.id = ANY(p_lead_ids)
    ORDER BY l.client_id, l.id
    FOR NO KEY UPDATE OF l;
END;
$$;

COMMENT ON FUNCTION crm_private.lock_leads(uuid[], uuid[]) IS
'Lock the given leads'' rows until the end of the transaction (FOR NO KEY UPDATE, in id order).
The attribution triggers of crm.activities and crm.deals call it before they read a lead''s
touches and deals, so two writers of one lead take turns and the second computes the credits
from what the first committed (READ COMMITTED takes a new snapshot per statement): kept credits
always equal a fresh computation, whatever the interleaving.';

REVOKE ALL ON FUNCTION crm_private.lock_leads(uuid[], uuid[]) FROM public;
