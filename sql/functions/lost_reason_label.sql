-- crm_private.lost_reason_label('no_budget') -> 'No budget'

CREATE OR REPLACE FUNCTION crm_private.lost_reason_label(p_reason crm.deal_lost_reason_type)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
RETURN CASE p_reason
    WHEN 'price_too_high' THEN 'Price too high'
    WHEN 'chose_competitor' THEN 'Chose a competitor'
    WHEN 'no_budget' THEN 'No budget'
    WHEN 'timing_not_right' THEN 'Timing not right'
    WHEN 'no_decision' THEN 'No decision'
    WHEN 'champion_left' THEN 'Champion left'
    WHEN 'went_silent' THEN 'Went silent'
    WHEN 'project_cancelled' THEN 'Project cancelled'
    WHEN 'bad_fit' THEN 'Bad fit'
    WHEN 'other' THEN 'Other'
END;

COMMENT ON FUNCTION crm_private.lost_reason_label(crm.deal_lost_reason_type) IS
'The words a CRM shows for a lost reason (a lost deal''s reason in HubSpot, Pipedrive and Close):
no_budget -> No budget. NULL for NULL.';

REVOKE ALL ON FUNCTION crm_private.lost_reason_label(crm.deal_lost_reason_type) FROM public;
