-- 0010: a finish names the claim it finishes, and a claim's number is never handed out again.
--
-- crm.finish_push and crm.complete_pushes now take the attempt number crm.claim_pushes
-- returned (p_attempt / p_attempts) and only finish a push whose live claim is that runner's
-- with that number: a runner whose lease lapsed, while the same runner took the push again,
-- can no longer finish the newer claim (see docs/push.md, "Claims").
--
-- That needs attempt numbers that never come back after a claim lapsed. A held or deferred
-- finish gives its number back, which is safe: the claim giving it back has ended, and a
-- lapsed claim's number stays counted (the lease rescue keeps attempts), so every later claim
-- is numbered above it. crm.retry_pushes reset attempts to 0, which handed the numbers 1, 2,
-- ... out again; it now keeps the count and starts a fresh budget from it instead:
-- attempts_base. A push is dead once attempts - attempts_base reaches the config's
-- max_attempts.

ALTER TABLE crm.crm_push_queue
ADD COLUMN attempts_base integer NOT NULL DEFAULT 0,
-- (greatest: a negative attempts is crm_push_queue_attempts_check's to refuse, by its name.)
ADD CONSTRAINT crm_push_queue_attempts_base_check CHECK (
    attempts_base >= 0 AND attempts_base <= greatest(attempts, 0)
);

COMMENT ON COLUMN crm.crm_push_queue.attempts_base IS
'Attempts made before the push was last put back by crm.retry_pushes: they no longer count
against the config''s max_attempts (the push is dead once attempts - attempts_base reaches it).
attempts itself is never lowered below a lapsed claim''s number, so a late finish of a stale
claim can never name a live one.';
COMMENT ON COLUMN crm.crm_push_queue.attempts IS
'The number of the push''s latest claim: what crm.claim_pushes returns and crm.finish_push
names. Counts every claim; a held or deferred finish gives its number back (the attempt did
not count), and crm.retry_pushes keeps it (see attempts_base).';
COMMENT ON CONSTRAINT crm_push_queue_attempts_base_check ON crm.crm_push_queue IS
'attempts_base must be between 0 and attempts.';
