-- 0003: meetings, deals and the deal stage history.

CREATE TABLE crm.meetings (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    lead_id uuid NOT NULL,
    campaign_id uuid,
    scheduled_at timestamptz NOT NULL,
    duration_minutes integer NOT NULL,
    meeting_type text NOT NULL DEFAULT 'discovery',
    booked_by text,
    booking_method text,
    meeting_link text,
    calendar_event_id text,
    confirmed boolean NOT NULL DEFAULT FALSE,
    reminder_sent boolean NOT NULL DEFAULT FALSE,
    showed_up boolean,
    meeting_outcome text,
    meeting_notes text,
    next_steps text,
    deal_created boolean NOT NULL DEFAULT FALSE,
    deal_id uuid,
    converting_activity_id uuid,
    converting_channel crm.channel_type,
    touches_before_booking integer,
    days_to_booking integer,
    rescheduled_count integer NOT NULL DEFAULT 0,
    booked_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    reminder_sent_at timestamptz,
    showed_up_confirmed_at timestamptz,
    outcome_recorded_at timestamptz,
    cancelled_at timestamptz,
    no_show_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT meetings_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT meetings_client_id_lead_id_fkey FOREIGN KEY (client_id, lead_id)
    REFERENCES crm.leads (client_id, id),
    CONSTRAINT meetings_client_id_campaign_id_fkey FOREIGN KEY (client_id, campaign_id)
    REFERENCES crm.campaigns (client_id, id),
    CONSTRAINT meetings_client_id_converting_activity_id_fkey
    FOREIGN KEY (client_id, converting_activity_id)
    REFERENCES crm.activities (client_id, id),
    CONSTRAINT meetings_duration_minutes_check CHECK (duration_minutes BETWEEN 1 AND 1440),
    CONSTRAINT meetings_meeting_type_check CHECK (
        meeting_type IN ('discovery', 'demo', 'follow_up', 'close', 'onboarding', 'other')
    ),
    CONSTRAINT meetings_booked_by_check CHECK (booked_by IN ('ai', 'human', 'lead')),
    CONSTRAINT meetings_booking_method_check CHECK (
        booking_method IN ('calendly', 'direct', 'phone')
    ),
    CONSTRAINT meetings_meeting_outcome_check CHECK (
        meeting_outcome IN ('good', 'bad', 'rescheduled', 'no_show', 'cancelled', 'pending')
    ),
    CONSTRAINT meetings_showed_up_check CHECK (
        NOT (showed_up IS TRUE AND meeting_outcome = 'no_show')
        AND NOT (showed_up IS FALSE AND meeting_outcome IN ('good', 'bad', 'pending'))
    ),
    CONSTRAINT meetings_deal_created_check CHECK (NOT deal_created OR deal_id IS NOT NULL),
    CONSTRAINT meetings_touches_before_booking_check CHECK (touches_before_booking >= 0),
    CONSTRAINT meetings_days_to_booking_check CHECK (days_to_booking >= 0),
    CONSTRAINT meetings_rescheduled_count_check CHECK (rescheduled_count >= 0)
);

COMMENT ON TABLE crm.meetings IS
'A meeting booked with a lead, tracked from booking to outcome: booked, confirmed, reminder
sent, showed up, outcome recorded, deal created.';
COMMENT ON COLUMN crm.meetings.id IS 'Meeting id.';
COMMENT ON COLUMN crm.meetings.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.meetings.lead_id IS 'Lead the meeting is with.';
COMMENT ON COLUMN crm.meetings.campaign_id IS 'Campaign that produced the meeting, if any.';
COMMENT ON COLUMN crm.meetings.scheduled_at IS 'When the meeting takes place.';
COMMENT ON COLUMN crm.meetings.duration_minutes IS
'Length in minutes, 1-1440. Defaults by meeting_type: discovery 30, demo 45, follow_up 30,
close 30, onboarding 60, other 30.';
COMMENT ON COLUMN crm.meetings.meeting_type IS
'discovery, demo, follow_up, close, onboarding or other. Default discovery.';
COMMENT ON COLUMN crm.meetings.booked_by IS 'Who booked it: ai, human or lead. NULL if unknown.';
COMMENT ON COLUMN crm.meetings.booking_method IS
'How it was booked: calendly, direct or phone. NULL if unknown.';
COMMENT ON COLUMN crm.meetings.meeting_link IS 'Video call URL.';
COMMENT ON COLUMN crm.meetings.calendar_event_id IS 'External calendar event id.';
COMMENT ON COLUMN crm.meetings.confirmed IS 'The lead confirmed attendance.';
COMMENT ON COLUMN crm.meetings.reminder_sent IS 'A reminder was sent.';
COMMENT ON COLUMN crm.meetings.showed_up IS
'Attendance: true held, false no-show, NULL not known yet (never assumed).';
COMMENT ON COLUMN crm.meetings.meeting_outcome IS
'good, bad, rescheduled, no_show, cancelled or pending (happened, outcome to be decided).
NULL until an outcome is recorded.';
COMMENT ON COLUMN crm.meetings.meeting_notes IS 'Notes from the meeting.';
COMMENT ON COLUMN crm.meetings.next_steps IS 'Agreed next actions.';
COMMENT ON COLUMN crm.meetings.deal_created IS 'A deal was created from this meeting.';
COMMENT ON COLUMN crm.meetings.deal_id IS 'Deal created from or linked to this meeting.';
COMMENT ON COLUMN crm.meetings.converting_activity_id IS
'The touch that led to the booking (the lead''s last touch before booking).';
COMMENT ON COLUMN crm.meetings.converting_channel IS 'Channel of the converting touch.';
COMMENT ON COLUMN crm.meetings.touches_before_booking IS
'Number of touches to the lead before the booking.';
COMMENT ON COLUMN crm.meetings.days_to_booking IS 'Whole days from the first touch to booking.';
COMMENT ON COLUMN crm.meetings.rescheduled_count IS 'How many times the meeting was rescheduled.';
COMMENT ON COLUMN crm.meetings.booked_at IS 'When the meeting was booked.';
COMMENT ON COLUMN crm.meetings.confirmed_at IS 'When confirmed first became true.';
COMMENT ON COLUMN crm.meetings.reminder_sent_at IS 'When reminder_sent first became true.';
COMMENT ON COLUMN crm.meetings.showed_up_confirmed_at IS 'When showed_up was first recorded.';
COMMENT ON COLUMN crm.meetings.outcome_recorded_at IS 'When meeting_outcome was recorded.';
COMMENT ON COLUMN crm.meetings.cancelled_at IS 'When the meeting was cancelled.';
COMMENT ON COLUMN crm.meetings.no_show_reason IS 'Why the lead did not attend, if known.';
COMMENT ON COLUMN crm.meetings.created_at IS 'When the row was created.';
COMMENT ON COLUMN crm.meetings.updated_at IS 'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.meetings.deleted_at IS 'Soft-delete time; NULL while the row is live.';
COMMENT ON CONSTRAINT meetings_client_id_lead_id_fkey ON crm.meetings IS
'lead_id must name a lead of the same client.';
COMMENT ON CONSTRAINT meetings_client_id_campaign_id_fkey ON crm.meetings IS
'campaign_id must name a campaign of the same client.';
COMMENT ON CONSTRAINT meetings_client_id_converting_activity_id_fkey ON crm.meetings IS
'converting_activity_id must name an activity of the same client.';
COMMENT ON CONSTRAINT meetings_duration_minutes_check ON crm.meetings IS
'duration_minutes must be between 1 and 1440 (one day).';
COMMENT ON CONSTRAINT meetings_meeting_type_check ON crm.meetings IS
'meeting_type must be one of discovery, demo, follow_up, close, onboarding, other.';
COMMENT ON CONSTRAINT meetings_booked_by_check ON crm.meetings IS
'booked_by must be one of ai, human, lead (or NULL).';
COMMENT ON CONSTRAINT meetings_booking_method_check ON crm.meetings IS
'booking_method must be one of calendly, direct, phone (or NULL).';
COMMENT ON CONSTRAINT meetings_meeting_outcome_check ON crm.meetings IS
'meeting_outcome must be one of good, bad, rescheduled, no_show, cancelled, pending (or NULL).';
COMMENT ON CONSTRAINT meetings_showed_up_check ON crm.meetings IS
'showed_up must agree with meeting_outcome: not true with no_show, not false with good, bad
or pending.';
COMMENT ON CONSTRAINT meetings_deal_created_check ON crm.meetings IS
'deal_created may only be true when deal_id is set.';
COMMENT ON CONSTRAINT meetings_touches_before_booking_check ON crm.meetings IS
'touches_before_booking must not be negative.';
COMMENT ON CONSTRAINT meetings_days_to_booking_check ON crm.meetings IS
'days_to_booking must not be negative.';
COMMENT ON CONSTRAINT meetings_rescheduled_count_check ON crm.meetings IS
'rescheduled_count must not be negative.';

CREATE INDEX meetings_client_id_scheduled_at_idx ON crm.meetings (client_id, scheduled_at);
CREATE INDEX meetings_client_id_booked_at_idx ON crm.meetings (client_id, booked_at);
CREATE INDEX meetings_client_id_lead_id_idx ON crm.meetings (client_id, lead_id);
CREATE INDEX meetings_client_id_campaign_id_idx ON crm.meetings (client_id, campaign_id);
CREATE INDEX meetings_client_id_deal_id_idx ON crm.meetings (client_id, deal_id);
CREATE INDEX meetings_client_id_converting_activity_id_idx
ON crm.meetings (client_id, converting_activity_id);

CREATE TABLE crm.deals (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    lead_id uuid NOT NULL,
    meeting_id uuid,
    name text NOT NULL,
    value numeric(12, 2) NOT NULL DEFAULT 0,
    currency text NOT NULL,
    probability integer NOT NULL,
    stage crm.deal_stage_type NOT NULL DEFAULT 'qualification',
    stage_changed_at timestamptz NOT NULL DEFAULT now(),
    expected_close_date date,
    closed_at timestamptz,
    won boolean,
    lost_reason crm.deal_lost_reason_type,
    lost_notes text,
    days_to_close integer,
    converting_activity_id uuid,
    converting_channel crm.channel_type,
    first_touch_channel crm.channel_type,
    touches_before_deal integer,
    external_crm text,
    external_deal_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT deals_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT deals_client_id_lead_id_fkey FOREIGN KEY (client_id, lead_id)
    REFERENCES crm.leads (client_id, id),
    CONSTRAINT deals_client_id_meeting_id_fkey FOREIGN KEY (client_id, meeting_id)
    REFERENCES crm.meetings (client_id, id),
    CONSTRAINT deals_client_id_converting_activity_id_fkey
    FOREIGN KEY (client_id, converting_activity_id)
    REFERENCES crm.activities (client_id, id),
    CONSTRAINT deals_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 500),
    CONSTRAINT deals_value_check CHECK (value >= 0),
    CONSTRAINT deals_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT deals_probability_check CHECK (probability BETWEEN 0 AND 100),
    CONSTRAINT deals_lost_reason_check CHECK (
        (stage = 'closed_lost') = (lost_reason IS NOT NULL)
    ),
    CONSTRAINT deals_closed_at_check CHECK (
        (stage IN ('closed_won', 'closed_lost')) = (closed_at IS NOT NULL)
        AND closed_at >= created_at
    ),
    CONSTRAINT deals_won_check CHECK (
        won IS NOT DISTINCT FROM (
            CASE stage WHEN 'closed_won' THEN TRUE WHEN 'closed_lost' THEN FALSE END
        )
    ),
    CONSTRAINT deals_days_to_close_check CHECK (days_to_close >= 0),
    CONSTRAINT deals_touches_before_deal_check CHECK (touches_before_deal >= 0),
    CONSTRAINT deals_external_crm_check CHECK (
        external_crm IN ('hubspot', 'pipedrive', 'close')
    )
);

COMMENT ON TABLE crm.deals IS
'A sales opportunity for a lead, moving through the pipeline stages to closed_won or
closed_lost. Every stage change is recorded in crm.deal_stage_history.';
COMMENT ON COLUMN crm.deals.id IS 'Deal id.';
COMMENT ON COLUMN crm.deals.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.deals.lead_id IS 'Lead the deal is with.';
COMMENT ON COLUMN crm.deals.meeting_id IS 'Meeting the deal came from, if any.';
COMMENT ON COLUMN crm.deals.name IS 'Deal name, 1-500 characters.';
COMMENT ON COLUMN crm.deals.value IS 'Deal value in currency, >= 0, two decimals.';
COMMENT ON COLUMN crm.deals.currency IS
'ISO-4217 code (three upper-case letters); defaults to the client''s default_currency.';
COMMENT ON COLUMN crm.deals.probability IS
'Win probability in percent, 0-100; defaults from the stage.';
COMMENT ON COLUMN crm.deals.stage IS 'Pipeline stage (crm.deal_stage_type).';
COMMENT ON COLUMN crm.deals.stage_changed_at IS 'When the stage last changed.';
COMMENT ON COLUMN crm.deals.expected_close_date IS 'Target close date.';
COMMENT ON COLUMN crm.deals.closed_at IS
'When the deal closed; set exactly when the stage is closed_won or closed_lost.';
COMMENT ON COLUMN crm.deals.won IS 'true when closed_won, false when closed_lost, NULL while open.';
COMMENT ON COLUMN crm.deals.lost_reason IS
'Why the deal was lost; set exactly when the stage is closed_lost.';
COMMENT ON COLUMN crm.deals.lost_notes IS 'Details of the loss.';
COMMENT ON COLUMN crm.deals.days_to_close IS 'Whole days from created_at to closed_at.';
COMMENT ON COLUMN crm.deals.converting_activity_id IS 'The touch that led to the deal.';
COMMENT ON COLUMN crm.deals.converting_channel IS 'Channel of the converting touch.';
COMMENT ON COLUMN crm.deals.first_touch_channel IS 'Channel of the lead''s first touch.';
COMMENT ON COLUMN crm.deals.touches_before_deal IS 'Number of touches before the deal was created.';
COMMENT ON COLUMN crm.deals.external_crm IS
'CRM the deal was pushed to: hubspot, pipedrive or close.';
COMMENT ON COLUMN crm.deals.external_deal_id IS 'Id of the deal in that CRM.';
COMMENT ON COLUMN crm.deals.created_at IS
'When the deal was created (may be supplied on insert for historical imports).';
COMMENT ON COLUMN crm.deals.updated_at IS 'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.deals.deleted_at IS 'Soft-delete time; NULL while the row is live.';
COMMENT ON CONSTRAINT deals_client_id_lead_id_fkey ON crm.deals IS
'lead_id must name a lead of the same client.';
COMMENT ON CONSTRAINT deals_client_id_meeting_id_fkey ON crm.deals IS
'meeting_id must name a meeting of the same client.';
COMMENT ON CONSTRAINT deals_client_id_converting_activity_id_fkey ON crm.deals IS
'converting_activity_id must name an activity of the same client.';
COMMENT ON CONSTRAINT deals_name_check ON crm.deals IS
'name must be 1-500 characters after trimming spaces.';
COMMENT ON CONSTRAINT deals_value_check ON crm.deals IS 'value must be zero or more.';
COMMENT ON CONSTRAINT deals_currency_check ON crm.deals IS
'currency must be an ISO-4217 code: three upper-case letters, e.g. AUD, USD, EUR.';
COMMENT ON CONSTRAINT deals_probability_check ON crm.deals IS
'probability must be a percentage between 0 and 100.';
COMMENT ON CONSTRAINT deals_lost_reason_check ON crm.deals IS
'lost_reason must be set when, and only when, stage is closed_lost.';
COMMENT ON CONSTRAINT deals_closed_at_check ON crm.deals IS
'closed_at must be set when, and only when, the stage is closed_won or closed_lost, and must
not be before created_at.';
COMMENT ON CONSTRAINT deals_won_check ON crm.deals IS
'won must be true for closed_won, false for closed_lost and NULL for open stages.';
COMMENT ON CONSTRAINT deals_days_to_close_check ON crm.deals IS
'days_to_close must not be negative.';
COMMENT ON CONSTRAINT deals_touches_before_deal_check ON crm.deals IS
'touches_before_deal must not be negative.';
COMMENT ON CONSTRAINT deals_external_crm_check ON crm.deals IS
'external_crm must be one of hubspot, pipedrive, close (or NULL).';

CREATE INDEX deals_client_id_created_at_idx ON crm.deals (client_id, created_at);
CREATE INDEX deals_client_id_closed_at_idx ON crm.deals (client_id, closed_at)
WHERE closed_at IS NOT NULL;
CREATE INDEX deals_client_id_lead_id_idx ON crm.deals (client_id, lead_id);
CREATE INDEX deals_client_id_meeting_id_idx ON crm.deals (client_id, meeting_id);
CREATE INDEX deals_client_id_converting_activity_id_idx
ON crm.deals (client_id, converting_activity_id);

ALTER TABLE crm.meetings
ADD CONSTRAINT meetings_client_id_deal_id_fkey FOREIGN KEY (client_id, deal_id)
REFERENCES crm.deals (client_id, id);

COMMENT ON CONSTRAINT meetings_client_id_deal_id_fkey ON crm.meetings IS
'deal_id must name a deal of the same client.';

CREATE TABLE crm.deal_stage_history (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    deal_id uuid NOT NULL,
    from_stage crm.deal_stage_type,
    to_stage crm.deal_stage_type NOT NULL,
    probability integer NOT NULL,
    value numeric(12, 2) NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    time_in_from_stage interval,
    reason text,
    changed_by text NOT NULL DEFAULT current_user,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deal_stage_history_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT deal_stage_history_client_id_deal_id_fkey FOREIGN KEY (client_id, deal_id)
    REFERENCES crm.deals (client_id, id),
    CONSTRAINT deal_stage_history_to_stage_check CHECK (from_stage IS DISTINCT FROM to_stage),
    CONSTRAINT deal_stage_history_probability_check CHECK (probability BETWEEN 0 AND 100),
    CONSTRAINT deal_stage_history_value_check CHECK (value >= 0),
    CONSTRAINT deal_stage_history_time_in_from_stage_check CHECK (
        (from_stage IS NULL) = (time_in_from_stage IS NULL)
        AND time_in_from_stage >= interval '0'
    )
);

COMMENT ON TABLE crm.deal_stage_history IS
'Append-only log of deal stage changes: one row for the initial stage at creation
(from_stage NULL) and one per change after it. Each row''s from_stage is the previous
row''s to_stage.';
COMMENT ON COLUMN crm.deal_stage_history.id IS 'History row id.';
COMMENT ON COLUMN crm.deal_stage_history.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.deal_stage_history.deal_id IS 'Deal whose stage changed.';
COMMENT ON COLUMN crm.deal_stage_history.from_stage IS
'Stage the deal left; NULL for the row recording the initial stage.';
COMMENT ON COLUMN crm.deal_stage_history.to_stage IS 'Stage the deal entered.';
COMMENT ON COLUMN crm.deal_stage_history.probability IS 'Deal probability after the change.';
COMMENT ON COLUMN crm.deal_stage_history.value IS 'Deal value at the change.';
COMMENT ON COLUMN crm.deal_stage_history.changed_at IS 'When the change happened.';
COMMENT ON COLUMN crm.deal_stage_history.time_in_from_stage IS
'Time the deal spent in from_stage before this change; NULL for the initial row.';
COMMENT ON COLUMN crm.deal_stage_history.reason IS
'Why the change was made, when given (e.g. the reason passed to crm.reopen_deal).';
COMMENT ON COLUMN crm.deal_stage_history.changed_by IS 'Database role that made the change.';
COMMENT ON COLUMN crm.deal_stage_history.created_at IS 'When the row was written.';
COMMENT ON CONSTRAINT deal_stage_history_client_id_deal_id_fkey ON crm.deal_stage_history IS
'deal_id must name a deal of the same client.';
COMMENT ON CONSTRAINT deal_stage_history_to_stage_check ON crm.deal_stage_history IS
'to_stage must differ from from_stage.';
COMMENT ON CONSTRAINT deal_stage_history_probability_check ON crm.deal_stage_history IS
'probability must be a percentage between 0 and 100.';
COMMENT ON CONSTRAINT deal_stage_history_value_check ON crm.deal_stage_history IS
'value must be zero or more.';
COMMENT ON CONSTRAINT deal_stage_history_time_in_from_stage_check ON crm.deal_stage_history IS
'time_in_from_stage must be set (and not negative) exactly when from_stage is set.';

CREATE INDEX deal_stage_history_client_id_deal_id_changed_at_idx
ON crm.deal_stage_history (client_id, deal_id, changed_at, id);
CREATE INDEX deal_stage_history_client_id_changed_at_idx
ON crm.deal_stage_history (client_id, changed_at);
