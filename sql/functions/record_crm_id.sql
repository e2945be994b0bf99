-- SELECT crm.record_crm_id('<client uuid>', '<config uuid>', 'lead', 'acrm-lead-<uuid>',
--                          '<lead uuid>', '12345');

CREATE OR REPLACE FUNCTION crm.record_crm_id(
    p_client_id uuid,
    p_crm_config_id uuid,
    p_entity_type text,
    p_external_key text,
    p_entity_id uuid,
    p_crm_id text,
    p_create_sent_at timestamptz DEFAULT NULL
)
RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO crm.crm_external_ids AS x (
        client_id, crm_config_id, entity_type, external_key, entity_id, crm_id, create_sent_at
    )
    VALUES (
        p_client_id,
        p_crm_config_id,
        p_entity_type,
        p_external_key,
        p_entity_id,
        p_crm_id,
        p_create_sent_at
    )
    ON CONFLICT (client_id, crm_config_id, entity_type, external_key) DO UPDATE
        SET
            crm_id = coalesce(excluded.crm_id, x.crm_id),
            create_sent_at = excluded.create_sent_at,
            entity_id = coalesce(excluded.entity_id, x.entity_id);
END;

COMMENT ON FUNCTION crm.record_crm_id(uuid, uuid, text, text, uuid, text, timestamptz) IS
'Store where one of our records lives in the CRM of a config, the moment the CRM said so: the
CRM id of (entity type, external key). p_create_sent_at NULL marks the record complete; a
timestamp keeps it marked in progress (a HubSpot deal whose contact association is still to be
made). A known CRM id or entity id is never overwritten with NULL.';

REVOKE ALL ON FUNCTION crm.record_crm_id(uuid, uuid, text, text, uuid, text, timestamptz)
FROM public;
