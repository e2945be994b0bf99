-- crm_private.stage_probability('proposal') -> 40

CREATE OR REPLACE FUNCTION crm_private.stage_probability(p_stage crm.deal_stage_type)
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
RETURN CASE p_stage
    WHEN 'qualification' THEN 20
    WHEN 'proposal' THEN 40
    WHEN 'negotiation' THEN 60
    WHEN 'verbal_commit' THEN 80
    WHEN 'contract_sent' THEN 90
    WHEN 'closed_won' THEN 100
    WHEN 'closed_lost' THEN 0
END;

COMMENT ON FUNCTION crm_private.stage_probability(crm.deal_stage_type) IS
'Default win probability (percent) of a deal stage, from the spec: qualification 20, proposal 40,
negotiation 60, verbal_commit 80, contract_sent 90, closed_won 100, closed_lost 0.';

REVOKE ALL ON FUNCTION crm_private.stage_probability(crm.deal_stage_type) FROM public;
