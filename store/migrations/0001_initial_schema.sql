-- workflowd schema, version 1: tenant workflow definitions (seed 003), their versions, executions,
-- step executions and execution history. Every row carries tenant_id and environment_id, and every
-- query of the daemon and the API filters by both.

CREATE TABLE workflow_definitions (
    id                 text        PRIMARY KEY,
    tenant_id          text        NOT NULL,
    environment_id     text        NOT NULL,
    name               text        NOT NULL,
    description        text        NOT NULL DEFAULT '',
    trigger_type       text        NOT NULL
                                   CHECK (trigger_type IN ('event', 'scheduled', 'manual', 'api')),
    event_name         text,       -- trigger.event_name, kept as a column for the matching index
    trigger            jsonb       NOT NULL,
    steps              jsonb       NOT NULL,
    enabled            boolean     NOT NULL DEFAULT true,
    retry_policy       jsonb       NOT NULL,
    timeout_seconds    integer     NOT NULL DEFAULT 0 CHECK (timeout_seconds >= 0),
    provider           text        NOT NULL DEFAULT 'mock',
    provider_config    jsonb,
    version            integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    status             text        NOT NULL DEFAULT 'published'
                                   CHECK (status IN ('draft', 'published', 'archived', 'deleted')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    created_by         text        NOT NULL DEFAULT '',
    updated_by         text        NOT NULL DEFAULT '',
    CHECK (trigger_type <> 'event' OR event_name IS NOT NULL)
);

-- A name is unique within its tenant x environment (deleted definitions free their name).
CREATE UNIQUE INDEX workflow_definitions_name_key
    ON workflow_definitions (tenant_id, environment_id, name) WHERE status <> 'deleted';
-- Matching index load: enabled, published event definitions of a tenant x environment x event.
CREATE INDEX workflow_definitions_match_idx
    ON workflow_definitions (tenant_id, environment_id, event_name)
    WHERE enabled AND status = 'published' AND trigger_type = 'event';
-- API listing.
CREATE INDEX workflow_definitions_list_idx
    ON workflow_definitions (tenant_id, environment_id, created_at DESC, id);

-- Every version a definition ever had, so an execution can be dispatched with the exact version it
-- was created for, even after the definition changed.
CREATE TABLE workflow_definition_versions (
    definition_id      text        NOT NULL REFERENCES workflow_definitions (id),
    version            integer     NOT NULL,
    tenant_id          text        NOT NULL,
    environment_id     text        NOT NULL,
    document           jsonb       NOT NULL,  -- the whole definition as validated
    created_at         timestamptz NOT NULL DEFAULT now(),
    created_by         text        NOT NULL DEFAULT '',
    PRIMARY KEY (definition_id, version)
);

CREATE TABLE workflow_executions (
    id                     text        PRIMARY KEY,
    tenant_id              text        NOT NULL,
    environment_id         text        NOT NULL,
    workflow_id            text        NOT NULL REFERENCES workflow_definitions (id),
    workflow_name          text        NOT NULL,
    definition_version     integer     NOT NULL,
    provider               text        NOT NULL,
    provider_execution_id  text,
    trigger_type           text        NOT NULL
                                       CHECK (trigger_type IN ('event', 'scheduled', 'manual', 'api')),
    trigger_event_id       text        NOT NULL,  -- the event id; manual triggers get a generated id
    trigger_event          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status                 text        NOT NULL DEFAULT 'pending'
                                       CHECK (status IN ('pending', 'running', 'succeeded', 'failed',
                                                         'timed_out', 'cancelled')),
    attempt                integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    retry_of               text        REFERENCES workflow_executions (id),
    start_attempts         integer     NOT NULL DEFAULT 0,  -- provider start calls made so far
    next_attempt_at        timestamptz,  -- pending: when dispatch may (re)try the start
    next_poll_at           timestamptz,  -- running: when the status is next polled
    poll_count             integer     NOT NULL DEFAULT 0,
    lease_owner            text,
    lease_expires_at       timestamptz,
    context                jsonb       NOT NULL DEFAULT '{}'::jsonb,
    output                 jsonb,
    error                  jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    started_at             timestamptz,
    completed_at           timestamptz,
    deadline_at            timestamptz,  -- started_at + the definition's timeout
    CHECK (retry_of IS NULL OR attempt > 1)
);

-- Nothing doubled: one execution per (definition, event) and attempt. A redelivered or replayed
-- event inserts attempt 1 again and hits this key; a retry is a new attempt linked by retry_of.
CREATE UNIQUE INDEX workflow_executions_event_key
    ON workflow_executions (workflow_id, trigger_event_id, attempt);
-- Dispatch: pending executions due for a start attempt.
CREATE INDEX workflow_executions_dispatch_idx
    ON workflow_executions (next_attempt_at, created_at) WHERE status = 'pending';
-- Polling: running executions due for a status poll.
CREATE INDEX workflow_executions_poll_idx
    ON workflow_executions (next_poll_at) WHERE status = 'running';
-- API listing and per-definition checks (EC-2: running executions of a definition).
CREATE INDEX workflow_executions_list_idx
    ON workflow_executions (tenant_id, environment_id, created_at DESC, id);
CREATE INDEX workflow_executions_workflow_idx
    ON workflow_executions (workflow_id, status);

CREATE TABLE step_executions (
    execution_id       text        NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    step_id            text        NOT NULL,
    tenant_id          text        NOT NULL,
    environment_id     text        NOT NULL,
    status             text        NOT NULL
                                   CHECK (status IN ('pending', 'running', 'completed', 'failed',
                                                     'skipped')),
    attempt            integer     NOT NULL DEFAULT 1,
    output             jsonb,
    error              jsonb,
    started_at         timestamptz,
    completed_at       timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, step_id)
);

CREATE TABLE execution_history (
    execution_id       text        NOT NULL REFERENCES workflow_executions (id) ON DELETE CASCADE,
    seq                integer     NOT NULL,  -- position in the provider's history
    tenant_id          text        NOT NULL,
    environment_id     text        NOT NULL,
    event_type         text        NOT NULL,
    details            jsonb,
    occurred_at        timestamptz NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

-- Definition changes are announced so every replica refreshes its matching index at once
-- (LISTEN workflowd_definitions); a periodic full resync covers missed notifications.
CREATE FUNCTION workflowd_notify_definition_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_data workflow_definitions%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_data := OLD;
    ELSE
        row_data := NEW;
    END IF;
    PERFORM pg_notify('workflowd_definitions',
                      json_build_object('op', TG_OP, 'id', row_data.id,
                                        'tenant_id', row_data.tenant_id,
                                        'environment_id', row_data.environment_id,
                                        'version', row_data.version)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_definitions_notify
    AFTER INSERT OR UPDATE OR DELETE ON workflow_definitions
    FOR EACH ROW EXECUTE FUNCTION workflowd_notify_definition_change();
