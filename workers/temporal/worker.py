#!/usr/bin/env python3
"""workflowd's Temporal worker: runs the WorkflowdStepRunner workflow and the step activities.

workflowd starts one WorkflowdStepRunner run per execution (workflow id = execution id) on a task
queue; this worker polls that queue, runs the steps as a DAG and executes each step as the
activity registered under the step's type (activities.py: stubs to replace with your services).

Examples:
  worker.py                                         # 127.0.0.1:7233, namespace default, queue workflowd
  worker.py --address temporal.internal:7233 --namespace billing --task-queue workflowd
  worker.py --address <region>.<cloud>.api.temporal.io:7233 --namespace NS.ACCOUNT \\
            --tls --api-key-file /run/secrets/temporal-api-key        # Temporal Cloud, API key
  worker.py --address NS.ACCOUNT.tmprl.cloud:7233 --namespace NS.ACCOUNT \\
            --tls-cert-file client.pem --tls-key-file client.key      # Temporal Cloud, mTLS

Logs go to stdout with timestamps. SIGTERM or SIGINT stops polling, lets running activities
finish for --graceful-shutdown-seconds, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, TLSConfig
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Worker

from activities import ACTIVITIES
from step_runner import WORKFLOW_TYPE, WorkflowdStepRunner

log = logging.getLogger("workflowd.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="workflowd's Temporal worker: runs the WorkflowdStepRunner workflow and "
        "one activity per step type.",
        epilog="Environment defaults: WORKFLOWD_TEMPORAL_ADDRESS, WORKFLOWD_TEMPORAL_NAMESPACE, "
        "WORKFLOWD_TEMPORAL_TASK_QUEUE.",
    )
    p.add_argument(
        "--address",
        default=env("WORKFLOWD_TEMPORAL_ADDRESS") or "127.0.0.1:7233",
        help="Temporal frontend host:port (default $WORKFLOWD_TEMPORAL_ADDRESS or 127.0.0.1:7233)",
    )
    p.add_argument(
        "--namespace",
        default=env("WORKFLOWD_TEMPORAL_NAMESPACE") or "default",
        help="namespace (default $WORKFLOWD_TEMPORAL_NAMESPACE or 'default')",
    )
    p.add_argument(
        "--task-queue",
        default=env("WORKFLOWD_TEMPORAL_TASK_QUEUE") or "workflowd",
        help="task queue to poll; must match workflowd's provider config (default "
        "$WORKFLOWD_TEMPORAL_TASK_QUEUE or 'workflowd')",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --tls-ca-file)")
    p.add_argument("--tls-ca-file", help="PEM file of the CA that signed the server certificate (implies --tls)")
    p.add_argument("--tls-cert-file", help="PEM client certificate for mTLS (implies --tls; needs --tls-key-file)")
    p.add_argument("--tls-key-file", help="PEM client private key for mTLS")
    p.add_argument("--tls-server-name", help="server name to send (SNI) and verify, when it differs from the address")
    p.add_argument(
        "--api-key-file",
        help="file holding an API key (Temporal Cloud), sent as 'authorization: Bearer <key>'; "
        "use with --tls",
    )
    p.add_argument(
        "--max-concurrent-activities", type=int, default=100, help="activities run at once (default 100)"
    )
    p.add_argument(
        "--max-concurrent-workflow-tasks", type=int, default=100, help="workflow tasks run at once (default 100)"
    )
    p.add_argument(
        "--graceful-shutdown-seconds",
        type=float,
        default=10.0,
        help="on SIGTERM/SIGINT, how long running activities may finish before they are cancelled (default 10)",
    )
    p.add_argument("--identity", help="worker identity shown in Temporal (default <pid>@<host>-workflowd)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        p.error("--tls-cert-file and --tls-key-file go together")
    if args.max_concurrent_activities < 1 or args.max_concurrent_workflow_tasks < 1:
        p.error("--max-concurrent-* must be >= 1")
    return args


def read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise SystemExit(f"worker: cannot read {what} {path}: {err.strerror}") from err


def tls_config(args: argparse.Namespace) -> TLSConfig | bool:
    if not (args.tls or args.tls_ca_file or args.tls_cert_file or args.tls_server_name):
        return False
    return TLSConfig(
        server_root_ca_cert=read_file(args.tls_ca_file, "CA file") if args.tls_ca_file else None,
        domain=args.tls_server_name,
        client_cert=read_file(args.tls_cert_file, "client certificate") if args.tls_cert_file else None,
        client_private_key=read_file(args.tls_key_file, "client key") if args.tls_key_file else None,
    )


def api_key(args: argparse.Namespace) -> str | None:
    if not args.api_key_file:
        return None
    key = read_file(args.api_key_file, "API key file").decode("utf-8", "replace").strip()
    if not key:
        raise SystemExit(f"worker: API key file {args.api_key_file} is empty")
    return key


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    identity = args.identity or f"{os.getpid()}@{socket.gethostname()}-workflowd"
    tls = tls_config(args)
    log.info(
        "connecting to %s namespace %s (tls %s, api key %s)",
        args.address,
        args.namespace,
        "on" if tls else "off",
        "from file" if args.api_key_file else "none",
    )
    # The SDK core's own log lines (for example poll retries while the server is away) go through
    # Python logging too, so that every line has the same format.
    runtime = Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            )
        )
    )
    connect = asyncio.ensure_future(
        Client.connect(
            args.address,
            namespace=args.namespace,
            tls=tls,
            api_key=api_key(args),
            identity=identity,
            runtime=runtime,
        )
    )
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([connect, stopped], return_when=asyncio.FIRST_COMPLETED)
    if not connect.done():
        connect.cancel()
        log.info("stopped before the connection was made")
        return 0
    stopped.cancel()
    try:
        client = connect.result()
    except Exception as err:  # noqa: BLE001 - report any connection error plainly
        log.error("cannot connect to %s: %s", args.address, err)
        return 1

    # Plain `def` activities (blocking code) run in this pool; `async def` ones on the event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.max_concurrent_activities) as pool:
        worker = Worker(
            client,
            task_queue=args.task_queue,
            workflows=[WorkflowdStepRunner],
            activities=ACTIVITIES,
            activity_executor=pool,
            max_concurrent_activities=args.max_concurrent_activities,
            max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
            graceful_shutdown_timeout=timedelta(seconds=args.graceful_shutdown_seconds),
            identity=identity,
        )
        async with worker:
            log.info(
                "polling task queue %s on %s namespace %s: workflow %s, activities %s",
                args.task_queue,
                args.address,
                args.namespace,
                WORKFLOW_TYPE,
                ", ".join(a.__temporal_activity_definition.name for a in ACTIVITIES),  # type: ignore[attr-defined]
            )
            await stop.wait()
            log.info("stopping: no new tasks; waiting up to %.0f s for running activities", args.graceful_shutdown_seconds)
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.Formatter.converter = time.gmtime
    logging.basicConfig(
        stream=sys.stdout,
        level=getattr(logging, args.log_level),
        format="%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    code = main()
    # Leave without interpreter finalization: the SDK's native threads may still be winding down,
    # and finalizing under them can abort the process (PyGILState_Release) after a clean stop.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
