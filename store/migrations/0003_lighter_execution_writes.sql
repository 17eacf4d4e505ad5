-- Fewer writes per execution. An execution is one inserted row, four updates and eleven step and
-- history rows (the mock's three-step workflow); at thousands of executions per second PostgreSQL's
-- CPU is the limit, and a profile of the full lifecycle put 11 % of it in foreign-key triggers.
--
-- No foreign keys on the per-execution tables. Each inserted step or history row ran a
-- referential check (a query through SPI, a probe of the executions' primary key and a row lock)
-- and each new execution one against workflow_definitions. The references still hold, by
-- construction: step and history rows are written only by LifecycleRepository::RecordPolls, in
-- the transaction that has just updated their execution (rows it did not update get none);
-- executions are created only for a definition version the matching index loaded from
-- workflow_definitions, and definitions are never deleted (status 'deleted' keeps the row);
-- no statement deletes executions. The end-to-end and robustness tests check them after each run.
ALTER TABLE step_executions DROP CONSTRAINT IF EXISTS step_executions_execution_id_fkey;
ALTER TABLE execution_history DROP CONSTRAINT IF EXISTS execution_history_execution_id_fkey;
ALTER TABLE workflow_executions DROP CONSTRAINT IF EXISTS workflow_executions_workflow_id_fkey;

-- History in chunks: one row per execution and status poll holding the events that poll found
-- new, instead of one row per event (the mock's eight events were eight inserts, eight index
-- entries and, until now, eight conflict checks). The events of a chunk are
-- [{"seq": n, "event_type": "...", "details": {...} | null, "occurred_at": "RFC 3339"}, ...] in seq
-- order; first_seq is the seq of its first event. The execution row counts the events stored
-- (history_count), so a poll writes only what is new and needs no conflict check per event.
-- `execution_history` stays readable with its old columns, as a view over the chunks.
CREATE TABLE execution_history_chunks (
    execution_id       text        NOT NULL,
    first_seq          integer     NOT NULL,
    tenant_id          text        NOT NULL,
    environment_id     text        NOT NULL,
    events             jsonb       NOT NULL,
    PRIMARY KEY (execution_id, first_seq)
);

INSERT INTO execution_history_chunks (execution_id, first_seq, tenant_id, environment_id, events)
SELECT execution_id, min(seq), tenant_id, environment_id,
       jsonb_agg(jsonb_build_object('seq', seq, 'event_type', event_type, 'details', details,
                                    'occurred_at', occurred_at) ORDER BY seq)
FROM execution_history GROUP BY execution_id, tenant_id, environment_id;

ALTER TABLE workflow_executions ADD COLUMN history_count integer NOT NULL DEFAULT 0;
UPDATE workflow_executions e SET history_count = h.n
FROM (SELECT execution_id, max(seq) + 1 AS n FROM execution_history GROUP BY execution_id) h
WHERE e.id = h.execution_id AND e.status = 'running';  -- only running ones are polled again

DROP TABLE execution_history;
CREATE VIEW execution_history AS
SELECT c.execution_id, (ev ->> 'seq')::integer AS seq, c.tenant_id, c.environment_id,
       ev ->> 'event_type' AS event_type, nullif(ev -> 'details', 'null'::jsonb) AS details,
       (ev ->> 'occurred_at')::timestamptz AS occurred_at
FROM execution_history_chunks c CROSS JOIN LATERAL jsonb_array_elements(c.events) AS ev;
