-- crm_private.timestamp_window() -> ["1900-01-01 00:00:00+00","2200-01-01 00:00:00+00")

CREATE OR REPLACE FUNCTION crm_private.timestamp_window()
RETURNS tstzrange
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
RETURN pg_catalog.tstzrange(
    '1900-01-01 00:00'::timestamp AT TIME ZONE 'UTC',
    '2200-01-01 00:00'::timestamp AT TIME ZONE 'UTC',
    '[)'
);

COMMENT ON FUNCTION crm_private.timestamp_window() IS
'The times a timestamptz column of schema crm accepts: from 1900-01-01 00:00 UTC (included) to
2200-01-01 00:00 UTC (excluded), so never infinity or -infinity. The one definition of the
window: the validate triggers test a row''s times with `<@ crm_private.timestamp_window()` (an
immutable call without arguments, which PL/pgSQL folds into a constant when it plans the
expression), the refusals quote it, and the <table>_timestamps_check constraints of migration
0011 spell its bounds out (tests/sql/test_refusals.py checks that they agree).';

REVOKE ALL ON FUNCTION crm_private.timestamp_window() FROM public;
