-- A small, fixed client for the worked examples of docs/analytics.md (`make docs` runs the
-- analytics functions on it, as of 2026-06-01, and writes their output into the page).
-- Load it yourself into a scratch database to try the functions:
--   psql "$DATABASE_URL" -f sql/examples/analytics_example.sql
-- Every timestamp is given, as a historical import would, so the result never changes.

INSERT INTO crm.clients (id, name, default_currency, auto_create_deals)
VALUES ('00000000-0000-4000-a000-000000000001', 'Acme Dental', 'AUD', FALSE);

INSERT INTO crm.leads (id, client_id, email, first_name, company, created_at)
VALUES
(
    '00000000-0000-4000-b000-000000000001', '00000000-0000-4000-a000-000000000001',
    'ana@brightsmile.example', 'Ana', 'Bright Smile', '2026-03-02 09:00+00'
),
(
    '00000000-0000-4000-b000-000000000002', '00000000-0000-4000-a000-000000000001',
    'ben@cityortho.example', 'Ben', 'City Ortho', '2026-03-05 09:00+00'
),
(
    '00000000-0000-4000-b000-000000000003', '00000000-0000-4000-a000-000000000001',
    'cat@harbourdental.example', 'Cat', 'Harbour Dental', '2026-03-09 09:00+00'
),
(
    '00000000-0000-4000-b000-000000000004', '00000000-0000-4000-a000-000000000001',
    'dan@parkside.example', 'Dan', 'Parkside Clinic', '2026-03-12 09:00+00'
),
(
    '00000000-0000-4000-b000-000000000005', '00000000-0000-4000-a000-000000000001',
    'eve@smileco.example', 'Eve', 'SmileCo', '2026-03-16 09:00+00'
),
(
    '00000000-0000-4000-b000-000000000006', '00000000-0000-4000-a000-000000000001',
    'fay@toothworks.example', 'Fay', 'Toothworks', '2026-03-20 09:00+00'
);

INSERT INTO crm.activities (client_id, lead_id, channel, activity_type, occurred_at)
VALUES
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000001',
    'email', 'sent', '2026-03-03 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000001',
    'linkedin', 'message', '2026-03-10 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000001',
    'email', 'sent', '2026-03-17 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000002',
    'email', 'sent', '2026-03-06 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000002',
    'voice', 'call', '2026-03-13 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000003',
    'linkedin', 'connection_request', '2026-03-10 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000003',
    'sms', 'sent', '2026-03-14 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000004',
    'email', 'sent', '2026-03-13 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000005',
    'mail', 'letter', '2026-03-17 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000005',
    'email', 'sent', '2026-03-24 10:00+00'
),
(
    '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-b000-000000000006',
    'email', 'sent', '2026-03-21 10:00+00'
);

INSERT INTO crm.meetings (
    id, client_id, lead_id, meeting_type, booking_method, booked_at, scheduled_at,
    confirmed, confirmed_at, reminder_sent, reminder_sent_at, meeting_outcome, showed_up
)
VALUES
(
    '00000000-0000-4000-c000-000000000001', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000001', 'discovery', 'calendly', '2026-03-18 12:00+00',
    '2026-03-23 14:00+00', TRUE, '2026-03-19 08:00+00', TRUE, '2026-03-22 08:00+00',
    'good', NULL
),
(
    '00000000-0000-4000-c000-000000000002', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000002', 'demo', 'direct', '2026-03-14 12:00+00',
    '2026-03-16 15:00+00', TRUE, '2026-03-15 08:00+00', FALSE, NULL, 'good', NULL
),
(
    '00000000-0000-4000-c000-000000000003', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000003', 'discovery', 'calendly', '2026-03-15 12:00+00',
    '2026-03-30 14:00+00', FALSE, NULL, TRUE, '2026-03-29 08:00+00', 'no_show', NULL
),
(
    '00000000-0000-4000-c000-000000000004', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000004', 'discovery', 'phone', '2026-03-14 12:00+00',
    '2026-03-17 10:00+00', FALSE, NULL, FALSE, NULL, 'cancelled', NULL
),
(
    '00000000-0000-4000-c000-000000000005', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000005', 'discovery', 'calendly', '2026-03-25 12:00+00',
    '2026-04-02 14:00+00', TRUE, '2026-03-26 08:00+00', TRUE, '2026-04-01 08:00+00',
    'bad', NULL
),
(
    '00000000-0000-4000-c000-000000000006', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000006', 'discovery', 'direct', '2026-03-22 12:00+00',
    '2026-03-24 09:00+00', FALSE, NULL, FALSE, NULL, NULL, NULL
);

-- Deals: created open, then moved through the pipeline with the time of each change.
INSERT INTO crm.deals (
    id, client_id, lead_id, meeting_id, name, value, expected_close_date, created_at
)
VALUES
(
    '00000000-0000-4000-d000-000000000001', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000001', '00000000-0000-4000-c000-000000000001',
    'Bright Smile retainer', 12000, '2026-05-15', '2026-03-24 09:00+00'
),
(
    '00000000-0000-4000-d000-000000000002', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000002', '00000000-0000-4000-c000-000000000002',
    'City Ortho pilot', 4000, '2026-04-30', '2026-03-17 09:00+00'
),
(
    '00000000-0000-4000-d000-000000000003', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000005', '00000000-0000-4000-c000-000000000005',
    'SmileCo', 8000, '2026-06-30', '2026-04-03 09:00+00'
),
(
    '00000000-0000-4000-d000-000000000004', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000003', NULL,
    'Harbour Dental', 6000, '2026-07-31', '2026-04-06 09:00+00'
);

UPDATE crm.deals SET stage = 'proposal', stage_changed_at = '2026-03-31 09:00+00'
WHERE id = '00000000-0000-4000-d000-000000000001';
UPDATE crm.deals SET stage = 'negotiation', stage_changed_at = '2026-04-14 09:00+00'
WHERE id = '00000000-0000-4000-d000-000000000001';
UPDATE crm.deals SET stage = 'closed_won', closed_at = '2026-04-28 09:00+00'
WHERE id = '00000000-0000-4000-d000-000000000001';

UPDATE crm.deals SET stage = 'proposal', stage_changed_at = '2026-03-20 09:00+00'
WHERE id = '00000000-0000-4000-d000-000000000002';
UPDATE crm.deals SET stage = 'closed_won', closed_at = '2026-04-07 09:00+00'
WHERE id = '00000000-0000-4000-d000-000000000002';

UPDATE crm.deals SET stage = 'proposal', stage_changed_at = '2026-04-10 09:00+00'
WHERE id = '00000000-0000-4000-d000-000000000003';
UPDATE crm.deals
SET stage = 'closed_lost', lost_reason = 'price_too_high', closed_at = '2026-05-05 09:00+00'
WHERE id = '00000000-0000-4000-d000-000000000003';

UPDATE crm.deals SET stage = 'negotiation', stage_changed_at = '2026-04-20 09:00+00'
WHERE id = '00000000-0000-4000-d000-000000000004';
