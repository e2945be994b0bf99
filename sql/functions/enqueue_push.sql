-- PERFORM crm_private.enqueue_push(client_id, 'deal_updated', lead_id, NULL, deal_id)
-- requires: await_connects.sql

CREATE OR REPLACE FUNCTION crm_private.enqueue_push(
    p_client_id uuid,
    p_operation text,
    p_lead_id uuid,
    p_meeting_id uuid,
    p_deal_id uuid
)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    -- No live, active CRM config: nothing to push (the spec's "skipped").
    IF NOT EXISTS (
        SELECT 1
        FROM crm.client_crm_configs AS cfg
        WHERE cfg.client_id = p_client_id
          AND cfg.deleted_at IS NULL
          AND cfg.is_active
    ) THEN
        -- Unless a connect is committing one (crm_private.await_connects): look again.
        PERFORM crm_private.await_connects(ARRAY[p_client_id]);
        IF NOT EXISTS (
            SELECT 1
            FROM crm.client_crm_configs AS cfg
            WHERE cfg.client_id = p_client_id
              AND cfg.deleted_at IS NULL
              AND cfg.is_active
        ) THEN
            RETURN;
        END IF;
    END IF;
    -- A pending deal_created sends the deal's state at send time: an update adds nothing,
    -- provided that push is not sent before this change commits. So the row is locked, until
    -- the writer commits: a claim (FOR UPDATE SKIP LOCKED) passes over it meanwhile. A claim
    -- that took it first is waited for, and the row, no longer pending, is not found: the
    -- change gets its own deal_updated. (The INSERT below collapses into a pending row of its
    -- own operation with ON CONFLICT DO UPDATE, which locks that row the same way.)
    IF p_operation = 'deal_updated' THEN
        PERFORM 1
        FROM crm.crm_push_queue AS q
        WHERE q.client_id = p_client_id
          AND q.operation = 'deal_created'
          AND coalesce(q.deal_id, q.meeting_id, q.lead_id) = p_deal_id
          AND q.status = 'pending'
        FOR SHARE;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    INSERT INTO crm.crm_push_queue AS q (client_id, operation, lead_id, meeting_id, deal_id)
    VALUES (p_client_id, p_operation, p_lead_id, p_meeting_id, p_deal_id)
    ON CONFLICT (client_id, operation, (coalesce(deal_id, meeting_id, lead_id)))
    WHERE status = 'pending'
    DO UPDATE SET updated_at = pg_catalog.now();
END;
$$;

COMMENT ON FUNCTION crm_private.enqueue_push(uuid, text, uuid, uuid, uuid) IS
'Enqueue one CRM push in the caller''s transaction, when the client has a live, active CRM
config. A second change to the same entity and operation before the drainer runs collapses into
the pending row; a deal_updated collapses into a pending deal_created of the same deal. The
pending row collapsed into stays locked until the caller commits, so the runner cannot send it
without the change.';

REVOKE ALL ON FUNCTION crm_private.enqueue_push(uuid, text, uuid, uuid, uuid) FROM public;
