-- workflow_executions_list_idx (tenant_id, environment_id, created_at DESC, id) served no query:
-- nothing lists executions per tenant x environment yet (the REST API will, with an index chosen
-- for its queries). Each execution's row is inserted once and updated twice (started, finished),
-- and neither update can be HOT (status is indexed), so the index took three entries per
-- execution, on the hot path of every execution. Dropping an index takes a moment's lock only.
DROP INDEX IF EXISTS workflow_executions_list_idx;
