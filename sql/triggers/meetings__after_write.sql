-- After a meeting is booked or changed: the lead learns it booked, reschedules are kept in
-- crm.meeting_reschedules, a good outcome may create a deal, and the client's CRM gets a
-- pending push, all in the writer's transaction.

-- Booking (statement level, so a bulk insert updates leads and enqueues in one statement each).
CREATE OR REPLACE FUNCTION crm_private.tg_meetings__after_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_row record;
BEGIN
    -- The lead booked: meeting_booked, the first booking time, and status meeting_booked
    -- unless the lead is already further on (qualified, customer).
    UPDATE crm.leads AS l
    SET meeting_booked = TRUE,
        meeting_booked_at = least(l.meeting_booked_at, b.first_booked_at),
        status = CASE WHEN l.status IN ('qualified', 'customer') THEN l.status
            ELSE 'meeting_booked' END
    FROM (
        SELECT n.client_id, n.lead_id, min(n.booked_at) AS first_booked_at
        FROM new_meetings AS n
        WHERE n.deleted_at IS NULL
        GROUP BY n.client_id, n.lead_id
    ) AS b
    WHERE l.client_id = b.client_id
      AND l.id = b.lead_id
      AND (
          NOT l.meeting_booked
          OR l.meeting_booked_at > b.first_booked_at
          OR l.status NOT IN ('meeting_booked', 'qualified', 'customer')
      );

    -- A client with no config may be being connected: wait for it, so the INSERT below sees
    -- its config (crm_private.await_connects).
    PERFORM crm_private.await_connects(ARRAY(SELECT n.client_id FROM new_meetings AS n));
    INSERT INTO crm.crm_push_queue (client_id, operation, lead_id, meeting_id)
    SELECT n.client_id, 'meeting_booked', n.lead_id, n.id
    FROM new_meetings AS n
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

    -- Meetings inserted with an outcome already recorded (historical imports).
    FOR v_row IN
        SELECT n.client_id, n.lead_id, n.id, n.meeting_outcome
        FROM new_meetings AS n
        WHERE n.deleted_at IS NULL
          AND n.meeting_outcome IS NOT NULL
          AND n.meeting_outcome <> 'pending'
        ORDER BY n.client_id, n.id
    LOOP
        PERFORM crm_private.create_deal_for_meeting(v_row.client_id, v_row.id);
        PERFORM crm_private.enqueue_push(
            v_row.client_id, 'meeting_outcome', v_row.lead_id, v_row.id, NULL
        );
    END LOOP;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_meetings__after_insert() IS
'Trigger (AFTER INSERT on crm.meetings, per statement): marks the leads as having booked,
enqueues meeting_booked pushes, and for meetings inserted with an outcome creates the deal and
enqueues the outcome push.';

REVOKE ALL ON FUNCTION crm_private.tg_meetings__after_insert() FROM public;

CREATE OR REPLACE TRIGGER _500_after_insert
AFTER INSERT ON crm.meetings
REFERENCING NEW TABLE AS new_meetings
FOR EACH STATEMENT
EXECUTE FUNCTION crm_private.tg_meetings__after_insert();

-- Changes (row level: updates come one meeting at a time).
CREATE OR REPLACE FUNCTION crm_private.tg_meetings__after_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    CASE crm_private.meeting_reschedule_kind(OLD, NEW)
        WHEN 'new' THEN
            INSERT INTO crm.meeting_reschedules (
                client_id, meeting_id, previous_scheduled_at, new_scheduled_at
            )
            VALUES (
                NEW.client_id,
                NEW.id,
                OLD.scheduled_at,
                nullif(NEW.scheduled_at, OLD.scheduled_at)
            );
        WHEN 'complete' THEN
            UPDATE crm.meeting_reschedules AS r
            SET new_scheduled_at = NEW.scheduled_at
            WHERE r.client_id = NEW.client_id
              AND r.meeting_id = NEW.id
              AND r.new_scheduled_at IS NULL;
        ELSE
            NULL;
    END CASE;
    IF NEW.meeting_outcome IS DISTINCT FROM OLD.meeting_outcome
        AND NEW.meeting_outcome IS NOT NULL
        AND NEW.meeting_outcome <> 'pending'
        AND NEW.deleted_at IS NULL THEN
        IF NEW.meeting_outcome = 'good' THEN
            PERFORM crm_private.create_deal_for_meeting(NEW.client_id, NEW.id);
        END IF;
        PERFORM crm_private.enqueue_push(NEW.client_id, 'meeting_outcome', NEW.lead_id, NEW.id, NULL);
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_meetings__after_update() IS
'Trigger (AFTER UPDATE on crm.meetings): records reschedules, creates the deal for a good
outcome, and enqueues the meeting_outcome push when an outcome is recorded.';

REVOKE ALL ON FUNCTION crm_private.tg_meetings__after_update() FROM public;

CREATE OR REPLACE TRIGGER _500_after_update
AFTER UPDATE ON crm.meetings
FOR EACH ROW
WHEN (
    old.scheduled_at IS DISTINCT FROM new.scheduled_at
    OR old.meeting_outcome IS DISTINCT FROM new.meeting_outcome
)
EXECUTE FUNCTION crm_private.tg_meetings__after_update();
