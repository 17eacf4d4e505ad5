-- Dispatch leases pending executions per tenant x environment (fair share) without ranking every
-- pending row: the scopes with pending rows are enumerated along this index (one probe per scope)
-- and each scope's oldest due rows are read from it, so one lease costs
-- O(scopes + batch), not O(pending rows). It replaces the index on (next_attempt_at, created_at).
DROP INDEX workflow_executions_dispatch_idx;
CREATE INDEX workflow_executions_dispatch_idx
    ON workflow_executions (tenant_id, environment_id, next_attempt_at, created_at)
    WHERE status = 'pending';

-- Room on each page for HOT updates: leasing a row for dispatch or a poll changes no indexed
-- column, so with free space on the page PostgreSQL updates it without touching the five indexes.
ALTER TABLE workflow_executions SET (fillfactor = 80);

-- A new execution is due for dispatch at once: the event pipeline COPYs new rows and lets the
-- table fill in status ('pending'), next_attempt_at and the timestamps.
ALTER TABLE workflow_executions ALTER COLUMN next_attempt_at SET DEFAULT now();
