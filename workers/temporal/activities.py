"""The step activities: one activity per step type, registered under the step type's name.

THESE ARE STUBS. Each one logs and returns a small dict describing what it would have done.
Replace the body of each function marked "replace this body" with a call to your own service
(keep the signature and the `simulate` line if you want the test knob). To add a step type, write
an `async def` (or a plain `def`: the worker runs those in a thread pool) decorated with
`@activity.defn(name="<step type>")` and add it to ACTIVITIES at the bottom.

Every activity receives one dict, built by the WorkflowdStepRunner workflow:
    {"execution_id": "e-uuid", "tenant_id": "acme", "environment_id": "prod",
     "step": {"id", "type", "name"?, "config": {...}, "depends_on", ...},
     "event": {... the trigger event ...},
     "results": {dep_step_id: result of that step, or null when it was skipped}}
and returns a JSON-serialisable value (a dict by convention). Returning {"ok": false,
"error": "..."} means "completed but failed": the workflow then runs no further step and
completes with status "failed". Raising an exception fails the attempt: the step's retry policy
decides whether another attempt is made; raise ApplicationError(..., non_retryable=True) for an
error that retrying cannot fix. Activities that run long should call activity.heartbeat() now and
then: that is how a cancellation (or a dead worker, with a heartbeat timeout) reaches them.

The test/demo knob `simulate` in a step's config (honoured by every stub here via simulate()):
    {"simulate": {"fail": true}}              fail every attempt (ApplicationError type
                                              "SimulatedFailure", retryable): the step fails
                                              once its retry policy's attempts are used up
    {"simulate": {"fail_attempts": N}}        fail the first N attempts, then succeed
    {"simulate": {"sleep_seconds": S}}        sleep S seconds first, heartbeating every 0.5 s
                                              (a cancellation interrupts the sleep)
    {"simulate": {"report_failure": "msg"}}   succeed but return {"ok": false, "error": "msg"}
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

log = logging.getLogger("workflowd.activities")

SLEEP_SLICE_SECONDS = 0.5


def _config(request: dict[str, Any]) -> dict[str, Any]:
    config = (request.get("step") or {}).get("config")
    return config if isinstance(config, dict) else {}


def _event_data(request: dict[str, Any]) -> dict[str, Any]:
    event = request.get("event")
    if not isinstance(event, dict):
        return {}
    data = event.get("data")
    return data if isinstance(data, dict) else event


async def simulate(request: dict[str, Any]) -> dict[str, Any] | None:
    """Applies the step config's `simulate` knob. Returns the result to hand back instead of the
    activity's own (report_failure), or None to go on with the activity's body."""
    knob = _config(request).get("simulate")
    if not isinstance(knob, dict):
        return None
    step_id = (request.get("step") or {}).get("id")
    where = f"step {step_id} of execution {request.get('execution_id')}"
    info = activity.info()
    sleep_seconds = float(knob.get("sleep_seconds") or 0)
    if sleep_seconds > 0:
        log.info("%s: simulating %.1f s of work (attempt %d)", where, sleep_seconds, info.attempt)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + sleep_seconds
        try:
            while (left := deadline - loop.time()) > 0:
                activity.heartbeat({"remaining_seconds": round(left, 1)})
                await asyncio.sleep(min(SLEEP_SLICE_SECONDS, left))
        except asyncio.CancelledError:
            log.info("%s: cancelled while simulating work (attempt %d)", where, info.attempt)
            raise
    if knob.get("fail"):
        log.info("%s: simulated failure (attempt %d)", where, info.attempt)
        raise ApplicationError(f"simulated failure of step {step_id}", type="SimulatedFailure")
    fail_attempts = int(knob.get("fail_attempts") or 0)
    if info.attempt <= fail_attempts:
        log.info("%s: simulated failure (attempt %d of %d failing)", where, info.attempt, fail_attempts)
        raise ApplicationError(
            f"simulated failure of step {step_id} (attempt {info.attempt} of {fail_attempts} failing)",
            type="SimulatedFailure",
        )
    if "report_failure" in knob:
        message = str(knob.get("report_failure") or "simulated reported failure")
        log.info("%s: reporting a failure: %s", where, message)
        return {"ok": False, "error": message}
    return None


def _describe(request: dict[str, Any], what: str, **fields: Any) -> dict[str, Any]:
    step = request.get("step") or {}
    log.info(
        "step %s (%s) for execution %s, tenant %s/%s: would %s %s",
        step.get("id"),
        step.get("type"),
        request.get("execution_id"),
        request.get("tenant_id"),
        request.get("environment_id"),
        what,
        fields,
    )
    return {"ok": True, "stub": True, **fields}


@activity.defn(name="assign_plan")
async def assign_plan(request: dict[str, Any]) -> dict[str, Any]:
    if (result := await simulate(request)) is not None:
        return result
    # Replace this body: call your billing service to put the customer on the plan.
    config, data = _config(request), _event_data(request)
    return _describe(
        request, "assign plan", plan_id=config.get("plan_id"), customer_id=data.get("customer_id")
    )


@activity.defn(name="create_wallet")
async def create_wallet(request: dict[str, Any]) -> dict[str, Any]:
    if (result := await simulate(request)) is not None:
        return result
    # Replace this body: call your wallet service to open the customer's wallet.
    config, data = _config(request), _event_data(request)
    return _describe(
        request,
        "create wallet",
        wallet_id=f"wallet-{request.get('execution_id')}",
        currency=config.get("currency"),
        customer_id=data.get("customer_id"),
    )


@activity.defn(name="grant_credits")
async def grant_credits(request: dict[str, Any]) -> dict[str, Any]:
    if (result := await simulate(request)) is not None:
        return result
    # Replace this body: call your wallet/billing service to grant the credits.
    # The wallet comes from a create_wallet step this step depends on (results are keyed by
    # step id), or from the step's config.
    config = _config(request)
    wallet_id = config.get("wallet_id")
    for result in (request.get("results") or {}).values():
        if isinstance(result, dict) and result.get("wallet_id"):
            wallet_id = result["wallet_id"]
    return _describe(request, "grant credits", amount=config.get("amount"), wallet_id=wallet_id)


@activity.defn(name="send_email")
async def send_email(request: dict[str, Any]) -> dict[str, Any]:
    if (result := await simulate(request)) is not None:
        return result
    # Replace this body: call your email service with the template and the recipient.
    config, data = _config(request), _event_data(request)
    return _describe(
        request, "send email", template=config.get("template"), to=config.get("to") or data.get("email")
    )


@activity.defn(name="create_entitlement")
async def create_entitlement(request: dict[str, Any]) -> dict[str, Any]:
    if (result := await simulate(request)) is not None:
        return result
    # Replace this body: call your entitlement service to grant the feature.
    config, data = _config(request), _event_data(request)
    return _describe(
        request,
        "create entitlement",
        feature=config.get("feature"),
        customer_id=data.get("customer_id"),
    )


@activity.defn(name="update_customer")
async def update_customer(request: dict[str, Any]) -> dict[str, Any]:
    if (result := await simulate(request)) is not None:
        return result
    # Replace this body: call your customer service to apply the changes.
    config, data = _config(request), _event_data(request)
    return _describe(
        request,
        "update customer",
        customer_id=data.get("customer_id"),
        fields=config.get("fields") or config.get("set"),
    )


# Registered with the worker; each is found by the step type (its activity.defn name).
ACTIVITIES = [
    assign_plan,
    create_wallet,
    grant_credits,
    send_email,
    create_entitlement,
    update_customer,
]
