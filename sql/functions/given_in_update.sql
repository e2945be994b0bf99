-- crm_private.given_in_update('probability', deal_id) -> true when the UPDATE set probability

CREATE OR REPLACE FUNCTION crm_private.given_in_update(p_column text, p_row_id uuid)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $$
DECLARE
    v_setting text := 'crm.given_' || p_column;
BEGIN
    IF pg_catalog.current_setting(v_setting, TRUE) IS DISTINCT FROM p_row_id::text THEN
        RETURN FALSE;
    END IF;
    -- Consumed: the note is for this row of this statement only.
    PERFORM pg_catalog.set_config(v_setting, '', TRUE);
    RETURN TRUE;
END;
$$;

COMMENT ON FUNCTION crm_private.given_in_update(text, uuid) IS
'True when the UPDATE being processed set p_column on the row p_row_id (noted by a BEFORE UPDATE OF
trigger, crm_private.tg__note_given_column); consumes the note.';

REVOKE ALL ON FUNCTION crm_private.given_in_update(text, uuid) FROM public;
