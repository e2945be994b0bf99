-- Two clients for the worked requests of docs/api.md (`make docs` serves the API on them,
-- connects the sandbox CRMs and writes each request and its answer into the page).
-- Acme Dental has two meetings behind it and three ahead (in 2031, so they stay upcoming);
-- Harbour Dental is the other client, whose id Acme's token may not use.

INSERT INTO crm.clients (id, name, default_currency, created_at, updated_at)
VALUES
(
    '00000000-0000-4000-a000-000000000001', 'Acme Dental', 'AUD',
    '2026-03-01 09:00+00', '2026-03-01 09:00+00'
),
(
    '00000000-0000-4000-a000-000000000002', 'Harbour Dental', 'AUD',
    '2026-03-01 09:00+00', '2026-03-01 09:00+00'
);

INSERT INTO crm.leads (id, client_id, email, first_name, last_name, company, created_at)
VALUES
(
    '00000000-0000-4000-b000-000000000001', '00000000-0000-4000-a000-000000000001',
    'ana@brightsmile.example', 'Ana', 'Ortiz', 'Bright Smile', '2026-03-02 09:00+00'
),
(
    '00000000-0000-4000-b000-000000000002', '00000000-0000-4000-a000-000000000001',
    'ben@cityortho.example', 'Ben', 'Okafor', 'City Ortho', '2026-03-05 09:00+00'
),
(
    '00000000-0000-4000-b000-000000000003', '00000000-0000-4000-a000-000000000001',
    'cat@parkside.example', 'Cat', 'Nguyen', 'Parkside Clinic', '2026-03-09 09:00+00'
);

INSERT INTO crm.meetings (
    id, client_id, lead_id, scheduled_at, duration_minutes, meeting_type, booked_at,
    booked_by, booking_method, created_at, updated_at
)
VALUES
(
    '00000000-0000-4000-c000-000000000001', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000001', '2026-03-10 23:00+00', 30, 'discovery',
    '2026-03-03 01:00+00', 'human', 'calendly', '2026-03-03 01:00+00', '2026-03-03 01:00+00'
),
(
    '00000000-0000-4000-c000-000000000002', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000002', '2026-03-12 22:30+00', 30, 'discovery',
    '2026-03-06 04:00+00', 'human', 'calendly', '2026-03-06 04:00+00', '2026-03-06 04:00+00'
),
(
    '00000000-0000-4000-c000-000000000003', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000003', '2031-05-06 23:00+00', 45, 'demo',
    '2026-03-10 02:00+00', 'ai', 'direct', '2026-03-10 02:00+00', '2026-03-10 02:00+00'
),
(
    '00000000-0000-4000-c000-000000000004', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000001', '2031-05-13 23:00+00', 30, 'follow_up',
    '2026-03-11 02:00+00', 'human', 'direct', '2026-03-11 02:00+00', '2026-03-11 02:00+00'
),
(
    '00000000-0000-4000-c000-000000000005', '00000000-0000-4000-a000-000000000001',
    '00000000-0000-4000-b000-000000000002', '2031-05-20 23:00+00', 30, 'follow_up',
    '2026-03-12 02:00+00', 'ai', 'direct', '2026-03-12 02:00+00', '2026-03-12 02:00+00'
);
