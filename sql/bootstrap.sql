-- Upgrade machinery, run by `agency-crm db upgrade` before any migration.
-- Idempotent: it creates only what is missing. Everything else is created by
-- the numbered files in sql/migrations/.

CREATE SCHEMA IF NOT EXISTS crm;

COMMENT ON SCHEMA crm IS
'agency-crm public API: the tables app code writes and the functions analysts call.';

CREATE TABLE IF NOT EXISTS crm.schema_migrations (
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT current_user,
    package_version text NOT NULL,
    duration_ms integer NOT NULL,
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (name),
    CONSTRAINT schema_migrations_name_check CHECK (name ~ '^[0-9]{4}_[a-z0-9_]+\.sql$'),
    CONSTRAINT schema_migrations_checksum_check CHECK (checksum ~ '^[0-9a-f]{64}$')
);

COMMENT ON TABLE crm.schema_migrations IS
'One row per applied migration file of sql/migrations/, written by `agency-crm db upgrade`.
An applied file must never change: upgrade refuses to run when its checksum differs.';
COMMENT ON COLUMN crm.schema_migrations.name IS 'File name, e.g. 0001_schemas_and_types.sql.';
COMMENT ON COLUMN crm.schema_migrations.checksum IS
'SHA-256 (hex) of the file text as applied, line endings normalised to LF.';
COMMENT ON COLUMN crm.schema_migrations.applied_at IS 'When the migration was applied.';
COMMENT ON COLUMN crm.schema_migrations.applied_by IS 'Database role that applied it.';
COMMENT ON COLUMN crm.schema_migrations.package_version IS 'agency-crm version that applied it.';
COMMENT ON COLUMN crm.schema_migrations.duration_ms IS 'How long the migration took to run.';

CREATE TABLE IF NOT EXISTS crm.schema_code (
    singleton boolean NOT NULL DEFAULT TRUE,
    checksum text NOT NULL,
    package_version text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schema_code_pkey PRIMARY KEY (singleton),
    CONSTRAINT schema_code_singleton_check CHECK (singleton),
    CONSTRAINT schema_code_checksum_check CHECK (checksum ~ '^[0-9a-f]{64}$')
);

COMMENT ON TABLE crm.schema_code IS
'The functions and triggers (sql/functions/, sql/triggers/) last applied, as one checksum.
Upgrade re-applies the code when it differs or when a migration ran.';
COMMENT ON COLUMN crm.schema_code.singleton IS 'Always true: the table holds one row.';
COMMENT ON COLUMN crm.schema_code.checksum IS
'SHA-256 (hex) over the names and texts of every function and trigger file.';
COMMENT ON COLUMN crm.schema_code.package_version IS 'agency-crm version that applied the code.';
COMMENT ON COLUMN crm.schema_code.applied_at IS 'When the code was last applied.';

CREATE TABLE IF NOT EXISTS crm.schema_access (
    singleton boolean NOT NULL DEFAULT TRUE,
    checksum text NOT NULL,
    roles text[] NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schema_access_pkey PRIMARY KEY (singleton),
    CONSTRAINT schema_access_singleton_check CHECK (singleton),
    CONSTRAINT schema_access_checksum_check CHECK (checksum ~ '^[0-9a-f]{64}$')
);

COMMENT ON TABLE crm.schema_access IS
'The grants and row-level security (sql/access.sql) last applied, for which roles. Upgrade
applies them again when the file, the roles that exist or the tables'' owners changed, or when
a migration ran or the code was re-applied.';
COMMENT ON COLUMN crm.schema_access.singleton IS 'Always true: the table holds one row.';
COMMENT ON COLUMN crm.schema_access.checksum IS
'SHA-256 (hex) over sql/access.sql, the agency-crm roles that existed and the tables'' owners.';
COMMENT ON COLUMN crm.schema_access.roles IS 'The agency-crm roles that existed and were granted.';
COMMENT ON COLUMN crm.schema_access.applied_at IS 'When the grants were last applied.';
