-- 0013: a channel or lost reason that is not in its vocabulary is refused with a message naming
-- the field, its value and the valid words (issue 11, "every refusal speaks"). As enum columns
-- they were refused while PostgreSQL read the value into the column type, with a bare 22P02
-- "invalid input value for enum crm.channel_type: "fax"", before any trigger could see the row.
-- The columns become plain text, each with a CHECK listing exactly its enum's labels (a catalog
-- test keeps the two equal); the BEFORE triggers refuse a bad value first with 23514 and the
-- CHECK's words as the hint, and the CHECKs stay as the last line of defence. The enum types
-- themselves stay: they are the vocabulary callers and function signatures name.
-- crm.deal_stage_type and the stage columns stay enums: the analytics order by stage.
--
-- Changing the type rewrites crm.activities, crm.meetings and crm.deals once each (one ALTER
-- TABLE per table, the CHECKs validated in the same pass). The rows already hold enum labels,
-- so every one passes its CHECK.

-- What depends on the columns blocks the type change: the functions with a SQL-standard body
-- (BEGIN ATOMIC) that read them, with what depends on those, and the triggers whose WHEN clause
-- names them. All are code files, created again right after the migrations (on a fresh install
-- none exists yet). No index or view depends on these columns.
DO $$
DECLARE
    v_function regprocedure;
    v_trigger record;
BEGIN
    FOR v_function IN
        SELECT DISTINCT d.objid::regprocedure
        FROM pg_catalog.pg_depend AS d
        INNER JOIN pg_catalog.pg_attribute AS a
            ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_catalog.pg_proc'::regclass
          AND d.refclassid = 'pg_catalog.pg_class'::regclass
          AND d.refobjid IN ('crm.activities'::regclass, 'crm.meetings'::regclass,
                             'crm.deals'::regclass)
          AND a.atttypid IN ('crm.channel_type'::regtype, 'crm.deal_lost_reason_type'::regtype)
    LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %s CASCADE', v_function);
    END LOOP;
    FOR v_trigger IN
        SELECT DISTINCT t.tgname, t.tgrelid::regclass AS tgrel
        FROM pg_catalog.pg_depend AS d
        INNER JOIN pg_catalog.pg_trigger AS t ON t.oid = d.objid
        INNER JOIN pg_catalog.pg_attribute AS a
            ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_catalog.pg_trigger'::regclass
          AND d.refclassid = 'pg_catalog.pg_class'::regclass
          AND d.refobjid IN ('crm.activities'::regclass, 'crm.meetings'::regclass,
                             'crm.deals'::regclass)
          AND a.atttypid IN ('crm.channel_type'::regtype, 'crm.deal_lost_reason_type'::regtype)
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s', v_trigger.tgname,
                                  v_trigger.tgrel);
    END LOOP;
END;
$$;

ALTER TABLE crm.activities
ALTER COLUMN channel TYPE text USING channel::text,
ADD CONSTRAINT activities_channel_check CHECK (
    channel IN ('email', 'sms', 'linkedin', 'voice', 'mail')
);

ALTER TABLE crm.meetings
ALTER COLUMN converting_channel TYPE text USING converting_channel::text,
ADD CONSTRAINT meetings_converting_channel_check CHECK (
    converting_channel IN ('email', 'sms', 'linkedin', 'voice', 'mail')
);

-- deals_lost_reason_check already names the rule that lost_reason is set exactly when the stage
-- is closed_lost (refusals carry that name): the list of words gets its own name.
ALTER TABLE crm.deals
ALTER COLUMN lost_reason TYPE text USING lost_reason::text,
ALTER COLUMN converting_channel TYPE text USING converting_channel::text,
ALTER COLUMN first_touch_channel TYPE text USING first_touch_channel::text,
ADD CONSTRAINT deals_lost_reason_vocabulary_check CHECK (
    lost_reason IN (
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
    )
),
ADD CONSTRAINT deals_converting_channel_check CHECK (
    converting_channel IN ('email', 'sms', 'linkedin', 'voice', 'mail')
),
ADD CONSTRAINT deals_first_touch_channel_check CHECK (
    first_touch_channel IN ('email', 'sms', 'linkedin', 'voice', 'mail')
);

COMMENT ON CONSTRAINT activities_channel_check ON crm.activities IS
'channel must be a crm.channel_type label: email, sms, linkedin, voice or mail.';
COMMENT ON CONSTRAINT meetings_converting_channel_check ON crm.meetings IS
'converting_channel must be a crm.channel_type label: email, sms, linkedin, voice or mail (or
NULL).';
COMMENT ON CONSTRAINT deals_lost_reason_vocabulary_check ON crm.deals IS
'lost_reason must be a crm.deal_lost_reason_type label: price_too_high, chose_competitor,
no_budget, timing_not_right, no_decision, champion_left, project_cancelled, went_silent, bad_fit
or other (or NULL).';
COMMENT ON CONSTRAINT deals_converting_channel_check ON crm.deals IS
'converting_channel must be a crm.channel_type label: email, sms, linkedin, voice or mail (or
NULL).';
COMMENT ON CONSTRAINT deals_first_touch_channel_check ON crm.deals IS
'first_touch_channel must be a crm.channel_type label: email, sms, linkedin, voice or mail (or
NULL).';

COMMENT ON COLUMN crm.activities.channel IS
'Channel of the touch: a crm.channel_type label (email, sms, linkedin, voice, mail).';
COMMENT ON COLUMN crm.meetings.converting_channel IS
'Channel of the converting touch: a crm.channel_type label.';
COMMENT ON COLUMN crm.deals.lost_reason IS
'Why the deal was lost, a crm.deal_lost_reason_type label; set exactly when the stage is
closed_lost.';
COMMENT ON COLUMN crm.deals.converting_channel IS
'Channel of the converting touch: a crm.channel_type label.';
COMMENT ON COLUMN crm.deals.first_touch_channel IS
'Channel of the lead''s first touch: a crm.channel_type label.';
