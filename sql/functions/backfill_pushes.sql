-- SELECT * FROM crm.backfill_pushes('<client uuid>', p_since => now() - interval '1 year');
-- requires: connection_lock.sql

CREATE OR REPLACE FUNCTION crm.backfill_pushes(
    p_client_id uuid,
    p_since timestamptz DEFAULT NULL
)
RETURNS TABLE (meetings integer, deals integer)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_config uuid;
    v_meetings integer;
    v_deals integer;
BEGIN
    IF p_client_id IS NULL THEN
        RAISE EXCEPTION 'crm.backfill_pushes: p_client_id must not be NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of the client whose history to queue (crm.clients.id).';
    END IF;
    PERFORM crm_private.connection_lock(p_client_id);
    SELECT cfg.id INTO v_config
    FROM crm.client_crm_configs AS cfg
    WHERE cfg.client_id = p_client_id AND cfg.deleted_at IS NULL AND cfg.is_active;
    IF v_config IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = pg_catalog.format(
                'crm.backfill_pushes: client %s has no connected CRM to backfill', p_client_id
            ),
            HINT = pg_catalog.format(
                'Connect its CRM first: agency-crm crm connect hubspot|pipedrive|close '
                '--client %s.',
                p_client_id
            );
    END IF;

    -- Live meetings (of live leads: the runner skips the rest, and the CRM never gets them,
    -- so they would be queued again on every run) whose deal the CRM has not got from this
    -- config, and that no push is about to send, oldest first: one meeting_booked each (it
    -- sends the lead and the meeting's deal as they are now).
    INSERT INTO crm.crm_push_queue AS q (client_id, operation, lead_id, meeting_id)
    SELECT m.client_id, 'meeting_booked', m.lead_id, m.id
    FROM crm.meetings AS m
    INNER JOIN crm.leads AS l ON l.client_id = m.client_id AND l.id = m.lead_id
    WHERE m.client_id = p_client_id
      AND m.deleted_at IS NULL
      AND l.deleted_at IS NULL
      AND (p_since IS NULL OR m.booked_at >= p_since)
      AND NOT EXISTS (
          SELECT 1
          FROM crm.crm_external_ids AS x
          WHERE x.client_id = m.client_id
            AND x.crm_config_id = v_config
            AND x.entity_type = 'deal'
            AND x.external_key = 'acrm-meeting-' || m.id
            AND x.crm_id IS NOT NULL
            AND x.create_sent_at IS NULL
      )
      AND NOT EXISTS (
          SELECT 1
          FROM crm.crm_push_queue AS o
          WHERE o.client_id = m.client_id
            AND o.meeting_id = m.id
            AND o.status IN ('pending', 'in_flight', 'held')
      )
    ORDER BY m.booked_at, m.id
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_meetings = ROW_COUNT;

    -- Live deals of no live meeting (a meeting's deal travels with its meeting's push).
    INSERT INTO crm.crm_push_queue AS q (client_id, operation, lead_id, deal_id)
    SELECT d.client_id, 'deal_created', d.lead_id, d.id
    FROM crm.deals AS d
    INNER JOIN crm.leads AS l ON l.client_id = d.client_id AND l.id = d.lead_id
    WHERE d.client_id = p_client_id
      AND d.deleted_at IS NULL
      AND l.deleted_at IS NULL
      AND (p_since IS NULL OR d.created_at >= p_since)
      AND NOT EXISTS (
          SELECT 1
          FROM crm.meetings AS m
          WHERE m.client_id = d.client_id AND m.id = d.meeting_id AND m.deleted_at IS NULL
      )
      AND NOT EXISTS (
          SELECT 1
          FROM crm.crm_external_ids AS x
          WHERE x.client_id = d.client_id
            AND x.crm_config_id = v_config
            AND x.entity_type = 'deal'
            AND x.external_key
            = coalesce('acrm-meeting-' || d.meeting_id, 'acrm-deal-' || d.id)
            AND x.crm_id IS NOT NULL
            AND x.create_sent_at IS NULL
      )
      AND NOT EXISTS (
          SELECT 1
          FROM crm.crm_push_queue AS o
          WHERE o.client_id = d.client_id
            AND o.deal_id = d.id
            AND o.status IN ('pending', 'in_flight', 'held')
      )
    ORDER BY d.created_at, d.id
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_deals = ROW_COUNT;

    RETURN QUERY SELECT v_meetings, v_deals;
END;
$$;

COMMENT ON FUNCTION crm.backfill_pushes(uuid, timestamptz) IS
'Queue the client''s history for its connected CRM: one meeting_booked push per live meeting
(booked at or after p_since; NULL: all) and one deal_created per live deal without a live
meeting (created at or after p_since), each of a live lead, that the CRM has not got from
this config and that no push is already about to send, oldest first. Run again, it queues
nothing new. Called on connect, and by agency-crm push backfill. Returns how many meetings
and deals were queued; no connected CRM: 55000 (object_not_in_prerequisite_state); a NULL
p_client_id: 22023.';

REVOKE ALL ON FUNCTION crm.backfill_pushes(uuid, timestamptz) FROM public;
