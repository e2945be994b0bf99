-- 0002: the host tables: clients (the tenants), campaigns, leads and activities.
-- They are the integration surface: the agency's own systems write them, and
-- meetings, deals and attribution read them. Kept minimal on purpose.

CREATE TABLE crm.clients (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    default_currency text NOT NULL DEFAULT 'AUD',
    timezone text NOT NULL DEFAULT 'UTC',
    auto_create_deals boolean NOT NULL DEFAULT FALSE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT clients_pkey PRIMARY KEY (id),
    CONSTRAINT clients_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT clients_default_currency_check CHECK (default_currency ~ '^[A-Z]{3}$'),
    CONSTRAINT clients_timezone_check CHECK (crm_private.is_valid_time_zone(timezone))
);

COMMENT ON TABLE crm.clients IS
'An agency client: the tenant. Every other table carries client_id and can only reference
rows of the same client.';
COMMENT ON COLUMN crm.clients.id IS 'Client id (tenant id, distribution key).';
COMMENT ON COLUMN crm.clients.name IS 'Display name, 1-200 characters.';
COMMENT ON COLUMN crm.clients.default_currency IS
'ISO-4217 code (three upper-case letters) for deals that name no currency. Default AUD.';
COMMENT ON COLUMN crm.clients.timezone IS
'IANA time zone name (e.g. Australia/Sydney) used for calendar-based reporting.';
COMMENT ON COLUMN crm.clients.auto_create_deals IS
'When true, a meeting whose outcome becomes good creates a deal in qualification.';
COMMENT ON COLUMN crm.clients.created_at IS 'When the row was created.';
COMMENT ON COLUMN crm.clients.updated_at IS 'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.clients.deleted_at IS 'Soft-delete time; NULL while the row is live.';
COMMENT ON CONSTRAINT clients_name_check ON crm.clients IS
'name must be 1-200 characters after trimming spaces.';
COMMENT ON CONSTRAINT clients_default_currency_check ON crm.clients IS
'default_currency must be an ISO-4217 code: three upper-case letters, e.g. AUD, USD, EUR.';
COMMENT ON CONSTRAINT clients_timezone_check ON crm.clients IS
'timezone must be a time zone name PostgreSQL knows, e.g. Australia/Sydney or UTC
(see pg_timezone_names).';

CREATE TABLE crm.campaigns (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT campaigns_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT campaigns_client_id_fkey FOREIGN KEY (client_id) REFERENCES crm.clients (id),
    CONSTRAINT campaigns_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200)
);

COMMENT ON TABLE crm.campaigns IS 'An outreach campaign run for a client.';
COMMENT ON COLUMN crm.campaigns.id IS 'Campaign id.';
COMMENT ON COLUMN crm.campaigns.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.campaigns.name IS 'Display name, 1-200 characters.';
COMMENT ON COLUMN crm.campaigns.created_at IS 'When the row was created.';
COMMENT ON COLUMN crm.campaigns.updated_at IS 'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.campaigns.deleted_at IS 'Soft-delete time; NULL while the row is live.';
COMMENT ON CONSTRAINT campaigns_client_id_fkey ON crm.campaigns IS
'client_id must name an existing client.';
COMMENT ON CONSTRAINT campaigns_name_check ON crm.campaigns IS
'name must be 1-200 characters after trimming spaces.';

CREATE TABLE crm.leads (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    campaign_id uuid,
    email text,
    first_name text,
    last_name text,
    company text,
    title text,
    phone text,
    status text NOT NULL DEFAULT 'new',
    meeting_booked boolean NOT NULL DEFAULT FALSE,
    meeting_booked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT leads_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT leads_client_id_fkey FOREIGN KEY (client_id) REFERENCES crm.clients (id),
    CONSTRAINT leads_client_id_campaign_id_fkey FOREIGN KEY (client_id, campaign_id)
    REFERENCES crm.campaigns (client_id, id),
    CONSTRAINT leads_email_check CHECK (
        length(email) <= 320 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'
    ),
    CONSTRAINT leads_status_check CHECK (
        status IN (
            'new',
            'contacted',
            'engaged',
            'meeting_booked',
            'qualified',
            'disqualified',
            'customer',
            'unsubscribed',
            'bounced'
        )
    ),
    CONSTRAINT leads_meeting_booked_at_check CHECK (
        meeting_booked = (meeting_booked_at IS NOT NULL)
    )
);

COMMENT ON TABLE crm.leads IS
'A person the agency reaches out to for a client. At most one live lead per client and
normalised (lower-cased) email.';
COMMENT ON COLUMN crm.leads.id IS 'Lead id.';
COMMENT ON COLUMN crm.leads.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.leads.campaign_id IS 'Campaign the lead came from, if any.';
COMMENT ON COLUMN crm.leads.email IS
'Email address without spaces; unique per client among live leads, compared lower-cased.';
COMMENT ON COLUMN crm.leads.first_name IS 'First name.';
COMMENT ON COLUMN crm.leads.last_name IS 'Last name.';
COMMENT ON COLUMN crm.leads.company IS 'Company name (becomes the CRM organisation).';
COMMENT ON COLUMN crm.leads.title IS 'Job title.';
COMMENT ON COLUMN crm.leads.phone IS 'Phone number as given.';
COMMENT ON COLUMN crm.leads.status IS
'Lead status: new, contacted, engaged, meeting_booked, qualified, disqualified, customer,
unsubscribed, bounced. Booking a meeting sets meeting_booked.';
COMMENT ON COLUMN crm.leads.meeting_booked IS 'True once the lead has booked a meeting.';
COMMENT ON COLUMN crm.leads.meeting_booked_at IS
'When the lead first booked a meeting; set exactly when meeting_booked is true.';
COMMENT ON COLUMN crm.leads.created_at IS
'When the lead was created (may be supplied on insert for historical imports).';
COMMENT ON COLUMN crm.leads.updated_at IS 'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.leads.deleted_at IS 'Soft-delete time; NULL while the row is live.';
COMMENT ON CONSTRAINT leads_client_id_fkey ON crm.leads IS
'client_id must name an existing client.';
COMMENT ON CONSTRAINT leads_client_id_campaign_id_fkey ON crm.leads IS
'campaign_id must name a campaign of the same client.';
COMMENT ON CONSTRAINT leads_email_check ON crm.leads IS
'email must look like name@domain (one @, no spaces) and be at most 320 characters.';
COMMENT ON CONSTRAINT leads_status_check ON crm.leads IS
'status must be one of new, contacted, engaged, meeting_booked, qualified, disqualified,
customer, unsubscribed, bounced.';
COMMENT ON CONSTRAINT leads_meeting_booked_at_check ON crm.leads IS
'meeting_booked_at must be set exactly when meeting_booked is true.';

CREATE UNIQUE INDEX leads_client_id_email_key
ON crm.leads (client_id, lower(email))
WHERE deleted_at IS NULL AND email IS NOT NULL;

COMMENT ON INDEX crm.leads_client_id_email_key IS
'One live lead per client and normalised (lower-cased) email.';

CREATE INDEX leads_client_id_created_at_idx ON crm.leads (client_id, created_at);
CREATE INDEX leads_client_id_campaign_id_idx ON crm.leads (client_id, campaign_id);

CREATE TABLE crm.activities (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL,
    lead_id uuid NOT NULL,
    campaign_id uuid,
    channel crm.channel_type NOT NULL,
    activity_type text NOT NULL DEFAULT 'touch',
    occurred_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT activities_pkey PRIMARY KEY (client_id, id),
    CONSTRAINT activities_client_id_lead_id_fkey FOREIGN KEY (client_id, lead_id)
    REFERENCES crm.leads (client_id, id),
    CONSTRAINT activities_client_id_campaign_id_fkey FOREIGN KEY (client_id, campaign_id)
    REFERENCES crm.campaigns (client_id, id),
    CONSTRAINT activities_activity_type_check CHECK (activity_type ~ '^[a-z][a-z0-9_]{0,62}$')
);

COMMENT ON TABLE crm.activities IS
'One outreach touch to a lead (an email sent, a call, a LinkedIn message, ...). Touches are
what booking and revenue attribution are computed from.';
COMMENT ON COLUMN crm.activities.id IS 'Activity id.';
COMMENT ON COLUMN crm.activities.client_id IS 'Owning client.';
COMMENT ON COLUMN crm.activities.lead_id IS 'Lead that was touched.';
COMMENT ON COLUMN crm.activities.campaign_id IS 'Campaign the touch belongs to, if any.';
COMMENT ON COLUMN crm.activities.channel IS 'Channel of the touch (crm.channel_type).';
COMMENT ON COLUMN crm.activities.activity_type IS
'Kind of touch in lower snake_case, e.g. touch (generic, the default), sent, reply, call,
voicemail, connection_request.';
COMMENT ON COLUMN crm.activities.occurred_at IS 'When the touch happened.';
COMMENT ON COLUMN crm.activities.created_at IS 'When the row was created.';
COMMENT ON COLUMN crm.activities.updated_at IS 'When the row last changed (maintained by trigger).';
COMMENT ON COLUMN crm.activities.deleted_at IS 'Soft-delete time; NULL while the row is live.';
COMMENT ON CONSTRAINT activities_client_id_lead_id_fkey ON crm.activities IS
'lead_id must name a lead of the same client.';
COMMENT ON CONSTRAINT activities_client_id_campaign_id_fkey ON crm.activities IS
'campaign_id must name a campaign of the same client.';
COMMENT ON CONSTRAINT activities_activity_type_check ON crm.activities IS
'activity_type must be lower snake_case (a-z, 0-9, _), starting with a letter, at most 63
characters.';

CREATE INDEX activities_client_id_lead_id_occurred_at_idx
ON crm.activities (client_id, lead_id, occurred_at, id);
CREATE INDEX activities_client_id_occurred_at_idx ON crm.activities (client_id, occurred_at);
CREATE INDEX activities_client_id_campaign_id_idx ON crm.activities (client_id, campaign_id);
