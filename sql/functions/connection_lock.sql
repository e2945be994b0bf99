-- PERFORM crm_private.connection_lock('<client uuid>');

CREATE OR REPLACE FUNCTION crm_private.connection_lock(p_client_id uuid)
RETURNS void
LANGUAGE sql
SET search_path = ''
RETURN pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('agency-crm connection ' || p_client_id::text, 0)
);

COMMENT ON FUNCTION crm_private.connection_lock(uuid) IS
'Serialise, until the end of the transaction, the connection changes of one client
(crm.save_crm_connection, crm.disconnect_crm, crm.backfill_pushes): two connects at once of
one client cannot both insert a config, and a backfill never runs beside a disconnect. An
advisory lock, so a role that may not lock the client''s row for update may take it.';

REVOKE ALL ON FUNCTION crm_private.connection_lock(uuid) FROM public;
