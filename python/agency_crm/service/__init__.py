"""What the HTTP API and the CLI share: connecting a client's CRM, its config, its catalog
(pipelines, stages, users), its push log and its meetings, each step a transaction as the
right role with the client's row-level security in force (:mod:`.crm`), the answers as
pydantic models (:mod:`.models`) and the errors as :class:`.errors.ServiceError`."""
