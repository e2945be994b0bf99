-- The deal pipeline, enforced on every write of crm.deals (see docs/lifecycle.md): stage
-- probabilities, closing rules, no stage change of a closed deal except through
-- crm.reopen_deal, attribution defaults, and rejections with a SQLSTATE, the field, its
-- value and a hint.
-- requires: refused_timestamp.sql, refusal_message.sql, refusal_rule.sql, timestamp_hint.sql,
-- requires: refusal_choices.sql

CREATE OR REPLACE FUNCTION crm_private.tg_deals__lifecycle()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_old crm.deals;
    v_now timestamptz := pg_catalog.now();
    v_lead_live boolean;
    v_currency text;
    v_touches integer;
    v_first_channel text;
    v_last_id uuid;
    v_last_channel text;
    v_closed boolean := NEW.stage IN ('closed_won', 'closed_lost');
    v_stage_changed boolean;
    v_default integer := crm_private.stage_probability(NEW.stage);
    v_probability_given boolean;
    v_stage_time_given boolean;
    v_change_at timestamptz;
    v_column text;
    v_meeting_ok boolean := TRUE;
    v_first_change timestamptz;
BEGIN
    -- Times outside crm_private.timestamp_window() (infinity included) are refused first,
    -- naming the column, before any arithmetic on them could fail (migration 0011).
    IF NOT (
        least(NEW.stage_changed_at, NEW.closed_at, NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
        AND greatest(NEW.stage_changed_at, NEW.closed_at, NEW.created_at, NEW.updated_at, NEW.deleted_at)
        <@ crm_private.timestamp_window()
    ) THEN
        v_column := crm_private.refused_timestamp('deals', pg_catalog.to_jsonb(NEW));
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'deals', NEW.id, v_column,
                (pg_catalog.to_jsonb(NEW) ->> v_column)::timestamptz::text,
                'is outside the accepted times'
            ),
            DETAIL = crm_private.refusal_rule('deals', 'deals_timestamps_check'),
            HINT = crm_private.timestamp_hint('deals', v_column),
            COLUMN = v_column, TABLE = 'deals', SCHEMA = 'crm',
            CONSTRAINT = 'deals_timestamps_check';
    END IF;
    IF NOT (NEW.expected_close_date >= '1900-01-01' AND NEW.expected_close_date < '2200-01-01') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'deals', NEW.id, 'expected_close_date', NEW.expected_close_date::text,
                'is outside the accepted dates'
            ),
            HINT = 'Give a date from 1900-01-01 to 2199-12-31, or NULL when there is none.',
            COLUMN = 'expected_close_date', TABLE = 'deals', SCHEMA = 'crm',
            CONSTRAINT = 'deals_expected_close_date_check';
    END IF;
    -- Values the CHECK constraints would refuse, refused first with the field, the value and
    -- a hint (the constraints stay as the last line of defence).
    IF NOT pg_catalog.length(pg_catalog.btrim(NEW.name)) BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'deals', NEW.id, 'name', NEW.name, 'must be 1 to 500 characters (spaces trimmed)'
            ),
            DETAIL = crm_private.refusal_rule('deals', 'deals_name_check'),
            HINT = 'Name the deal, e.g. the company and what is sold.',
            COLUMN = 'name', TABLE = 'deals', SCHEMA = 'crm', CONSTRAINT = 'deals_name_check';
    END IF;
    IF NEW.external_crm NOT IN ('hubspot', 'pipedrive', 'close') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'deals', NEW.id, 'external_crm', NEW.external_crm, 'is not an accepted value'
            ),
            DETAIL = crm_private.refusal_rule('deals', 'deals_external_crm_check'),
            HINT = crm_private.refusal_choices('deals', 'deals_external_crm_check', NEW.external_crm),
            COLUMN = 'external_crm', TABLE = 'deals', SCHEMA = 'crm', CONSTRAINT = 'deals_external_crm_check';
    END IF;
    IF NEW.lost_reason NOT IN (
        'price_too_high', 'chose_competitor', 'no_budget', 'timing_not_right', 'no_decision',
        'champion_left', 'project_cancelled', 'went_silent', 'bad_fit', 'other'
    ) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'deals', NEW.id, 'lost_reason', NEW.lost_reason, 'is not an accepted value'
            ),
            DETAIL = crm_private.refusal_rule('deals', 'deals_lost_reason_vocabulary_check'),
            HINT = crm_private.refusal_choices('deals', 'deals_lost_reason_vocabulary_check', NEW.lost_reason),
            COLUMN = 'lost_reason', TABLE = 'deals', SCHEMA = 'crm', CONSTRAINT = 'deals_lost_reason_vocabulary_check';
    END IF;
    IF NEW.converting_channel NOT IN ('email', 'sms', 'linkedin', 'voice', 'mail')
        OR NEW.first_touch_channel NOT IN ('email', 'sms', 'linkedin', 'voice', 'mail') THEN
        v_column := CASE
            WHEN NEW.converting_channel NOT IN ('email', 'sms', 'linkedin', 'voice', 'mail')
                THEN 'converting_channel'
            ELSE 'first_touch_channel'
        END;
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'deals', NEW.id, v_column, pg_catalog.to_jsonb(NEW) ->> v_column, 'is not an accepted value'
            ),
            DETAIL = crm_private.refusal_rule('deals', 'deals_' || v_column || '_check'),
            HINT = crm_private.refusal_choices('deals', 'deals_' || v_column || '_check', pg_catalog.to_jsonb(NEW) ->> v_column),
            COLUMN = v_column, TABLE = 'deals', SCHEMA = 'crm', CONSTRAINT = 'deals_' || v_column || '_check';
    END IF;
    IF NEW.days_to_close < 0 OR NEW.touches_before_deal < 0 THEN
        v_column := CASE WHEN NEW.days_to_close < 0 THEN 'days_to_close' ELSE 'touches_before_deal'
            END;
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'deals', NEW.id, v_column,
                (pg_catalog.to_jsonb(NEW) ->> v_column), 'must not be negative'
            ),
            DETAIL = crm_private.refusal_rule('deals', 'deals_' || v_column || '_check'),
            HINT = 'The triggers fill it: leave it out, or give 0 or more.',
            COLUMN = v_column, TABLE = 'deals', SCHEMA = 'crm',
            CONSTRAINT = 'deals_' || v_column || '_check';
    END IF;
    IF NEW.converting_activity_id IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.converting_activity_id IS DISTINCT FROM OLD.converting_activity_id) THEN
        -- (nested: a condition with a subquery is a full query, run only when needed)
        IF NOT EXISTS (
            SELECT 1
            FROM crm.activities AS x
            WHERE x.client_id = NEW.client_id AND x.id = NEW.converting_activity_id
        ) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = crm_private.refusal_message(
                    'deals', NEW.id, 'converting_activity_id', NEW.converting_activity_id::text,
                    pg_catalog.format('is not one of client %s''s activities', NEW.client_id)
                ),
                DETAIL = crm_private.refusal_rule('deals', 'deals_client_id_converting_activity_id_fkey'),
                HINT = 'Use the id of a touch (crm.activities) of the same client, or leave it out to use the lead''s last touch.',
                COLUMN = 'converting_activity_id', TABLE = 'deals', SCHEMA = 'crm', CONSTRAINT = 'deals_client_id_converting_activity_id_fkey';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        v_old := OLD;
        -- Both read (and consume) every time, so a note never outlives its row.
        v_probability_given := crm_private.given_in_update('probability', NEW.id);
        v_stage_time_given := crm_private.given_in_update('stage_changed_at', NEW.id);
    ELSE
        v_probability_given := NEW.probability IS NOT NULL;
        v_stage_time_given := NEW.stage_changed_at IS NOT NULL;
    END IF;
    v_stage_changed := NEW.stage IS DISTINCT FROM v_old.stage;
    -- When a stage change happens unless the writer says: now, or the previous change when a
    -- session that committed after this transaction began moved the deal last (its now() is
    -- later than ours): changes are recorded in commit order.
    v_change_at := greatest(v_now, v_old.stage_changed_at);

    IF TG_OP = 'INSERT' OR NEW.lead_id IS DISTINCT FROM v_old.lead_id
        OR NEW.client_id IS DISTINCT FROM v_old.client_id THEN
        SELECT l.deleted_at IS NULL, c.default_currency, t.touches, t.first_channel, t.last_id,
               t.last_channel
        INTO v_lead_live, v_currency, v_touches, v_first_channel, v_last_id, v_last_channel
        FROM crm.leads AS l
        INNER JOIN crm.clients AS c ON c.id = l.client_id
        LEFT JOIN LATERAL (
            SELECT
                count(*)::integer AS touches,
                (array_agg(a.channel ORDER BY a.occurred_at, a.id))[1] AS first_channel,
                (array_agg(a.id ORDER BY a.occurred_at DESC, a.id DESC))[1] AS last_id,
                (array_agg(a.channel ORDER BY a.occurred_at DESC, a.id DESC))[1] AS last_channel
            FROM crm.activities AS a
            WHERE a.client_id = l.client_id
              AND a.lead_id = l.id
              AND a.deleted_at IS NULL
              AND a.occurred_at <= NEW.created_at
        ) AS t ON TG_OP = 'INSERT'
        WHERE l.client_id = NEW.client_id AND l.id = NEW.lead_id;
        IF v_lead_live IS NULL THEN
            RAISE EXCEPTION 'deal lead_id % is not a lead of client %', NEW.lead_id, NEW.client_id
                USING ERRCODE = 'foreign_key_violation',
                      COLUMN = 'lead_id', TABLE = 'deals', SCHEMA = 'crm',
                      CONSTRAINT = 'deals_client_id_lead_id_fkey',
                      HINT = 'Use the id of a lead of the same client (crm.leads.client_id).';
        ELSIF NOT v_lead_live THEN
            RAISE EXCEPTION 'deal lead_id % names a soft-deleted lead', NEW.lead_id
                USING ERRCODE = 'foreign_key_violation',
                      COLUMN = 'lead_id', TABLE = 'deals', SCHEMA = 'crm',
                      HINT = 'Restore the lead first (UPDATE crm.leads SET deleted_at = NULL).';
        END IF;
    END IF;
    IF NEW.meeting_id IS NOT NULL AND (
        TG_OP = 'INSERT' OR NEW.meeting_id IS DISTINCT FROM v_old.meeting_id
        OR NEW.client_id IS DISTINCT FROM v_old.client_id
    ) THEN
        -- (a subquery only when the meeting changed: an IF with one is a full query)
        v_meeting_ok := EXISTS (
            SELECT 1
            FROM crm.meetings AS m
            WHERE m.client_id = NEW.client_id AND m.id = NEW.meeting_id
        );
    END IF;
    IF NOT v_meeting_ok THEN
        RAISE EXCEPTION 'deal meeting_id % is not a meeting of client %',
            NEW.meeting_id, NEW.client_id
            USING ERRCODE = 'foreign_key_violation',
                  COLUMN = 'meeting_id', TABLE = 'deals', SCHEMA = 'crm',
                  CONSTRAINT = 'deals_client_id_meeting_id_fkey',
                  HINT = 'Use the id of a meeting of the same client, or NULL.';
    END IF;

    IF TG_OP = 'INSERT' THEN
        NEW.currency := coalesce(NEW.currency, v_currency);
        NEW.first_touch_channel := coalesce(NEW.first_touch_channel, v_first_channel);
        NEW.touches_before_deal := coalesce(NEW.touches_before_deal, v_touches);
        IF NEW.converting_activity_id IS NULL THEN
            NEW.converting_activity_id := v_last_id;
            NEW.converting_channel := coalesce(NEW.converting_channel, v_last_channel);
        ELSIF NEW.converting_channel IS NULL THEN
            SELECT a.channel INTO NEW.converting_channel
            FROM crm.activities AS a
            WHERE a.client_id = NEW.client_id AND a.id = NEW.converting_activity_id;
        END IF;
    ELSIF v_stage_changed AND v_old.stage IN ('closed_won', 'closed_lost')
        AND pg_catalog.current_setting('crm.reopening_deal', TRUE) IS DISTINCT FROM NEW.id::text THEN
        RAISE EXCEPTION 'deal %: stage cannot change from % to % while the deal is closed',
            NEW.id, OLD.stage, NEW.stage
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  COLUMN = 'stage', TABLE = 'deals', SCHEMA = 'crm',
                  HINT = pg_catalog.format(
                      'Reopen it first: SELECT crm.reopen_deal(%L, ''<reason>'').', NEW.id
                  );
    END IF;

    IF NEW.currency !~ '^[A-Z]{3}$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = crm_private.refusal_message(
                'deals', NEW.id, 'currency', NEW.currency, 'is not an ISO-4217 currency code'
            ),
            DETAIL = crm_private.refusal_rule('deals', 'deals_currency_check'),
            HINT = CASE
                WHEN pg_catalog.upper(pg_catalog.btrim(NEW.currency)) ~ '^[A-Z]{3}$'
                    THEN pg_catalog.format(
                        'Codes are three upper-case letters: did you mean %s?',
                        pg_catalog.upper(pg_catalog.btrim(NEW.currency))
                    )
                ELSE 'Give three upper-case letters, e.g. AUD, USD, EUR, or leave it out to use '
                    'the client''s default_currency.'
            END,
            COLUMN = 'currency', TABLE = 'deals', SCHEMA = 'crm',
            CONSTRAINT = 'deals_currency_check';
    END IF;
    IF NEW.value = 'NaN'::numeric THEN
        RAISE EXCEPTION 'deal %: value NaN is not an amount', NEW.id
            USING ERRCODE = 'check_violation',
                  COLUMN = 'value', TABLE = 'deals', SCHEMA = 'crm',
                  CONSTRAINT = 'deals_value_check',
                  HINT = 'Give the deal value as a number of 0 or more (0 when not known yet).';
    END IF;
    -- Amounts are kept in cents, up to 9,999,999,999.99 (migration 0012).
    NEW.value := pg_catalog.round(NEW.value, 2);
    IF NEW.value > 9999999999.99 THEN
        RAISE EXCEPTION 'deal %: value % is more than 9,999,999,999.99', NEW.id, NEW.value
            USING ERRCODE = 'check_violation',
                  COLUMN = 'value', TABLE = 'deals', SCHEMA = 'crm',
                  CONSTRAINT = 'deals_value_range_check',
                  HINT = 'Give the amount in the deal''s currency units (e.g. 25000.00 for '
                      '25,000), not in cents or a smaller unit.';
    END IF;
    IF NEW.value < 0 THEN
        RAISE EXCEPTION 'deal %: value % must not be negative', NEW.id, NEW.value
            USING ERRCODE = 'check_violation',
                  COLUMN = 'value', TABLE = 'deals', SCHEMA = 'crm',
                  CONSTRAINT = 'deals_value_check',
                  HINT = 'Give the deal value as an amount of 0 or more.';
    END IF;
    IF NEW.probability NOT BETWEEN 0 AND 100 THEN
        RAISE EXCEPTION 'deal %: probability % must be between 0 and 100', NEW.id, NEW.probability
            USING ERRCODE = 'check_violation',
                  COLUMN = 'probability', TABLE = 'deals', SCHEMA = 'crm',
                  CONSTRAINT = 'deals_probability_check',
                  HINT = 'probability is a percentage; leave it out to use the stage default.';
    END IF;

    -- Probability: the stage's default unless the writer sets one; fixed on closed stages.
    IF NEW.probability IS NULL OR NOT v_probability_given THEN
        IF v_stage_changed OR NEW.probability IS NULL THEN
            NEW.probability := v_default;
        END IF;
    ELSIF v_closed AND NEW.probability <> v_default THEN
        RAISE EXCEPTION 'deal %: probability % contradicts stage % (always %)',
            NEW.id, NEW.probability, NEW.stage, v_default
            USING ERRCODE = 'check_violation',
                  COLUMN = 'probability', TABLE = 'deals', SCHEMA = 'crm',
                  HINT = 'Closed deals have probability 100 (won) or 0 (lost): leave '
                      'probability out.';
    END IF;

    IF v_closed THEN
        IF NEW.won IS DISTINCT FROM v_old.won AND NEW.won IS DISTINCT FROM (NEW.stage = 'closed_won')
            AND NEW.won IS NOT NULL THEN
            RAISE EXCEPTION 'deal %: won % contradicts stage %', NEW.id, NEW.won::text, NEW.stage
                USING ERRCODE = 'check_violation',
                      COLUMN = 'won', TABLE = 'deals', SCHEMA = 'crm',
                      CONSTRAINT = 'deals_won_check',
                      HINT = 'The stage sets won: leave won out of the write.';
        END IF;
        NEW.won := NEW.stage = 'closed_won';
        IF NEW.stage = 'closed_lost' AND NEW.lost_reason IS NULL THEN
            RAISE EXCEPTION 'deal %: stage closed_lost needs a lost_reason', NEW.id
                USING ERRCODE = 'check_violation',
                      COLUMN = 'lost_reason', TABLE = 'deals', SCHEMA = 'crm',
                      CONSTRAINT = 'deals_lost_reason_check',
                      HINT = 'Set lost_reason in the same write. ' || crm_private.refusal_choices(
                          'deals', 'deals_lost_reason_vocabulary_check', NULL
                      );
        END IF;
        IF v_stage_changed AND NEW.closed_at IS NOT DISTINCT FROM v_old.closed_at THEN
            NEW.closed_at := v_change_at;
        END IF;
        IF NEW.days_to_close IS NOT DISTINCT FROM v_old.days_to_close THEN
            NEW.days_to_close := pg_catalog.floor(
                extract(EPOCH FROM NEW.closed_at - NEW.created_at) / 86400
            )::integer;
        END IF;
    ELSIF v_stage_changed AND v_old.stage IN ('closed_won', 'closed_lost') THEN
        -- Reopened (crm.reopen_deal): the close is undone.
        NEW.won := NULL;
        NEW.closed_at := NULL;
        NEW.days_to_close := NULL;
        NEW.lost_reason := NULL;
    ELSIF NEW.won IS NOT NULL OR NEW.closed_at IS NOT NULL THEN
        RAISE EXCEPTION 'deal %: won % and closed_at % need a closed stage, but stage is %',
            NEW.id, NEW.won::text, NEW.closed_at, NEW.stage
            USING ERRCODE = 'check_violation',
                  COLUMN = CASE WHEN NEW.won IS NOT NULL THEN 'won' ELSE 'closed_at' END,
                  TABLE = 'deals', SCHEMA = 'crm',
                  HINT = 'Close a deal by setting stage to closed_won or closed_lost; won and '
                      'closed_at follow.';
    END IF;
    IF NEW.lost_reason IS NOT NULL AND NEW.stage <> 'closed_lost' THEN
        RAISE EXCEPTION 'deal %: lost_reason % is only for stage closed_lost, but stage is %',
            NEW.id, NEW.lost_reason, NEW.stage
            USING ERRCODE = 'check_violation',
                  COLUMN = 'lost_reason', TABLE = 'deals', SCHEMA = 'crm',
                  CONSTRAINT = 'deals_lost_reason_check',
                  HINT = 'Set stage = closed_lost together with lost_reason.';
    END IF;
    IF NEW.closed_at < NEW.created_at THEN
        RAISE EXCEPTION 'deal %: closed_at % is before created_at %',
            NEW.id, NEW.closed_at, NEW.created_at
            USING ERRCODE = 'check_violation',
                  COLUMN = 'closed_at', TABLE = 'deals', SCHEMA = 'crm',
                  CONSTRAINT = 'deals_closed_at_check',
                  HINT = 'When importing a closed deal, give its created_at too.';
    END IF;

    -- stage_changed_at: the writer's, else when this stage began.
    IF TG_OP = 'INSERT' THEN
        NEW.stage_changed_at := coalesce(
            NEW.stage_changed_at,
            CASE WHEN v_closed THEN NEW.closed_at END,
            NEW.created_at
        );
    ELSIF v_stage_changed THEN
        IF NOT v_stage_time_given THEN
            NEW.stage_changed_at := CASE WHEN v_closed THEN NEW.closed_at ELSE v_change_at END;
        END IF;
        IF NEW.stage_changed_at < OLD.stage_changed_at THEN
            RAISE EXCEPTION 'deal %: stage_changed_at % is before the previous stage change %',
                NEW.id, NEW.stage_changed_at, OLD.stage_changed_at
                USING ERRCODE = 'check_violation',
                      COLUMN = 'stage_changed_at', TABLE = 'deals', SCHEMA = 'crm',
                      HINT = 'Stage changes are recorded in time order: give a stage_changed_at '
                          '(or closed_at) after the previous stage change.';
        END IF;
    ELSE
        -- No stage change: the times of the last one are history (crm.deal_stage_history),
        -- and the row must keep agreeing with it.
        IF NEW.stage_changed_at IS DISTINCT FROM OLD.stage_changed_at
            OR NEW.closed_at IS DISTINCT FROM OLD.closed_at THEN
            RAISE EXCEPTION 'deal %: % cannot move from % to % without a stage change',
                NEW.id,
                CASE WHEN NEW.stage_changed_at IS DISTINCT FROM OLD.stage_changed_at
                    THEN 'stage_changed_at' ELSE 'closed_at' END,
                CASE WHEN NEW.stage_changed_at IS DISTINCT FROM OLD.stage_changed_at
                    THEN OLD.stage_changed_at ELSE OLD.closed_at END,
                CASE WHEN NEW.stage_changed_at IS DISTINCT FROM OLD.stage_changed_at
                    THEN NEW.stage_changed_at ELSE NEW.closed_at END
                USING ERRCODE = 'check_violation',
                      COLUMN = CASE WHEN NEW.stage_changed_at IS DISTINCT FROM OLD.stage_changed_at
                          THEN 'stage_changed_at' ELSE 'closed_at' END,
                      TABLE = 'deals', SCHEMA = 'crm',
                      HINT = 'They are the time of the last stage change, kept in '
                          'crm.deal_stage_history (append-only): give them only together with '
                          'a new stage. A wrong close can be undone with crm.reopen_deal and '
                          'closed again at the right time.';
        END IF;
        IF NEW.created_at IS DISTINCT FROM OLD.created_at THEN
            SELECT min(h.changed_at) INTO v_first_change
            FROM crm.deal_stage_history AS h
            WHERE h.client_id = NEW.client_id AND h.deal_id = NEW.id;
        END IF;
        IF NEW.created_at > v_first_change THEN
            RAISE EXCEPTION 'deal %: created_at % is after the deal''s first stage change %',
                NEW.id, NEW.created_at, v_first_change
                USING ERRCODE = 'check_violation',
                      COLUMN = 'created_at', TABLE = 'deals', SCHEMA = 'crm',
                      HINT = 'A correction of created_at may move it earlier, to or before the '
                          'time its stage history begins, never after.';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg_deals__lifecycle() IS
'Trigger (BEFORE INSERT OR UPDATE on crm.deals): stage probabilities, closing rules, the
closed-deal guard, attribution and currency defaults, and rejection of impossible states.';

REVOKE ALL ON FUNCTION crm_private.tg_deals__lifecycle() FROM public;

-- Whether the writer gave probability or stage_changed_at cannot be seen from NEW alone when
-- it gave the value the row already had (a stage change at the same instant as the previous
-- one, or keeping the probability while moving the stage). These triggers fire only when the
-- column is in the UPDATE's SET list and note it for _200_lifecycle.
CREATE OR REPLACE FUNCTION crm_private.tg__note_given_column()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_catalog.set_config('crm.given_' || TG_ARGV[0], NEW.id::text, TRUE);
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION crm_private.tg__note_given_column() IS
'Trigger (BEFORE UPDATE OF <column>): notes, for the lifecycle trigger, that the writer set the
column named by the trigger argument in this statement (see crm_private.given_in_update).';

REVOKE ALL ON FUNCTION crm_private.tg__note_given_column() FROM public;

CREATE OR REPLACE TRIGGER _150_given_probability
BEFORE UPDATE OF probability ON crm.deals
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg__note_given_column('probability');

CREATE OR REPLACE TRIGGER _150_given_stage_changed_at
BEFORE UPDATE OF stage_changed_at ON crm.deals
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg__note_given_column('stage_changed_at');

CREATE OR REPLACE TRIGGER _200_lifecycle
BEFORE INSERT OR UPDATE ON crm.deals
FOR EACH ROW
EXECUTE FUNCTION crm_private.tg_deals__lifecycle();
