-- SELECT * FROM crm.claim_crm_create('<client uuid>', '<config uuid>', 'deal',
--                                    'acrm-meeting-<uuid>', '<meeting uuid>', interval '90 s');

CREATE OR REPLACE FUNCTION crm.claim_crm_create(
    p_client_id uuid,
    p_crm_config_id uuid,
    p_entity_type text,
    p_external_key text,
    p_entity_id uuid,
    p_window interval
)
RETURNS TABLE (claimed boolean, crm_id text, create_sent_at timestamptz)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_now timestamptz := pg_catalog.clock_timestamp();
BEGIN
    IF p_window IS NULL OR p_window < interval '0' THEN
        RAISE EXCEPTION 'claim_crm_create: p_window must be zero or more, got %',
            coalesce(p_window::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass how long a create whose outcome is unknown may still land.';
    END IF;
    RETURN QUERY
    INSERT INTO crm.crm_external_ids AS x (
        client_id, crm_config_id, entity_type, external_key, entity_id, crm_id, create_sent_at
    )
    VALUES (p_client_id, p_crm_config_id, p_entity_type, p_external_key, p_entity_id, NULL, v_now)
    ON CONFLICT (client_id, crm_config_id, entity_type, external_key) DO UPDATE
    SET create_sent_at = v_now,
        entity_id = coalesce(excluded.entity_id, x.entity_id)
    WHERE x.crm_id IS NULL
      AND (x.create_sent_at IS NULL OR x.create_sent_at < v_now - p_window)
    RETURNING true, x.crm_id, x.create_sent_at;
    IF FOUND THEN
        RETURN;
    END IF;
    -- Not ours to create: the record exists, or another create of it may still land.
    RETURN QUERY
    SELECT false, x.crm_id, x.create_sent_at
    FROM crm.crm_external_ids AS x
    WHERE x.client_id = p_client_id
      AND x.crm_config_id = p_crm_config_id
      AND x.entity_type = p_entity_type
      AND x.external_key = p_external_key;
END;
$$;

COMMENT ON FUNCTION crm.claim_crm_create(uuid, uuid, text, text, uuid, interval) IS
'Before a runner sends a create to a CRM: take the right to create the record (entity type,
external key) of the config, in a short transaction of its own. claimed is true when the create
may be sent: a create intent (create_sent_at now, crm_id NULL) was written. It is false, with
the row as it is, when the record already has a CRM id, or when another create of it was sent
less than p_window ago and may still land (the caller looks the record up by its key, or waits
until create_sent_at + p_window). Two runners never both get claimed = true within p_window.';

REVOKE ALL ON FUNCTION crm.claim_crm_create(uuid, uuid, text, text, uuid, interval) FROM public;
