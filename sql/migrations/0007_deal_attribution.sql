-- 0007: per-deal attribution credits, maintained by triggers in the writer's transaction.
--
-- Computing every touch's weight at query time costs about 1.3 s per model for a client with
-- 14,000 won deals and 560,000 eligible touches; with each deal's shares per channel kept up to
-- date when a deal or touch changes, attribution reads ~5 rows per deal (docs/benchmarks.md).

CREATE TABLE crm_private.deal_attribution (
    client_id uuid NOT NULL,
    deal_id uuid NOT NULL,
    channel text NOT NULL,
    touches integer NOT NULL,
    first_touch double precision NOT NULL,
    last_touch double precision NOT NULL,
    linear double precision NOT NULL,
    time_decay double precision NOT NULL,
    position_based double precision NOT NULL,
    j_shaped double precision NOT NULL,
    inverse_j double precision NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deal_attribution_pkey PRIMARY KEY (client_id, deal_id, channel),
    CONSTRAINT deal_attribution_touches_check CHECK (touches >= 0)
);

COMMENT ON TABLE crm_private.deal_attribution IS
'Each deal''s share of credit per channel under every attribution model (time decay with the
default 7-day half-life), from its lead''s live touches up to the deal''s creation; a deal
without touches has one row for channel unattributed. Derived data, kept current by triggers on
crm.deals and crm.activities; crm.get_channel_revenue_attribution reads it. Not an API.';
COMMENT ON COLUMN crm_private.deal_attribution.client_id IS 'Owning client.';
COMMENT ON COLUMN crm_private.deal_attribution.deal_id IS 'Deal (crm.deals.id).';
COMMENT ON COLUMN crm_private.deal_attribution.channel IS
'A crm.channel_type value, or unattributed.';
COMMENT ON COLUMN crm_private.deal_attribution.touches IS 'Eligible touches in this channel.';
COMMENT ON COLUMN crm_private.deal_attribution.first_touch IS 'Share under first_touch (0-1).';
COMMENT ON COLUMN crm_private.deal_attribution.last_touch IS 'Share under last_touch.';
COMMENT ON COLUMN crm_private.deal_attribution.linear IS 'Share under linear.';
COMMENT ON COLUMN crm_private.deal_attribution.time_decay IS
'Share under time_decay with a 7-day half-life.';
COMMENT ON COLUMN crm_private.deal_attribution.position_based IS
'Share under position_based (40/20/40).';
COMMENT ON COLUMN crm_private.deal_attribution.j_shaped IS 'Share under j_shaped (20/20/60).';
COMMENT ON COLUMN crm_private.deal_attribution.inverse_j IS 'Share under inverse_j (60/20/20).';
COMMENT ON COLUMN crm_private.deal_attribution.computed_at IS 'When the row was computed.';
COMMENT ON CONSTRAINT deal_attribution_touches_check ON crm_private.deal_attribution IS
'touches must not be negative.';
