-- 0012: a deal amount out of range is refused with a message naming the field, not a cast
-- error. numeric(12, 2) failed an amount of 1e12 while the INSERT's values were converted to
-- the column type, with a bare 22003 "numeric field overflow", before any trigger could see
-- the row. The amounts become plain numeric: the deals lifecycle trigger rounds them to cents
-- and refuses NaN, negatives and anything above 9,999,999,999.99 (the old precision) with
-- 23514, the field, its value and a hint; the CHECKs keep the same bounds as the last line of
-- defence. Dropping a numeric typmod needs no table rewrite: stored values stay as they are.

-- The trigger's WHEN clause names the column: it goes, and the code files create it again
-- right after the migrations (on a fresh install it does not exist yet).
DROP TRIGGER IF EXISTS _500_after_update ON crm.deals;

-- Likewise the functions with a SQL-standard body (BEGIN ATOMIC) that read the amounts, with
-- what depends on them: all are code files, created again after the migrations.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT DISTINCT d.objid::regprocedure
        FROM pg_catalog.pg_depend AS d
        INNER JOIN pg_catalog.pg_attribute AS a
            ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_catalog.pg_proc'::regclass
          AND d.refclassid = 'pg_catalog.pg_class'::regclass
          AND d.refobjid IN ('crm.deals'::regclass, 'crm.deal_stage_history'::regclass)
          AND a.attname = 'value'
    LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %s CASCADE', v_function);
    END LOOP;
END;
$$;

ALTER TABLE crm.deals
ALTER COLUMN value TYPE numeric,
ADD CONSTRAINT deals_value_range_check CHECK (
    value <= 9999999999.99 AND value = round(value, 2)
);

ALTER TABLE crm.deal_stage_history
ALTER COLUMN value TYPE numeric,
ADD CONSTRAINT deal_stage_history_value_range_check CHECK (
    value <= 9999999999.99 AND value = round(value, 2)
);

COMMENT ON CONSTRAINT deals_value_range_check ON crm.deals IS
'value must be at most 9,999,999,999.99, in cents (two decimals).';
COMMENT ON CONSTRAINT deal_stage_history_value_range_check ON crm.deal_stage_history IS
'value must be at most 9,999,999,999.99, in cents (two decimals).';

-- A deal's expected close date had no bounds: 'infinity'::date and year 200000 were accepted.
ALTER TABLE crm.deals
ADD CONSTRAINT deals_expected_close_date_check CHECK (
    expected_close_date >= '1900-01-01' AND expected_close_date < '2200-01-01'
);

COMMENT ON CONSTRAINT deals_expected_close_date_check ON crm.deals IS
'expected_close_date must be from 1900-01-01 to 2199-12-31 (or NULL).';
