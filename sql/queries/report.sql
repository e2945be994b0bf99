-- Named queries of the report (python/agency_crm/report): `agency-crm report`, the API's report
-- and analytics routes, the demo. Each section of a report is one call of an analytics
-- function with the report's arguments, named as the report's JSON names the section; the
-- numbers are the functions', never recomputed. Every column a function returns is the
-- section's (SELECT *): a column added to a function shows in the report without a change here.
-- noqa: disable=AM04

-- name: repeatable_read
-- The first statements of a report's transaction: every section reads the same snapshot ...
SET LOCAL transaction_isolation = 'repeatable read';

-- name: read_only
-- ... and nothing is written.
SET LOCAL transaction_read_only = 'on';

-- name: client
-- The client a report is about: its name, its default currency, the currencies its live deals
-- carry (the report's money is in one of them), and now() (the as-of when none is given).
SELECT
    c.id,
    c.name,
    c.default_currency,
    pg_catalog.now() AS now,
    array(
        SELECT DISTINCT d.currency
        FROM crm.deals AS d
        WHERE d.client_id = c.id AND d.deleted_at IS NULL
        ORDER BY d.currency
    ) AS deal_currencies
FROM crm.clients AS c
WHERE c.id = %(client_id)s AND c.deleted_at IS NULL;

-- name: now
SELECT pg_catalog.now() AS now;

-- name: show_rate
SELECT * FROM crm.get_show_rate_analysis(%(client_id)s, %(days)s, %(as_of)s);

-- name: show_rate_by_week
SELECT * FROM crm.get_show_rate_by_week(%(client_id)s, %(days)s, %(as_of)s);

-- name: show_rate_drivers
SELECT * FROM crm.get_show_rate_drivers(%(client_id)s, %(days)s, %(as_of)s);

-- name: funnel
SELECT * FROM crm.get_funnel_analytics(%(client_id)s, %(days)s, %(as_of)s, %(currency)s);

-- name: attribution
SELECT *
FROM crm.get_attribution_comparison(
    %(client_id)s, %(days)s, %(as_of)s, p_currency => %(currency)s
);

-- name: markov
SELECT * FROM crm.get_markov_attribution(%(client_id)s, %(days)s, %(as_of)s, %(currency)s);

-- name: lost_deals
SELECT * FROM crm.get_lost_deal_analysis(%(client_id)s, %(days)s, %(as_of)s, %(currency)s);

-- name: lost_reasons_by_stage
SELECT *
FROM crm.get_lost_reasons_by_stage(%(client_id)s, %(days)s, %(as_of)s, %(currency)s);

-- name: stage_conversion
SELECT * FROM crm.get_stage_conversion(%(client_id)s, %(days)s, %(as_of)s);

-- name: time_in_stage
SELECT * FROM crm.get_time_in_stage(%(client_id)s, %(days)s, %(as_of)s);

-- name: velocity
SELECT * FROM crm.get_pipeline_velocity(%(client_id)s, %(days)s, %(as_of)s, %(currency)s);

-- name: forecast
SELECT * FROM crm.get_weighted_forecast(%(client_id)s, %(as_of)s, %(currency)s);

-- name: agency_comparison
SELECT * FROM crm.get_agency_comparison(%(days)s, %(as_of)s, %(currency)s);
