-- 0006: the push queue no longer has foreign keys to leads, meetings and deals.
--
-- Only the lifecycle triggers write queue rows, from the row they just wrote, and those
-- entities are never hard-deleted (DELETE is refused), so the keys guarded nothing. They
-- cost three foreign-key checks per enqueued push, and in a session that began on a near-empty
-- table PostgreSQL can cache a check plan that scans every row of the client (a client_id-only
-- index ties with the primary key while the table is tiny): a long single-transaction import
-- then slowed quadratically (50,000 bookings: 146 s instead of about 5 s; see
-- docs/benchmarks.md). The drainer treats a push whose entity is missing as failed.

ALTER TABLE crm.crm_push_queue
DROP CONSTRAINT crm_push_queue_client_id_lead_id_fkey,
DROP CONSTRAINT crm_push_queue_client_id_meeting_id_fkey,
DROP CONSTRAINT crm_push_queue_client_id_deal_id_fkey;

DROP INDEX crm.crm_push_queue_client_id_lead_id_idx;
DROP INDEX crm.crm_push_queue_client_id_meeting_id_idx;
DROP INDEX crm.crm_push_queue_client_id_deal_id_idx;

COMMENT ON COLUMN crm.crm_push_queue.lead_id IS
'Lead concerned (written by the lifecycle triggers; not a foreign key, see migration 0006).';
COMMENT ON COLUMN crm.crm_push_queue.meeting_id IS
'Meeting concerned, if any (written by the lifecycle triggers; not a foreign key).';
COMMENT ON COLUMN crm.crm_push_queue.deal_id IS
'Deal concerned, if any (written by the lifecycle triggers; not a foreign key).';
