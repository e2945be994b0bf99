-- SELECT crm_private.create_deal_for_meeting(client_id, meeting_id)

CREATE OR REPLACE FUNCTION crm_private.create_deal_for_meeting(
    p_client_id uuid,
    p_meeting_id uuid
)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_meeting crm.meetings;
    v_lead crm.leads;
    v_deal_id uuid;
    v_who text;
BEGIN
    SELECT m.* INTO v_meeting
    FROM crm.meetings AS m
    WHERE m.client_id = p_client_id AND m.id = p_meeting_id;
    IF v_meeting.deal_id IS NOT NULL OR v_meeting.deleted_at IS NOT NULL
        OR v_meeting.meeting_outcome IS DISTINCT FROM 'good'
        OR NOT EXISTS (
            SELECT 1
            FROM crm.clients AS c
            WHERE c.id = p_client_id AND c.auto_create_deals
        ) THEN
        RETURN NULL;
    END IF;
    -- A live deal already made from this meeting (by hand, or before a soft delete of the
    -- link): link it instead of making a second one.
    SELECT d.id INTO v_deal_id
    FROM crm.deals AS d
    WHERE d.client_id = p_client_id AND d.meeting_id = p_meeting_id AND d.deleted_at IS NULL;
    IF v_deal_id IS NULL THEN
        SELECT l.* INTO v_lead
        FROM crm.leads AS l
        WHERE l.client_id = p_client_id AND l.id = v_meeting.lead_id;
        IF coalesce(v_meeting.outcome_recorded_at, pg_catalog.now()) < v_lead.created_at THEN
            RAISE EXCEPTION 'meeting %: outcome_recorded_at % is before lead % was created (%): '
                'its deal would be dated before its lead', p_meeting_id,
                v_meeting.outcome_recorded_at, v_lead.id, v_lead.created_at
                USING ERRCODE = 'check_violation',
                      COLUMN = 'outcome_recorded_at', TABLE = 'meetings', SCHEMA = 'crm',
                      HINT = 'The deal made from a good meeting is created when its outcome was '
                          'recorded: give an outcome_recorded_at after the lead''s created_at '
                          '(imports: give the lead its real created_at too).';
        END IF;
        v_who := coalesce(
            nullif(pg_catalog.btrim(v_lead.company), ''),
            nullif(pg_catalog.btrim(concat_ws(' ', v_lead.first_name, v_lead.last_name)), ''),
            v_lead.email,
            'Lead'
        );
        INSERT INTO crm.deals (
            client_id, lead_id, meeting_id, name, stage,
            converting_activity_id, converting_channel, created_at
        )
        VALUES (
            p_client_id,
            v_meeting.lead_id,
            p_meeting_id,
            pg_catalog.left(
                v_who || ' (' || pg_catalog.replace(v_meeting.meeting_type, '_', ' ')
                || ' meeting)',
                500
            ),
            'qualification',
            v_meeting.converting_activity_id,
            v_meeting.converting_channel,
            coalesce(v_meeting.outcome_recorded_at, pg_catalog.now())
        )
        -- A deal of this meeting made by hand in a transaction that was not yet committed
        -- when we looked: wait for it, then link it (the next statement sees it).
        ON CONFLICT (client_id, meeting_id) WHERE meeting_id IS NOT NULL AND deleted_at IS NULL
        DO NOTHING
        RETURNING id INTO v_deal_id;
        IF v_deal_id IS NULL THEN
            SELECT d.id INTO v_deal_id
            FROM crm.deals AS d
            WHERE d.client_id = p_client_id AND d.meeting_id = p_meeting_id
              AND d.deleted_at IS NULL;
        END IF;
    END IF;
    UPDATE crm.meetings AS m
    SET deal_id = v_deal_id, deal_created = TRUE
    WHERE m.client_id = p_client_id AND m.id = p_meeting_id;
    RETURN v_deal_id;
END;
$$;

COMMENT ON FUNCTION crm_private.create_deal_for_meeting(uuid, uuid) IS
'Deal auto-creation: for a live meeting with outcome good, no deal yet, and a client with
auto_create_deals, create a deal in qualification linked to the meeting and its lead (attribution
copied from the meeting, created when the outcome was recorded) and set the meeting''s deal_id and
deal_created. Links an existing live deal of the meeting instead of creating a second one.
Returns the deal id, or NULL when nothing was done.';

REVOKE ALL ON FUNCTION crm_private.create_deal_for_meeting(uuid, uuid) FROM public;
