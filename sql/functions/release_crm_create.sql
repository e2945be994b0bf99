-- SELECT crm.release_crm_create('<client uuid>', '<config uuid>', 'deal', 'acrm-meeting-<uuid>');

CREATE OR REPLACE FUNCTION crm.release_crm_create(
    p_client_id uuid,
    p_crm_config_id uuid,
    p_entity_type text,
    p_external_key text
)
RETURNS boolean
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    WITH released AS (
        UPDATE crm.crm_external_ids AS x
        SET create_sent_at = NULL
        WHERE
            x.client_id = p_client_id
            AND x.crm_config_id = p_crm_config_id
            AND x.entity_type = p_entity_type
            AND x.external_key = p_external_key
            AND x.crm_id IS NULL
        RETURNING 1
    )

    SELECT exists(SELECT 1 FROM released);
END;

COMMENT ON FUNCTION crm.release_crm_create(uuid, uuid, text, text) IS
'The CRM refused a create outright (a 4xx answer: nothing was created): clear the create
intent crm.claim_crm_create wrote, so the next attempt creates without waiting. Returns whether
an intent was cleared (false when the record has a CRM id by now).';

REVOKE ALL ON FUNCTION crm.release_crm_create(uuid, uuid, text, text) FROM public;
