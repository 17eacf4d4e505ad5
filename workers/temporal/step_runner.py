"""The `WorkflowdStepRunner` workflow: runs the steps workflowd sends as a DAG of activities.

Input (one JSON object; see README.md for the whole contract):
    {"execution_id", "tenant_id", "environment_id", "definition_id", "definition_version",
     "event", "context", "steps": [{"id", "type", "name"?, "config", "depends_on", "run",
     "skip_reason"?, "retry_policy"?, "start_to_close_timeout_seconds"?,
     "heartbeat_timeout_seconds"?}]}

Each step that runs is ONE activity of the step's type, with activity id = step id (workflowd maps
history events back to steps by activity id). A step starts once all its `depends_on` steps are
done (completed or skipped); independent steps run in parallel. workflowd evaluates step
conditions itself: a step with `run: false` is skipped here without an activity.

Outcomes:
- every step completed or skipped: the run completes with
  {"status": "succeeded", "steps": {id: {"status": "completed", "result": ...}
                                        | {"status": "skipped", "reason": ...}}};
- a step returned {"ok": false, "error": ...} ("completed but failed"): no further step starts,
  running ones are awaited, and the run completes with
  {"status": "failed", "failed_step": id, "error": ..., "steps": {...}};
- a step failed beyond its retry policy: no further step starts, running ones are awaited, and
  the run FAILS with ApplicationError("step <id> (<type>) failed: <cause>", type="StepFailed");
- the workflow is cancelled: running activities are cancelled and the run ends cancelled.

Workflow code must stay deterministic: no I/O, clocks or randomness here; only the standard
library and the Temporal SDK are imported.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

WORKFLOW_TYPE = "WorkflowdStepRunner"
DEFAULT_START_TO_CLOSE_SECONDS = 300.0


def _seconds(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _invalid(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(f"invalid input: {message}", type="InvalidInput", non_retryable=True)


def _retry_policy(step: dict[str, Any]) -> RetryPolicy:
    policy = step.get("retry_policy")
    if policy is None:
        return RetryPolicy(maximum_attempts=1)
    if not isinstance(policy, dict):
        raise _invalid(f"step {step['id']}: retry_policy must be an object")
    attempts = policy.get("maximum_attempts", 1)
    if isinstance(attempts, float) and attempts.is_integer():
        attempts = int(attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise _invalid(f"step {step['id']}: retry_policy.maximum_attempts must be an integer >= 0")
    initial = _seconds(
        policy.get("initial_interval_seconds"), f"step {step['id']}: retry_policy.initial_interval_seconds"
    ) or 1.0
    maximum = _seconds(
        policy.get("maximum_interval_seconds"), f"step {step['id']}: retry_policy.maximum_interval_seconds"
    )
    backoff = policy.get("backoff_coefficient", 2.0)
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 1:
        raise _invalid(f"step {step['id']}: retry_policy.backoff_coefficient must be >= 1")
    non_retryable = policy.get("non_retryable_error_types") or []
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial),
        backoff_coefficient=float(backoff),
        maximum_interval=timedelta(seconds=maximum) if maximum else None,
        maximum_attempts=attempts,
        non_retryable_error_types=[str(t) for t in non_retryable],
    )


def _validate(steps: Any) -> list[dict[str, Any]]:
    """Checks the steps before anything runs, so that bad input fails the run without side
    effects: ids, types, dependencies (known, no cycle), timeouts and retry policies."""
    if not isinstance(steps, list):
        raise _invalid("steps must be a list")
    ids: set[str] = set()
    for step in steps:
        if not isinstance(step, dict):
            raise _invalid("every step must be an object")
        step_id, step_type = step.get("id"), step.get("type")
        if not isinstance(step_id, str) or not step_id:
            raise _invalid("every step needs a non-empty string id")
        if not isinstance(step_type, str) or not step_type:
            raise _invalid(f"step {step_id} needs a non-empty string type")
        if step_id in ids:
            raise _invalid(f"step id {step_id} appears twice")
        ids.add(step_id)
    for step in steps:
        deps = step.get("depends_on") or []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise _invalid(f"step {step['id']}: depends_on must be a list of step ids")
        for dep in deps:
            if dep not in ids:
                raise _invalid(f"step {step['id']} depends on unknown step {dep}")
        _activity_options(step)
    # Kahn's algorithm: whatever cannot be ordered sits on a cycle.
    left = {s["id"]: set(s.get("depends_on") or []) for s in steps}
    while True:
        free = [i for i, deps in left.items() if not deps]
        if not free:
            break
        for i in free:
            del left[i]
        for deps in left.values():
            deps.difference_update(free)
    if left:
        raise _invalid(f"steps {', '.join(sorted(left))} depend on each other in a cycle")
    return steps


def _activity_options(step: dict[str, Any]) -> dict[str, Any]:
    start_to_close = _seconds(
        step.get("start_to_close_timeout_seconds"), f"step {step['id']}: start_to_close_timeout_seconds"
    )
    heartbeat = _seconds(
        step.get("heartbeat_timeout_seconds"), f"step {step['id']}: heartbeat_timeout_seconds"
    )
    name = step.get("name")
    return {
        "start_to_close_timeout": timedelta(
            seconds=start_to_close or DEFAULT_START_TO_CLOSE_SECONDS
        ),
        "heartbeat_timeout": timedelta(seconds=heartbeat) if heartbeat else None,
        "retry_policy": _retry_policy(step),
        "summary": name if isinstance(name, str) and name else None,
    }


def _cause_message(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) and err.cause is not None else err
    message = getattr(cause, "message", None) or str(cause) or type(cause).__name__
    return message


@workflow.defn(name=WORKFLOW_TYPE)
class WorkflowdStepRunner:
    @workflow.run
    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise _invalid("the workflow input must be a JSON object")
        steps = _validate(request.get("steps"))
        by_id = {s["id"]: s for s in steps}
        outcomes: dict[str, dict[str, Any]] = {}  # step id -> {"status": ..., ...}
        outputs: dict[str, Any] = {}  # step id -> activity result (completed steps)
        pending = [s["id"] for s in steps]  # input order, for deterministic scheduling
        running: dict[str, asyncio.Task[Any]] = {}
        failed: tuple[dict[str, Any], BaseException] | None = None
        reported: tuple[str, str] | None = None  # (step id, error) of {"ok": false}

        try:
            while True:
                if failed is None and reported is None:
                    self._start_ready(request, by_id, pending, running, outcomes, outputs)
                if not running:
                    break
                done, _ = await workflow.wait(
                    list(running.values()), return_when=asyncio.FIRST_COMPLETED
                )
                for step_id in [i for i, t in running.items() if t in done]:
                    task = running.pop(step_id)
                    step = by_id[step_id]
                    try:
                        result = task.result()
                    except ActivityError as err:
                        message = _cause_message(err)
                        outcomes[step_id] = {"status": "failed", "error": message}
                        workflow.logger.warning("step %s (%s) failed: %s", step_id, step["type"], message)
                        if failed is None:
                            failed = (step, err)
                        continue
                    outputs[step_id] = result
                    if isinstance(result, dict) and result.get("ok") is False:
                        error = str(result.get("error") or "step reported a failure")
                        outcomes[step_id] = {"status": "failed", "error": error, "result": result}
                        if reported is None:
                            reported = (step_id, error)
                    else:
                        outcomes[step_id] = {"status": "completed", "result": result}
        except asyncio.CancelledError:
            # The run was cancelled: cancel the activities still running, then end cancelled.
            for task in running.values():
                task.cancel()
            if running:
                await workflow.wait(list(running.values()))
            for task in running.values():
                if not task.cancelled():
                    task.exception()  # retrieved: the activities' cancellation is expected
            raise

        stopped_by = failed[0]["id"] if failed is not None else reported[0] if reported else None
        for step_id in pending:
            outcomes[step_id] = {"status": "skipped", "reason": f"not run: step {stopped_by} failed"}
        ordered = {s["id"]: outcomes[s["id"]] for s in steps if s["id"] in outcomes}

        if failed is not None:
            step, err = failed
            raise ApplicationError(
                f"step {step['id']} ({step['type']}) failed: {_cause_message(err)}",
                {"failed_step": step["id"], "steps": ordered},
                type="StepFailed",
                non_retryable=True,
            ) from err
        if reported is not None:
            return {"status": "failed", "failed_step": reported[0], "error": reported[1], "steps": ordered}
        return {"status": "succeeded", "steps": ordered}

    def _start_ready(
        self,
        request: dict[str, Any],
        by_id: dict[str, dict[str, Any]],
        pending: list[str],
        running: dict[str, asyncio.Task[Any]],
        outcomes: dict[str, dict[str, Any]],
        outputs: dict[str, Any],
    ) -> None:
        """Starts (or skips) every pending step whose dependencies are all done."""
        progressed = True
        while progressed:
            progressed = False
            for step_id in list(pending):
                step = by_id[step_id]
                deps = step.get("depends_on") or []
                if not all(outcomes.get(d, {}).get("status") in ("completed", "skipped") for d in deps):
                    continue
                pending.remove(step_id)
                progressed = True
                if step.get("run", True) is False:
                    reason = step.get("skip_reason") or "condition not met"
                    outcomes[step_id] = {"status": "skipped", "reason": reason}
                    continue
                running[step_id] = asyncio.create_task(
                    self._run_step(request, step, {d: outputs.get(d) for d in deps})
                )

    async def _run_step(
        self, request: dict[str, Any], step: dict[str, Any], results: dict[str, Any]
    ) -> Any:
        return await workflow.execute_activity(
            step["type"],
            {
                "execution_id": request.get("execution_id"),
                "tenant_id": request.get("tenant_id"),
                "environment_id": request.get("environment_id"),
                "step": step,
                "event": request.get("event"),
                "results": results,
            },
            activity_id=step["id"],
            **_activity_options(step),
        )
