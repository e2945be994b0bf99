-- 0009: a cheaper audit row per CRM call, and complete_pushes' new signature.
--
-- Every CRM call writes a crm_push_log row, so its cost is paid per push. Measured with
-- bench/bench_queue.py (server CPU per no-op push): its five foreign keys cost about 12 us
-- (checked row by row), the bounded regex of the operation CHECK 2.5 us, the index that only
-- served the crm_config_id key and the full meeting and deal indexes 1 us. The keys guarded
-- nothing the writers do not already guarantee: only the push runner writes the log, from a
-- queue row and a config it just read, and clients, configs, leads, meetings and deals are
-- never hard-deleted (DELETE is refused). An audit row also must not depend on the row it
-- describes. Same reasoning as migration 0006 for the queue.

ALTER TABLE crm.crm_push_log
DROP CONSTRAINT crm_push_log_client_id_fkey,
DROP CONSTRAINT crm_push_log_client_id_crm_config_id_fkey,
DROP CONSTRAINT crm_push_log_client_id_lead_id_fkey,
DROP CONSTRAINT crm_push_log_client_id_meeting_id_fkey,
DROP CONSTRAINT crm_push_log_client_id_deal_id_fkey,
DROP CONSTRAINT crm_push_log_operation_check,
ADD CONSTRAINT crm_push_log_operation_check CHECK (
    length(operation) <= 63 AND operation ~ '^[a-z][a-z0-9_]*$'
);

COMMENT ON CONSTRAINT crm_push_log_operation_check ON crm.crm_push_log IS
'operation must be lower snake_case (a-z, 0-9, _), starting with a letter, at most 63 characters.';
COMMENT ON COLUMN crm.crm_push_log.client_id IS
'Owning client (written by the push runner; not a foreign key, see migration 0009).';
COMMENT ON COLUMN crm.crm_push_log.crm_config_id IS
'CRM connection the call was made with (not a foreign key, see migration 0009).';

DROP INDEX crm.crm_push_log_client_id_crm_config_id_idx;
DROP INDEX crm.crm_push_log_client_id_meeting_id_idx;
DROP INDEX crm.crm_push_log_client_id_deal_id_idx;

CREATE INDEX crm_push_log_client_id_meeting_id_idx
ON crm.crm_push_log (client_id, meeting_id)
WHERE meeting_id IS NOT NULL;
CREATE INDEX crm_push_log_client_id_deal_id_idx
ON crm.crm_push_log (client_id, deal_id)
WHERE deal_id IS NOT NULL;

COMMENT ON INDEX crm.crm_push_log_client_id_meeting_id_idx IS
'The CRM calls made for a meeting.';
COMMENT ON INDEX crm.crm_push_log_client_id_deal_id_idx IS
'The CRM calls made for a deal.';

-- complete_pushes gained p_log_status (it writes the audit rows itself); the old signature
-- goes so that calls with three arguments are not ambiguous.
DROP FUNCTION IF EXISTS crm.complete_pushes(uuid, text, bigint[]);
