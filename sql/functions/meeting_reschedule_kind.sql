-- crm_private.meeting_reschedule_kind(old_row, new_row) -> 'none' | 'new' | 'complete'

CREATE OR REPLACE FUNCTION crm_private.meeting_reschedule_kind(
    p_old crm.meetings,
    p_new crm.meetings
)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = ''
AS $$
DECLARE
    v_time_changed boolean := p_new.scheduled_at IS DISTINCT FROM p_old.scheduled_at;
    v_became_rescheduled boolean := p_new.meeting_outcome IS NOT DISTINCT FROM 'rescheduled'
        AND p_old.meeting_outcome IS DISTINCT FROM 'rescheduled';
BEGIN
    IF NOT (v_time_changed OR v_became_rescheduled) THEN
        RETURN 'none';
    END IF;
    -- Outcome set to rescheduled earlier without a new time: this time change completes
    -- that reschedule rather than starting another one.
    IF v_time_changed AND NOT v_became_rescheduled
        AND p_old.meeting_outcome IS NOT DISTINCT FROM 'rescheduled'
        AND EXISTS (
            SELECT 1
            FROM crm.meeting_reschedules AS r
            WHERE r.client_id = p_old.client_id
              AND r.meeting_id = p_old.id
              AND r.new_scheduled_at IS NULL
        ) THEN
        RETURN 'complete';
    END IF;
    RETURN 'new';
END;
$$;

COMMENT ON FUNCTION crm_private.meeting_reschedule_kind(crm.meetings, crm.meetings) IS
'What an update of a meeting means for reschedules: none; new (scheduled_at changed or the
outcome became rescheduled; both at once are one reschedule); or complete (scheduled_at set on a
meeting whose rescheduled outcome was recorded without a new time).';

REVOKE ALL ON FUNCTION crm_private.meeting_reschedule_kind(crm.meetings, crm.meetings) FROM public;
