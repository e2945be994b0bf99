-- 0005: what the lifecycle triggers need: meeting reschedule history, a cancellation
-- reason, one deal per meeting, one pending push per entity and operation (collapse), and
-- no column defaults where a trigger derives the value from the row itself.

-- booked_at and stage_changed_at now come from the lifecycle triggers: booked_at from
-- created_at, stage_changed_at from created_at or closed_at. A column default of now()
-- would hide whether the writer supplied a value (historical imports).
ALTER TABLE crm.meetings ALTER COLUMN booked_at DROP DEFAULT;
ALTER TABLE crm.deals ALTER COLUMN stage_changed_at DROP DEFAULT;

COMMENT ON COLUMN crm.meetings.booked_at IS
'When the meeting was booked; when not supplied, the row''s created_at.';
COMMENT ON COLUMN crm.deals.stage_changed_at IS
'When the stage last changed; when not supplied, created_at (or closed_at for a deal inserted
closed), then the time of each stage change. Always equals the changed_at of the deal''s latest
crm.deal_stage_history row.';

ALTER TABLE crm.meetings ADD COLUMN cancellation_reason text;

COMMENT ON COLUMN crm.meetings.cancellation_reason IS
'Why the meeting was cancelled; recorded in meeting_notes when the outcome becomes cancelled.';

-- Write order of history rows: several changes in one transaction share now(), so time
-- alone cannot order them.
ALTER TABLE crm.deal_stage_history ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;

COMMENT ON COLUMN crm.deal_stage_history.seq IS
'Write order (increasing): orders the changes of a deal even when several share a changed_at.';

CREATE INDEX deal_stage_history_client_id_deal_id_seq_idx
ON crm.deal_stage_history (client_id, deal_id, seq);

CREATE TABLE crm.meeting_reschedules (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    client_id uuid NOT NULL,
    meeting_id uuid NOT NULL,
    previous_scheduled_at timestamptz NOT NULL,
    new_scheduled_at timestamptz,
    rescheduled_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meeting_reschedules_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT meeting_reschedules_client_id_meeting_id_fkey FOREIGN KEY (client_id, meeting_id)
    REFERENCES crm.meetings (client_id, id)
);

COMMENT ON TABLE crm.meeting_reschedules IS
'Append-only history of meeting reschedules, one row per reschedule, written by the lifecycle
trigger: the time the meeting was moved from and, once known, the time it was moved to.';
COMMENT ON COLUMN crm.meeting_reschedules.id IS 'Row id.';
COMMENT ON COLUMN crm.meeting_reschedules.seq IS 'Write order (increasing).';
COMMENT ON COLUMN crm.meeting_reschedules.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.meeting_reschedules.meeting_id IS 'Meeting that was rescheduled.';
COMMENT ON COLUMN crm.meeting_reschedules.previous_scheduled_at IS
'scheduled_at before the reschedule.';
COMMENT ON COLUMN crm.meeting_reschedules.new_scheduled_at IS
'scheduled_at after the reschedule; NULL while the outcome is rescheduled and no new time is
set yet (the next change of scheduled_at fills it).';
COMMENT ON COLUMN crm.meeting_reschedules.rescheduled_at IS 'When the reschedule was recorded.';
COMMENT ON COLUMN crm.meeting_reschedules.created_at IS 'When the row was written.';
COMMENT ON CONSTRAINT meeting_reschedules_client_id_meeting_id_fkey ON crm.meeting_reschedules IS
'meeting_id must name a meeting of the same client.';

CREATE INDEX meeting_reschedules_client_id_meeting_id_idx
ON crm.meeting_reschedules (client_id, meeting_id, seq);

CREATE UNIQUE INDEX deals_client_id_meeting_id_key
ON crm.deals (client_id, meeting_id)
WHERE meeting_id IS NOT NULL AND deleted_at IS NULL;

COMMENT ON INDEX crm.deals_client_id_meeting_id_key IS
'At most one live deal per meeting, so a good outcome can never create a second one.';

-- crm.reopen_deal(deal_id, reason) finds a deal by id alone.
CREATE INDEX deals_id_idx ON crm.deals (id);

CREATE UNIQUE INDEX crm_push_queue_pending_entity_key
ON crm.crm_push_queue (client_id, operation, (coalesce(deal_id, meeting_id, lead_id)))
WHERE status = 'pending';

COMMENT ON INDEX crm.crm_push_queue_pending_entity_key IS
'One pending push per client, operation and entity: repeated changes before the drainer runs
collapse into the pending row (the drainer sends the entity''s state at send time).';
