-- 0001: the private schema, the enum types named by the spec, and the helpers
-- that CHECK constraints depend on (they live here, not in sql/functions/,
-- because a constraint must never lose its function during an upgrade).

CREATE SCHEMA crm_private;

COMMENT ON SCHEMA crm_private IS
'agency-crm internals: trigger functions and helpers. Not an API: may change in any release.';

REVOKE ALL ON SCHEMA crm_private FROM public;


CREATE TYPE crm.channel_type AS ENUM (
    'email',
    'sms',
    'linkedin',
    'voice',
    'mail'
);

COMMENT ON TYPE crm.channel_type IS
'Outreach channel of a touch. email: cold email; sms: text message; linkedin: LinkedIn
connection or message; voice: phone call or voicemail; mail: physical letter.';

CREATE TYPE crm.deal_stage_type AS ENUM (
    'qualification',
    'proposal',
    'negotiation',
    'verbal_commit',
    'contract_sent',
    'closed_won',
    'closed_lost'
);

COMMENT ON TYPE crm.deal_stage_type IS
'Pipeline stage of a deal, in pipeline order. Default probabilities: qualification 20,
proposal 40, negotiation 60, verbal_commit 80, contract_sent 90, closed_won 100, closed_lost 0.';

CREATE TYPE crm.deal_lost_reason_type AS ENUM (
    'price_too_high',
    'chose_competitor',
    'no_budget',
    'timing_not_right',
    'no_decision',
    'champion_left',
    'project_cancelled',
    'went_silent',
    'bad_fit',
    'other'
);

COMMENT ON TYPE crm.deal_lost_reason_type IS
'Why a deal was lost. price_too_high: budget or price objection; chose_competitor: selected
another vendor; no_budget: no budget available; timing_not_right: timing issue; no_decision:
unable to reach a decision; champion_left: internal advocate left; project_cancelled: project
no longer needed; went_silent: lost contact; bad_fit: solution mismatch; other: anything else.';

CREATE FUNCTION crm_private.is_valid_time_zone(p_time_zone text)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.timezone(p_time_zone, pg_catalog.now());
    RETURN true;
EXCEPTION
    WHEN invalid_parameter_value THEN
        RETURN false;
END;
$$;

COMMENT ON FUNCTION crm_private.is_valid_time_zone(text) IS
'True when PostgreSQL knows the time zone name (e.g. Australia/Sydney, UTC). Used by CHECKs.';

-- EXECUTE stays granted to PUBLIC on purpose: a CHECK runs with the inserting role's
-- privileges, so every role that may write crm.clients must be able to call it. The
-- constraint refers to the function by oid, so no USAGE on crm_private is needed.
