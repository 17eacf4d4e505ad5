#!/usr/bin/env python3
"""Baseline of the Temporal benchmark phase: starts COUNT runs of a workflow type with the official
Python SDK's client (temporalio), CONCURRENCY starts in flight, on a task queue no worker polls (so
only starts are measured, as in workflowd's run it is compared with), with the same kind of input,
memo, search attributes and timeout as workflowd's starts. Prints one JSON line:
{"count", "concurrency", "seconds", "rate" (10-90 % of the starts), "rate_all"}."""

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import (SearchAttributeKey, SearchAttributePair, TypedSearchAttributes,
                               WorkflowIDConflictPolicy, WorkflowIDReusePolicy)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--address", required=True)
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--task-queue", required=True)
    ap.add_argument("--workflow-type", default="WorkflowdStepRunner")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--id-prefix", default="sdk")
    args = ap.parse_args()

    client = await Client.connect(args.address, namespace=args.namespace)
    # The same kind of input workflowd sends: identifiers, the trigger event, three steps.
    steps = [{"id": s, "type": s, "config": {}, "depends_on": [], "run": True,
              "retry_policy": {"maximum_attempts": 3}} for s in
             ("assign_plan", "create_wallet", "send_email")]
    # The memo and search attributes workflowd sets on each run (visibility writes included).
    attributes = TypedSearchAttributes([
        SearchAttributePair(SearchAttributeKey.for_keyword(name), value) for name, value in
        (("WorkflowdTenant", "bench"), ("WorkflowdEnvironment", "prod"),
         ("WorkflowdDefinition", "bench"))])
    sem = asyncio.Semaphore(args.concurrency)
    done: list[float] = []

    async def start(i: int) -> None:
        wid = f"{args.id_prefix}-{i}"
        payload = {"execution_id": wid, "tenant_id": "bench", "environment_id": "prod",
                   "definition_id": "bench", "definition_version": 1,
                   "context": {"attempt": 1, "start_attempt": 1},
                   "event": {"id": wid, "type": "customer.created",
                             "data": {"customer": {"country": "US", "tier": "gold"}}},
                   "steps": steps}
        async with sem:
            await client.start_workflow(
                args.workflow_type, payload, id=wid, task_queue=args.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                execution_timeout=timedelta(seconds=600),
                memo={"tenant_id": "bench", "environment_id": "prod", "definition_id": "bench",
                      "definition_version": "1", "workflow_id": "bench-v1",
                      "failed_result": {"field": "status", "values": ["failed"]}},
                search_attributes=attributes)
            done.append(time.monotonic())

    t0 = time.monotonic()
    await asyncio.gather(*(start(i) for i in range(args.count)))
    seconds = time.monotonic() - t0
    done.sort()
    lo, hi = done[len(done) // 10], done[len(done) * 9 // 10]
    rate = (len(done) * 8 // 10) / (hi - lo) if hi > lo else 0.0
    print(json.dumps({"count": args.count, "concurrency": args.concurrency,
                      "seconds": round(seconds, 3), "rate": rate,
                      "rate_all": args.count / seconds}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    # The SDK's native threads can crash the interpreter's own exit (as in workers/temporal):
    # the result is printed, leave at once.
    sys.stdout.flush()
    os._exit(0)
