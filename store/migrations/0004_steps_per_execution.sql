-- Steps in one row per execution: a status poll wrote one upserted row per step (three for the
-- mock's workflow: three conflict checks, three index probes, three tuples), now one row holding
-- the execution's steps, rewritten only when they changed. `steps` is a JSON array of
-- {"step_id", "status", "attempt", "output", "error", "started_at", "completed_at"} (times in
-- RFC 3339, absent members null). `step_executions` stays readable with its old columns, as a
-- view; a step's updated_at is its execution's last step change.
CREATE TABLE execution_steps (
    execution_id       text        PRIMARY KEY,
    tenant_id          text        NOT NULL,
    environment_id     text        NOT NULL,
    steps              jsonb       NOT NULL CHECK (jsonb_typeof(steps) = 'array'),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- The states of a step, as the old table's CHECK had them.
    CHECK (NOT jsonb_path_exists(steps, '$[*] ? (!(@.status == "pending" || @.status == "running" ||
        @.status == "completed" || @.status == "failed" || @.status == "skipped"))'))
);

INSERT INTO execution_steps (execution_id, tenant_id, environment_id, steps, updated_at)
SELECT execution_id, tenant_id, environment_id,
       jsonb_agg(jsonb_build_object('step_id', step_id, 'status', status, 'attempt', attempt,
                                    'output', output, 'error', error, 'started_at', started_at,
                                    'completed_at', completed_at)
                 ORDER BY started_at NULLS LAST, step_id),
       max(updated_at)
FROM step_executions GROUP BY execution_id, tenant_id, environment_id;

DROP TABLE step_executions;
CREATE VIEW step_executions AS
SELECT x.execution_id, s ->> 'step_id' AS step_id, x.tenant_id, x.environment_id,
       s ->> 'status' AS status, coalesce((s ->> 'attempt')::integer, 1) AS attempt,
       nullif(s -> 'output', 'null'::jsonb) AS output, nullif(s -> 'error', 'null'::jsonb) AS error,
       (s ->> 'started_at')::timestamptz AS started_at,
       (s ->> 'completed_at')::timestamptz AS completed_at, x.updated_at
FROM execution_steps x CROSS JOIN LATERAL jsonb_array_elements(x.steps) AS s;
