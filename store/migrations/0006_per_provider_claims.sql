-- Dispatch and poll rounds claim per provider (each engine has its own slots, deadline and circuit
-- breaker): the claim indexes lead with the provider, so that a provider's claim costs
-- O(scopes + batch) of that provider, whatever the backlog of another (an engine that is down
-- parks its executions: they stay pending, possibly many). They replace the provider-less ones;
-- the fair walk over (provider, tenant, environment) scopes uses the new dispatch index as well.
CREATE INDEX workflow_executions_provider_dispatch_idx
    ON workflow_executions (provider, tenant_id, environment_id, next_attempt_at, created_at)
    WHERE status = 'pending';
CREATE INDEX workflow_executions_provider_poll_idx
    ON workflow_executions (provider, next_poll_at)
    WHERE status = 'running';
DROP INDEX IF EXISTS workflow_executions_dispatch_idx;
DROP INDEX IF EXISTS workflow_executions_poll_idx;
