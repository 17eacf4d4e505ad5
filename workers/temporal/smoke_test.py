#!/usr/bin/env python3
"""End-to-end check of the worker against a running Temporal server and worker.

Starts WorkflowdStepRunner runs with the Python client and asserts their outcomes and histories:
  diamond         four steps with a depends_on diamond (one step failing its first attempt):
                  the two middle steps run in parallel, the last sees both results
  step-fails      a step failing beyond its 2 attempts: the run fails with StepFailed and the
                  step depending on it is never scheduled
  report-failure  a step returning {"ok": false}: the run completes with status "failed"
  cancel          a slow heartbeating step: cancelling the run cancels the activity
  run-false       a step sent with run: false is skipped (no activity), its dependent runs

Usage (with the services started: eval "$(scripts/services.sh env)"):
  .cache/temporal/venv/bin/python workers/temporal/smoke_test.py [--worker-log FILE]
Exits 0 when every check passed, 1 otherwise; prints one line per check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState, WorkflowExecutionStatus
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

WORKFLOW_TYPE = "WorkflowdStepRunner"
FAST_RETRY = {"initial_interval_seconds": 0.2, "backoff_coefficient": 1.0}


class Checks:
    def __init__(self) -> None:
        self.failed = 0
        self.passed = 0

    def check(self, case: str, what: str, ok: bool, detail: Any = None) -> None:
        if ok:
            self.passed += 1
            print(f"ok    {case}: {what}")
        else:
            self.failed += 1
            print(f"FAIL  {case}: {what}" + (f" -- got {detail!r}" if detail is not None else ""))


def step(step_id: str, step_type: str, depends_on: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": step_type,
        "config": extra.pop("config", {}),
        "depends_on": depends_on or [],
        "run": extra.pop("run", True),
        "start_to_close_timeout_seconds": 30,
        **extra,
    }


def request(execution_id: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "tenant_id": "acme",
        "environment_id": "prod",
        "definition_id": "acme-onboarding",
        "definition_version": 3,
        "event": {"id": f"ev-{execution_id}", "type": "customer.created",
                  "data": {"customer_id": "c-42", "email": "c42@example.com"}},
        "context": {"attempt": 1, "start_attempt": 1},
        "steps": steps,
    }


async def start(client: Client, args: argparse.Namespace, case: str, steps: list[dict[str, Any]]) -> WorkflowHandle:
    execution_id = f"smoke-{case}-{uuid.uuid4()}"
    return await client.start_workflow(
        WORKFLOW_TYPE,
        request(execution_id, steps),
        id=execution_id,
        task_queue=args.task_queue,
    )


async def history(handle: WorkflowHandle) -> list[Any]:
    return [e async for e in handle.fetch_history_events()]


def scheduled_ids(events: list[Any]) -> list[str]:
    return [e.activity_task_scheduled_event_attributes.activity_id
            for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


def event_index(events: list[Any], event_type: int, activity_id: str) -> int:
    """Index of the event of that type for that activity id (-1 when absent)."""
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_id
                 for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    for i, e in enumerate(events):
        if e.event_type != event_type:
            continue
        if event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            sid = e.activity_task_scheduled_event_attributes.activity_id
        else:
            attrs = {
                EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
                EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
                EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: "activity_task_started_event_attributes",
                EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: "activity_task_cancel_requested_event_attributes",
            }[event_type]
            sid = scheduled.get(getattr(e, attrs).scheduled_event_id)
        if sid == activity_id:
            return i
    return -1


async def case_diamond(client: Client, args: argparse.Namespace, c: Checks) -> None:
    case = "diamond"
    retry3 = {"maximum_attempts": 3, **FAST_RETRY}
    h = await start(client, args, case, [
        step("plan", "assign_plan", config={"plan_id": "pro"}),
        step("wallet", "create_wallet", ["plan"], config={"currency": "EUR", "simulate": {"fail_attempts": 1}},
             retry_policy=retry3),
        step("welcome", "send_email", ["plan"], config={"template": "welcome"}),
        step("credits", "grant_credits", ["wallet", "welcome"], config={"amount": 100}),
    ])
    result = await h.result()
    steps = result.get("steps", {})
    c.check(case, "run succeeded", result.get("status") == "succeeded", result)
    c.check(case, "all four steps completed",
            [steps.get(s, {}).get("status") for s in ("plan", "wallet", "welcome", "credits")] == ["completed"] * 4,
            steps)
    c.check(case, "the last step saw its dependency's result (wallet id)",
            steps.get("credits", {}).get("result", {}).get("wallet_id") == f"wallet-{h.id}", steps.get("credits"))
    events = await history(h)
    S, C = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    c.check(case, "activity ids are the step ids", sorted(scheduled_ids(events)) == ["credits", "plan", "wallet", "welcome"],
            scheduled_ids(events))
    c.check(case, "middle steps start after the first completed",
            event_index(events, C, "plan") < min(event_index(events, S, "wallet"), event_index(events, S, "welcome")))
    c.check(case, "middle steps run in parallel (both scheduled before either completed)",
            max(event_index(events, S, "wallet"), event_index(events, S, "welcome"))
            < min(event_index(events, C, "wallet"), event_index(events, C, "welcome")))
    c.check(case, "last step starts after both middle steps completed",
            event_index(events, S, "credits") > max(event_index(events, C, "wallet"), event_index(events, C, "welcome")))
    started = events[event_index(events, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, "wallet")]
    c.check(case, "fail_attempts 1: the step completed on attempt 2",
            started.activity_task_started_event_attributes.attempt == 2,
            started.activity_task_started_event_attributes.attempt)


async def case_step_fails(client: Client, args: argparse.Namespace, c: Checks) -> None:
    case = "step-fails"
    h = await start(client, args, case, [
        step("mail", "send_email", config={"simulate": {"fail": True}},
             retry_policy={"maximum_attempts": 2, **FAST_RETRY}),
        step("after", "update_customer", ["mail"]),
    ])
    try:
        result = await h.result()
        c.check(case, "run failed", False, result)
        return
    except WorkflowFailureError as err:
        cause = err.cause
    c.check(case, "run failed with ApplicationError type StepFailed, non-retryable",
            isinstance(cause, ApplicationError) and cause.type == "StepFailed" and cause.non_retryable,
            repr(cause))
    c.check(case, "failure message names the step, its type and the cause",
            getattr(cause, "message", "") == "step mail (send_email) failed: simulated failure of step mail",
            getattr(cause, "message", None))
    events = await history(h)
    failed = events[event_index(events, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED, "mail")]
    started = events[event_index(events, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, "mail")]
    c.check(case, "the step failed after 2 attempts",
            started.activity_task_started_event_attributes.attempt == 2
            and failed.activity_task_failed_event_attributes.failure.application_failure_info.type == "SimulatedFailure",
            started.activity_task_started_event_attributes.attempt)
    c.check(case, "the dependent step was never scheduled", scheduled_ids(events) == ["mail"], scheduled_ids(events))
    desc = await h.describe()
    c.check(case, "described status FAILED", desc.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_FAILED,
            desc.status)


async def case_report_failure(client: Client, args: argparse.Namespace, c: Checks) -> None:
    case = "report-failure"
    h = await start(client, args, case, [
        step("plan", "assign_plan", config={"simulate": {"report_failure": "plan pro is sold out"}}),
        step("entitle", "create_entitlement", ["plan"]),
    ])
    result = await h.result()
    c.check(case, "run completed with status failed, failed_step and error",
            result.get("status") == "failed" and result.get("failed_step") == "plan"
            and result.get("error") == "plan pro is sold out", result)
    c.check(case, "the dependent step is reported skipped",
            result.get("steps", {}).get("entitle", {}).get("status") == "skipped", result.get("steps"))
    events = await history(h)
    c.check(case, "the dependent step was never scheduled", scheduled_ids(events) == ["plan"], scheduled_ids(events))
    desc = await h.describe()
    c.check(case, "described status COMPLETED",
            desc.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.status)


async def case_cancel(client: Client, args: argparse.Namespace, c: Checks) -> None:
    case = "cancel"
    h = await start(client, args, case, [
        step("slow", "update_customer", config={"simulate": {"sleep_seconds": 120}}, heartbeat_timeout_seconds=2),
    ])
    # Wait for the positive signal: the activity has started and heartbeated.
    deadline = time.monotonic() + args.timeout
    running = False
    while time.monotonic() < deadline:
        desc = await h.describe()
        pending = desc.raw_description.pending_activities
        if pending and pending[0].state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED \
                and pending[0].HasField("heartbeat_details"):
            running = True
            break
        await asyncio.sleep(0.2)
    c.check(case, "the slow step is running and heartbeating", running)
    await h.cancel()
    try:
        result = await h.result()
        c.check(case, "run cancelled", False, result)
    except WorkflowFailureError as err:
        c.check(case, "run ended cancelled (CancelledError)", isinstance(err.cause, CancelledError), repr(err.cause))
    desc = await h.describe()
    c.check(case, "described status CANCELED",
            desc.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CANCELED, desc.status)
    events = await history(h)
    c.check(case, "the activity's cancellation was requested",
            event_index(events, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED, "slow") >= 0)
    if args.worker_log:
        line = f"step slow of execution {h.id}: cancelled while simulating work"
        seen = False
        while time.monotonic() < deadline and not seen:
            seen = any(line in ln for ln in _tail(args.worker_log))
            if not seen:
                await asyncio.sleep(0.2)
        c.check(case, "the worker's activity saw the cancellation (worker log)", seen)


def _tail(path: str) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()[-400:]
    except OSError:
        return []


async def case_run_false(client: Client, args: argparse.Namespace, c: Checks) -> None:
    case = "run-false"
    h = await start(client, args, case, [
        step("plan", "assign_plan"),
        step("vip", "create_entitlement", ["plan"], run=False, skip_reason="condition event.data.vip == true was false"),
        step("mail", "send_email", ["vip"]),
    ])
    result = await h.result()
    steps = result.get("steps", {})
    c.check(case, "run succeeded", result.get("status") == "succeeded", result)
    c.check(case, "the run:false step is skipped with its reason",
            steps.get("vip") == {"status": "skipped", "reason": "condition event.data.vip == true was false"},
            steps.get("vip"))
    c.check(case, "its dependent ran", steps.get("mail", {}).get("status") == "completed", steps.get("mail"))
    events = await history(h)
    c.check(case, "no activity for the skipped step", sorted(scheduled_ids(events)) == ["mail", "plan"],
            scheduled_ids(events))


async def main_async(args: argparse.Namespace) -> int:
    client = await Client.connect(args.address, namespace=args.namespace)
    c = Checks()
    cases = [case_diamond, case_step_fails, case_report_failure, case_cancel, case_run_false]
    t0 = time.monotonic()
    for case in cases:
        try:
            await asyncio.wait_for(case(client, args, c), timeout=args.timeout)
        except Exception as err:  # noqa: BLE001 - one broken case must not hide the others
            c.check(case.__name__.removeprefix("case_").replace("_", "-"), "ran to the end", False, repr(err))
    print(f"{c.passed} passed, {c.failed} failed ({time.monotonic() - t0:.1f} s)")
    return 0 if c.failed == 0 else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=os.environ.get("WORKFLOWD_TEMPORAL_ADDRESS") or "127.0.0.1:7233")
    p.add_argument("--namespace", default=os.environ.get("WORKFLOWD_TEMPORAL_NAMESPACE") or "default")
    p.add_argument("--task-queue", default=os.environ.get("WORKFLOWD_TEMPORAL_TASK_QUEUE") or "workflowd")
    p.add_argument("--worker-log", default=os.environ.get("WORKFLOWD_TEMPORAL_WORKER_LOG"),
                   help="the worker's log, to check that a cancellation reached the activity")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per case (default 60)")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    code = main()
    # Leave without interpreter finalization, which can abort under the SDK's native threads.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
