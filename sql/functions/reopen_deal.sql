-- SELECT * FROM crm.reopen_deal('6f1c…', 'client came back after budget freeze');
-- SELECT * FROM crm.reopen_deal('6f1c…', 'new decision maker', 'proposal');

CREATE OR REPLACE FUNCTION crm.reopen_deal(
    p_deal_id uuid,
    p_reason text,
    p_stage crm.deal_stage_type DEFAULT NULL
)
RETURNS crm.deals
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_deal crm.deals;
    v_stage crm.deal_stage_type;
BEGIN
    IF p_reason IS NULL OR pg_catalog.btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'reopen_deal: p_reason must say why deal % is reopened', p_deal_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a reason, e.g. crm.reopen_deal(id, ''budget approved after all'').';
    END IF;
    IF p_stage IN ('closed_won', 'closed_lost') THEN
        RAISE EXCEPTION 'reopen_deal: p_stage % is not an open stage', p_stage
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Reopen into qualification, proposal, negotiation, verbal_commit or '
                      'contract_sent (default: the stage the deal closed from).';
    END IF;
    SELECT d.* INTO v_deal
    FROM crm.deals AS d
    WHERE d.id = p_deal_id AND d.deleted_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reopen_deal: no live deal with id %', p_deal_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'Check the id; a soft-deleted deal must be restored first.';
    END IF;
    IF v_deal.stage NOT IN ('closed_won', 'closed_lost') THEN
        RAISE EXCEPTION 'reopen_deal: deal % is not closed (stage %)', p_deal_id, v_deal.stage
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only closed_won and closed_lost deals are reopened; change the stage of '
                      'an open deal directly.';
    END IF;
    -- Default: back to the stage the deal closed from.
    v_stage := coalesce(
        p_stage,
        (
            SELECT h.from_stage
            FROM crm.deal_stage_history AS h
            WHERE h.client_id = v_deal.client_id
              AND h.deal_id = p_deal_id
              AND h.to_stage = v_deal.stage
            ORDER BY h.seq DESC
            LIMIT 1
        ),
        'qualification'
    );
    PERFORM pg_catalog.set_config('crm.reopening_deal', p_deal_id::text, TRUE);
    PERFORM pg_catalog.set_config('crm.stage_change_reason', p_reason, TRUE);
    UPDATE crm.deals AS d
    SET stage = v_stage
    WHERE d.client_id = v_deal.client_id AND d.id = p_deal_id
    RETURNING d.* INTO v_deal;
    PERFORM pg_catalog.set_config('crm.reopening_deal', '', TRUE);
    PERFORM pg_catalog.set_config('crm.stage_change_reason', '', TRUE);
    RETURN v_deal;
END;
$$;

COMMENT ON FUNCTION crm.reopen_deal(uuid, text, crm.deal_stage_type) IS
'Reopen a closed deal: the only way a closed_won or closed_lost deal changes stage. Moves it to
p_stage (default: the stage it closed from, else qualification), clears won, closed_at,
days_to_close and lost_reason, resets probability to the stage default, and records the change in
crm.deal_stage_history with p_reason. Returns the updated deal.
Raises 22023 for an empty reason or a closed p_stage, P0002 for an unknown or soft-deleted deal,
55000 for a deal that is not closed.';

REVOKE ALL ON FUNCTION crm.reopen_deal(uuid, text, crm.deal_stage_type) FROM public;
