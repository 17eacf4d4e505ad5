#!/usr/bin/env python3
"""workflowd benchmark orchestrator (called by bench/run.sh; see docs/benchmarks.md).

Runs against the services started by run.sh (WORKFLOWD_TEST_PG_DSN, WORKFLOWD_TEST_KAFKA_BROKERS,
WORKFLOWD_TEST_PG_ADMIN_DSN, WORKFLOWD_SERVICES_DIR in the environment) and the binaries built by
run.sh. Measures the machine's ceilings (raw librdkafka consume of the same topic, PostgreSQL COPY
into a table shaped like workflow_executions) and the daemon against the targets of issue 6, then
prints one table. Python standard library only; SQL through psql.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

EVENT_TYPES = ["customer.created", "order.placed", "payment.received", "subscription.activated",
               "invoice.paid"]
ENVS = ["prod", "staging"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# helpers


def psql(dsn, sql, admin=False):
    """Runs SQL, returns rows as lists of strings (tab separated, unaligned)."""
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                          "-d", dsn, "-c", sql], check=True, capture_output=True, text=True)
    return [line.split("\t") for line in out.stdout.splitlines() if line != ""]


def psql_value(dsn, sql):
    rows = psql(dsn, sql)
    return rows[0][0] if rows else None


def read_metrics(port, host="127.0.0.1"):
    """Prometheus text -> {name{labels}: value} plus {name: sum over labels}."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        key, _, value = line.rpartition(" ")
        try:
            v = float(value)
        except ValueError:
            continue
        out[key] = v
        name = key.split("{", 1)[0]
        if "{" in key:
            out[name + "#sum"] = out.get(name + "#sum", 0.0) + v
    return out


def metric(m, name):
    return m.get(name, m.get(name + "#sum", 0.0))


def histogram(m, name):
    """Cumulative buckets of a Prometheus histogram as [(le, count)], +Inf last."""
    out = []
    for key, v in m.items():
        if key.startswith(name + "_bucket{") and 'le="' in key:
            le = key.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def histogram_share(buckets):
    """{le: share of observations <= le} as text, for the buckets that hold any."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "none"
    return ", ".join(f"<={le:g}s {c / total:.3f}" for le, c in buckets
                     if le != float("inf") and 0 < c < total) or "all in one bucket"


def proc_status(pid):
    d = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                d[k] = v.strip()
    except FileNotFoundError:
        pass
    return d


def kb(status, key):
    v = status.get(key, "0 kB").split()[0]
    return int(v)


# ------------------------------------------------------------------------------------------------
# CPU accounting: who used the machine during a measured window


class CpuSampler:
    """Samples CPU seconds of the daemon (per thread name), PostgreSQL, Kafka and the machine."""

    def __init__(self, kafka_pid):
        self.kafka_pid = kafka_pid

    @staticmethod
    def _stat_ticks(path):
        try:
            with open(path) as f:
                s = f.read()
        except (FileNotFoundError, ProcessLookupError):
            return None, 0
        comm = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        return comm, int(fields[11]) + int(fields[12])

    def snapshot(self, daemon_pid=None, extra=None):
        snap = {"t": time.monotonic(), "pg": {}, "kafka": 0, "threads": {}, "extra": 0}
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:]
        vals = [int(x) for x in parts]
        snap["machine_busy"] = sum(vals) - vals[3] - vals[4]
        snap["machine_total"] = sum(vals)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            comm, ticks = self._stat_ticks(f"/proc/{pid}/stat")
            if comm == "postgres":
                snap["pg"][pid] = ticks
        if self.kafka_pid:
            snap["kafka"] = self._stat_ticks(f"/proc/{self.kafka_pid}/stat")[1]
        if daemon_pid:
            snap["daemon"] = self._stat_ticks(f"/proc/{daemon_pid}/stat")[1]
            try:
                for tid in os.listdir(f"/proc/{daemon_pid}/task"):
                    comm, ticks = self._stat_ticks(f"/proc/{daemon_pid}/task/{tid}/stat")
                    if comm is None:
                        continue
                    snap["threads"][f"{comm}:{tid}"] = ticks
            except FileNotFoundError:
                pass
        for pid in extra or []:
            snap["extra"] += self._stat_ticks(f"/proc/{pid}/stat")[1]
        return snap

    @staticmethod
    def diff(a, b):
        dt = b["t"] - a["t"]
        if dt <= 0:
            return {}
        pct = lambda ticks: round(100.0 * ticks / CLK_TCK / dt, 1)  # percent of one core
        ncpu = os.cpu_count() or 1
        out = {
            "seconds": round(dt, 2),
            # Per process: a backend that started in the window counts from zero, one that
            # ended in it is lost (short-lived psql sessions); summing totals instead went
            # negative when backends exited.
            "pg": pct(sum(t - a["pg"].get(pid, 0) for pid, t in b["pg"].items())),
            "kafka": pct(b["kafka"] - a["kafka"]),
            "machine_busy": round(100.0 * ncpu * (b["machine_busy"] - a["machine_busy"]) /
                                  max(1, b["machine_total"] - a["machine_total"]), 1),
        }
        if "daemon" in a and "daemon" in b:
            out["daemon"] = pct(b["daemon"] - a["daemon"])
            groups = {}
            for k, v in b["threads"].items():
                if k in a["threads"]:
                    name = k.rsplit(":", 1)[0]
                    groups.setdefault(name, []).append(pct(v - a["threads"][k]))
            out["daemon_threads"] = {k: max(v) for k, v in groups.items() if max(v) >= 1.0}
        if b.get("extra"):
            out["tools"] = pct(b["extra"] - a["extra"])
        out["other"] = round(out["machine_busy"] - out["pg"] - out["kafka"] - out.get("daemon", 0)
                             - out.get("tools", 0), 1)
        return out


# ------------------------------------------------------------------------------------------------
# the daemon


class Daemon:
    def __init__(self, bench, name, topics, dispatch=True, extra=None):
        self.bench = bench
        self.name = name
        self.log_path = os.path.join(bench.work, f"daemon-{name}.log")
        cfg = {
            "instance_id": f"bench-{name}",
            "shutdown_timeout": "20s",
            "kafka": {
                "brokers": bench.brokers,
                "group_id": f"bench-{name}-{int(time.time())}",
                "topics": topics,
                "dlq_topic": "bench.dlq",
                "format": "cloudevents",
            },
            "admin": {"listen": "127.0.0.1:0"},
            "dispatch": {"enabled": dispatch},
            # The benchmark's definitions run on the mock engine, which is off by default.
            "providers": {"mock": {"enabled": True}},
            "log": {"level": "info"},
        }
        for section, values in (extra or {}).items():
            cfg.setdefault(section, {}).update(values)
        self.config = cfg
        self.config_path = os.path.join(bench.work, f"daemon-{name}.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=1)
        self.proc = None
        self.port = None

    def start(self, wrap=None):
        env = dict(os.environ, WORKFLOWD_DATABASE_URL=self.bench.dsn)
        if wrap is None and self.bench.args.perf:
            self.perf_data = os.path.join(self.bench.work, f"perf-{self.name}.data")
            wrap = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "499", "-g", "-o",
                    self.perf_data, "--"]
        cmd = [self.bench.workflowd, "run", "--config", self.config_path]
        if wrap:
            cmd = wrap + cmd
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon {self.name} exited: see {self.log_path}")
            # The admin endpoint opens first thing; the daemon runs once it logs "started"
            # (PostgreSQL reached, definitions loaded, pipeline and loops built).
            with open(self.log_path) as f:
                text = f.read()
            m = re.search(r"admin endpoint listening on [\d.]+:(\d+)", text)
            if m and re.search(r"workflowd \S+ started: ", text):
                self.port = int(m.group(1))
                return self
            time.sleep(0.05)
        raise RuntimeError(f"daemon {self.name} did not start: see {self.log_path}")

    @property
    def pid(self):
        # With a wrapper (perf), the daemon is the wrapper's child.
        if self.proc is None:
            return None
        kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                              text=True).stdout.split()
        base = os.path.basename(self.bench.workflowd)
        for k in kids:
            if proc_status(k).get("Name", "").startswith(base[:15]):
                return int(k)
        return self.proc.pid

    def metrics(self):
        return read_metrics(self.port)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz",
                                            timeout=5) as r:
                    if r.status == 200:
                        return True
            except Exception:
                pass
            time.sleep(0.1)
        return False

    def wait_assigned(self, timeout=60):
        """Until the consumer group assigned partitions (logged by the daemon)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                if "kafka partitions assigned" in f.read():
                    return True
            time.sleep(0.05)
        return False

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            pid = self.pid  # the daemon itself, also when perf wraps it
            os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()


def temporal_requests(operation):
    """Requests of one WorkflowService operation the services' Temporal server answered since it
    started (its own Prometheus metrics; None when they cannot be read)."""
    address = os.environ.get("WORKFLOWD_TEMPORAL_METRICS_ADDRESS")
    if not address:
        return None
    host, _, port = address.rpartition(":")
    try:
        m = read_metrics(port, host)
    except OSError:
        return None
    return int(sum(v for key, v in m.items() if key.startswith("service_requests{") and
                   f'operation="{operation}"' in key and 'service_name="frontend"' in key))


def progress_rate(samples, target):
    """Rate between the 10 % and 90 % marks of `target` (warm-up and tail excluded); falls back
    to first-nonzero..last when the 90 % mark was not reached."""
    def first_at(frac):
        for t, v in samples:
            if v >= frac * target:
                return t, v
        return None

    a, b = first_at(0.10), first_at(0.90)
    if a and b and b[0] > a[0]:
        return (b[1] - a[1]) / (b[0] - a[0]), True
    nz = [(t, v) for t, v in samples if v > 0]
    if len(nz) >= 2 and nz[-1][0] > nz[0][0]:
        return (nz[-1][1] - nz[0][1]) / (nz[-1][0] - nz[0][0]), False
    return 0.0, False


def watch(daemon, value_of, target, timeout, interval=0.1, cpu=None, tools=None):
    """Samples value_of(metrics) until it reaches `target` or `timeout` seconds pass.
    Returns (samples, cpu breakdown over the 10..90 % window or the whole run)."""
    samples = []
    snaps = []
    t0 = time.monotonic()
    marks = {}
    while True:
        now = time.monotonic()
        try:
            v = value_of(daemon.metrics())
        except Exception:
            v = samples[-1][1] if samples else 0
        samples.append((now, v))
        if cpu:
            for frac in (0.10, 0.90):
                if frac not in marks and v >= frac * target:
                    marks[frac] = cpu.snapshot(daemon.pid, tools)
            if not snaps:
                snaps.append(cpu.snapshot(daemon.pid, tools))
        if v >= target or now - t0 > timeout:
            break
        time.sleep(interval)
    breakdown = None
    if cpu:
        if 0.10 in marks and 0.90 in marks:
            breakdown = CpuSampler.diff(marks[0.10], marks[0.90])
        else:
            breakdown = CpuSampler.diff(snaps[0], cpu.snapshot(daemon.pid, tools))
    return samples, breakdown


# ------------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.dsn = os.environ.get("WORKFLOWD_TEST_PG_DSN", "")
        self.admin_dsn = os.environ.get("WORKFLOWD_TEST_PG_ADMIN_DSN", "")
        self.brokers = os.environ.get("WORKFLOWD_TEST_KAFKA_BROKERS", "")
        self.services_dir = os.environ.get("WORKFLOWD_SERVICES_DIR", "")
        self.repo = args.repo
        self.workflowd = args.workflowd
        self.tools = args.tools
        self.work = args.work
        os.makedirs(self.work, exist_ok=True)
        kafka_pid_file = os.environ.get("WORKFLOWD_TEST_KAFKA_PID_FILE")
        kafka_pid = None
        if kafka_pid_file and os.path.exists(kafka_pid_file):
            kafka_pid = open(kafka_pid_file).read().strip()
        self.cpu = CpuSampler(kafka_pid)
        self.results = {"args": vars(args)}
        self.run_id = time.strftime("%H%M%S")

    # --- setup ----------------------------------------------------------------------------------

    def services(self, *cmd):
        env = dict(os.environ, WORKFLOWD_SERVICES_DIR=self.services_dir)
        subprocess.run([os.path.join(self.repo, "scripts/services.sh"), *cmd], check=True,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def topic(self, name, partitions=None):
        self.services("kafka-topic", "create", name, str(partitions or self.args.partitions))
        return name

    def setup_database(self):
        # Commit timestamps let the latency run read when each execution row was committed
        # (pg_xact_commit_timestamp of the inserting transaction). Needs a restart once.
        if psql_value(self.admin_dsn, "SHOW track_commit_timestamp") != "on":
            log("enabling track_commit_timestamp (PostgreSQL restart)")
            psql(self.admin_dsn, "ALTER SYSTEM SET track_commit_timestamp = on")
            self.services("restart-postgres")
        subprocess.run([self.workflowd, "migrate", "--database-url", self.dsn], check=True,
                       capture_output=True)
        settings = psql(self.admin_dsn,
                        "SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers', "
                        "'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size', "
                        "'track_commit_timestamp', 'full_page_writes') ORDER BY 1")
        self.results["postgres_settings"] = {k: v for k, v in settings}

    def definition(self, tenant, env, etype, provider="mock"):
        d = {
            "id": f"b-{tenant}-{env}-{etype.replace('.', '-')}",
            "tenant_id": tenant,
            "environment_id": env,
            "name": f"Bench {etype}",
            "description": "benchmark definition",
            "trigger": {"type": "event", "event_name": etype},
            "steps": [
                {"id": "assign_plan", "order": 1, "type": "assign_plan", "config": {}},
                {"id": "create_wallet", "order": 2, "type": "create_wallet", "config": {},
                 "depends_on": ["assign_plan"]},
                {"id": "send_email", "order": 3, "type": "send_email", "config": {},
                 "depends_on": ["create_wallet"]},
            ],
            "enabled": True,
            "timeout_seconds": 600,
            "provider": "mock",
            "provider_config": {"mock": {"outcome": "succeed"}},
        }
        if provider == "temporal":
            d["id"] = f"t-{tenant}-{env}-{etype.replace('.', '-')}"
            d["provider"] = "temporal"
            d["provider_config"] = {"temporal": {"task_queue": self.temporal_queue()}}
        if etype == "customer.created":
            d["trigger"]["conditions"] = [
                {"field": "data.customer.country", "op": "eq", "value": "US"},
                {"field": "data.customer.tier", "op": "in", "value": ["gold", "silver"]}]
        elif etype == "order.placed":
            d["trigger"]["conditions"] = [{"field": "data.amount", "op": "gt", "value": 100}]
        elif etype == "invoice.paid":
            d["trigger"]["conditions"] = [
                {"field": "data.customer.email", "op": "regex", "value": r"^[^@]+@example\.com$"}]
        return d

    def apply_definitions(self, tenants, provider="mock"):
        path = os.path.join(self.work, f"defs-{tenants[0]}-{len(tenants)}.json")
        defs = [self.definition(f"bt{t:04d}", env, et, provider) for t in tenants for env in ENVS
                for et in EVENT_TYPES]
        with open(path, "w") as f:
            json.dump({"definitions": defs}, f)
        # Checked against the providers the benchmark's daemons enable (the mock engine).
        env = dict(os.environ, WORKFLOWD_DATABASE_URL=self.dsn,
                   WORKFLOWD_PROVIDERS_MOCK_ENABLED="true")
        if provider == "temporal":
            env["WORKFLOWD_PROVIDERS_TEMPORAL_ADDRESS"] = os.environ["WORKFLOWD_TEMPORAL_ADDRESS"]
        t0 = time.monotonic()
        subprocess.run([self.workflowd, "definitions", "apply", path, "--actor", "bench"],
                       check=True, capture_output=True, env=env)
        return len(defs), time.monotonic() - t0

    def clone_definitions(self, first_tenant, last_tenant):
        """Bulk-inserts definitions for tenants first..last (inclusive) in the exact shape
        `definitions apply` stored for tenant bt0000 (same columns, same version documents), in
        one INSERT ... SELECT per table: `definitions apply` does three round trips per
        definition, far too slow for 100,000."""
        tid = "'bt' || lpad(g::text, 4, '0')"
        new_id = f"replace(d.id, 'bt0000', {tid})"
        t0 = time.monotonic()
        psql(self.dsn, f"""
BEGIN;
INSERT INTO workflow_definitions (id, tenant_id, environment_id, name, description, trigger_type,
    event_name, trigger, steps, enabled, retry_policy, timeout_seconds, provider, provider_config,
    version, status, created_by, updated_by)
SELECT {new_id}, {tid}, d.environment_id, d.name, d.description, d.trigger_type, d.event_name,
    d.trigger, d.steps, d.enabled, d.retry_policy, d.timeout_seconds, d.provider,
    d.provider_config, d.version, d.status, d.created_by, d.updated_by
FROM workflow_definitions d CROSS JOIN generate_series({first_tenant}, {last_tenant}) g
WHERE d.tenant_id = 'bt0000';
INSERT INTO workflow_definition_versions (definition_id, version, tenant_id, environment_id,
    document, created_by)
SELECT {new_id}, v.version, {tid}, v.environment_id,
    jsonb_set(jsonb_set(v.document, '{{id}}', to_jsonb({new_id})), '{{tenant_id}}',
              to_jsonb({tid})),
    v.created_by
FROM workflow_definition_versions v JOIN workflow_definitions d ON d.id = v.definition_id
CROSS JOIN generate_series({first_tenant}, {last_tenant}) g
WHERE d.tenant_id = 'bt0000';
COMMIT;""")
        return time.monotonic() - t0

    def definition_count(self):
        return int(psql_value(self.dsn, "SELECT count(*) FROM workflow_definitions WHERE "
                                        "enabled AND status = 'published'"))

    def truncate_executions(self):
        # No ANALYZE of the empty table: statistics saying "0 rows" would steer the dispatcher's
        # queries to plans that are disastrous once the run has filled the table; after TRUNCATE
        # the planner uses the table's real size until autovacuum analyzes it.
        psql(self.dsn, "TRUNCATE workflow_executions, execution_steps, execution_history_chunks")

    def produce(self, topic, count, match, rate=0, prefix=None, linger=20, tenants=None):
        cmd = [os.path.join(self.tools, "producer"), "produce", "--brokers", self.brokers,
               "--topic", topic, "--count", str(count), "--match", str(match),
               "--tenants", str(tenants or self.args.tenants), "--envs", "2",
               "--id-prefix", prefix or topic, "--linger-ms", str(linger)]
        if rate:
            cmd += ["--rate", str(rate)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # --- phases ---------------------------------------------------------------------------------

    def phase_produce_backlogs(self):
        n = self.args.events
        self.topics = {}
        for pct in (0, 20, 100):
            t = self.topic(f"bench.m{pct}.{self.run_id}")
            log(f"producing {n} events at {pct}% match to {t}")
            r = self.produce(t, n, pct)
            self.topics[pct] = t
            self.results[f"produce_m{pct}"] = r

    def phase_raw_consume(self):
        n = self.args.events
        best = None
        runs = []
        for i in range(self.args.repeat):
            before = self.cpu.snapshot()
            out = subprocess.run([os.path.join(self.tools, "raw_consumer"), "--brokers",
                                  self.brokers, "--topic", self.topics[0], "--group",
                                  f"bench-raw-{self.run_id}-{i}", "--count", str(n)],
                                 check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip())
            r["cpu"] = CpuSampler.diff(before, self.cpu.snapshot())
            runs.append(r)
            if best is None or r["rate_10_90"] > best["rate_10_90"]:
                best = r
        log(f"raw consume: {best['rate_10_90']:.0f} records/s (runs: "
            f"{[round(r['rate_10_90']) for r in runs]})")
        self.results["raw_consume"] = {"best": best, "runs": runs}

    def phase_copy(self):
        n = self.args.copy_rows
        path = os.path.join(self.work, "copy-rows.tsv")
        subprocess.run([os.path.join(self.tools, "producer"), "copyfile", "--out", path,
                        "--count", str(n), "--tenants", str(self.args.tenants)], check=True)
        cols = ("id, tenant_id, environment_id, workflow_id, workflow_name, definition_version, "
                "provider, trigger_type, trigger_event_id, trigger_event, status, next_attempt_at")
        psql(self.dsn, "DROP TABLE IF EXISTS bench_copy_target; CREATE TABLE bench_copy_target "
                       "(LIKE workflow_executions INCLUDING ALL)")
        runs = []
        for i in range(self.args.repeat):
            psql(self.dsn, "TRUNCATE bench_copy_target")
            before = self.cpu.snapshot()
            t0 = time.monotonic()
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn, "-c",
                            f"\\copy bench_copy_target ({cols}) FROM '{path}'"], check=True)
            dt = time.monotonic() - t0
            runs.append({"rows": n, "seconds": round(dt, 3), "rate": n / dt,
                         "cpu": CpuSampler.diff(before, self.cpu.snapshot())})
        best = max(runs, key=lambda r: r["rate"])
        # For comparison: COPY into workflow_executions itself (all its indexes, the column defaults
        # the daemon relies on), rolled back by a TRUNCATE.
        self.truncate_executions()
        t0 = time.monotonic()
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn, "-c",
                        f"\\copy workflow_executions ({cols}) FROM '{path}'"], check=True)
        real = n / (time.monotonic() - t0)
        self.truncate_executions()
        # And in transactions of 500 rows (the daemon's kafka.batch_size), one COPY each: what a
        # per-batch transaction costs on top of the rows themselves.
        script = os.path.join(self.work, "copy-batches.sql")
        with open(path) as src, open(script, "w") as out:
            lines = src.readlines()
            for i in range(0, len(lines), 500):
                out.write(f"BEGIN;\nCOPY workflow_executions ({cols}) FROM STDIN;\n")
                out.writelines(lines[i:i + 500])
                out.write("\\.\nCOMMIT;\n")
        t0 = time.monotonic()
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn, "-f", script],
                       check=True, stdout=subprocess.DEVNULL)
        batched = n / (time.monotonic() - t0)
        os.unlink(script)
        self.truncate_executions()
        size = os.path.getsize(path)
        psql(self.dsn, "DROP TABLE bench_copy_target")
        os.unlink(path)
        log(f"COPY: {best['rate']:.0f} rows/s (runs: {[round(r['rate']) for r in runs]}); into "
            f"workflow_executions itself: {real:.0f} rows/s, in "
            f"500-row transactions: {batched:.0f} rows/s")
        self.results["copy"] = {"best": best, "runs": runs, "file_bytes": size,
                               "real_table_rate": real, "real_table_batched_rate": batched}

    def ingest(self, name, topic, n, value_of, dispatch=False, extra=None, wrap=None):
        self.truncate_executions()
        d = Daemon(self, name, [topic], dispatch=dispatch, extra=extra).start(wrap=wrap)
        try:
            samples, cpu = watch(d, value_of, n, timeout=self.args.phase_timeout, cpu=self.cpu)
            rate, complete = progress_rate(samples, n)
            m = d.metrics()
            st = proc_status(d.pid)
            res = {"rate": rate, "complete": complete, "final": samples[-1][1], "target": n,
                   "cpu": cpu, "vm_hwm_kb": kb(st, "VmHWM"), "vm_rss_kb": kb(st, "VmRSS"),
                   "batch_count": metric(m, "workflowd_batch_duration_seconds_count"),
                   "batch_seconds_sum": metric(m, "workflowd_batch_duration_seconds_sum"),
                   "batch_records_sum": metric(m, "workflowd_batch_records_sum")}
        finally:
            d.stop()
        return res

    def phase_ingest(self):
        n = self.args.events
        handled = lambda m: metric(m, "workflowd_events_matched_total") + metric(
            m, "workflowd_events_unmatched_total")
        # Best of --repeat runs (each a fresh daemon and consumer group over the same backlog),
        # like the ceilings they are compared with: one run against the best of two would put
        # the machine's moment-to-moment noise on one side of the ratio only.
        def best_of(pct, value_of, unit):
            runs = []
            for i in range(max(1, self.args.repeat)):
                name = f"m{pct}" if i == 0 else f"m{pct}-{i + 1}"
                r = self.ingest(name, self.topics[pct], n, value_of)
                log(f"ingest {pct}% match, run {i + 1}: {r['rate']:.0f} {unit}  cpu={r['cpu']}")
                runs.append(r)
            best = max(runs, key=lambda r: r["rate"])
            best["runs"] = [round(r["rate"]) for r in runs]
            self.results[f"ingest_m{pct}"] = best

        for pct in (0, 20):
            best_of(pct, handled, "events/s")
        # 100 % match: one execution per event
        best_of(100, lambda m: metric(m, "workflowd_executions_created_total"), "rows/s")

    def phase_lifecycle(self):
        n = self.args.lifecycle_events
        topic = self.topic(f"bench.life.{self.run_id}")
        log(f"producing {n} events at 100% match to {topic}")
        self.produce(topic, n, 100)
        succeeded = lambda m: m.get(
            'workflowd_execution_transitions_total{provider="mock",state="succeeded"}', 0.0)
        r = self.ingest("lifecycle", topic, n, succeeded, dispatch=True,
                        extra=self.lifecycle_config())
        # Cross-check in PostgreSQL: event -> succeeded, both ends in the database's clock.
        # updated_at: when the poller recorded the terminal state (completed_at is the
        # provider's own stop time).
        rows = psql(self.dsn, "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*), "
                              "extract(epoch FROM max(updated_at) - min(created_at)) FROM "
                              "workflow_executions")
        ok, total, span = int(rows[0][0]), int(rows[0][1]), float(rows[0][2] or 0)
        r.update({"succeeded_rows": ok, "rows": total, "db_span_s": span,
                  "db_rate": ok / span if span > 0 else 0})
        log(f"lifecycle: {r['rate']:.0f} executions/s (10-90 %), db: {ok}/{total} succeeded in "
            f"{span:.1f}s  cpu={r['cpu']}")
        self.results["lifecycle"] = r

    def phase_engine(self):
        """Starts per second against a slow engine: every mock call takes --engine-latency-ms, and
        the mock provider has --engine-slots calls in flight. Target: 0.8 x slots / latency, with
        PostgreSQL below half a core."""
        n = self.args.engine_events
        lat, slots = self.args.engine_latency_ms, self.args.engine_slots
        topic = self.topic(f"bench.engine.{self.run_id}")
        log(f"producing {n} events at 100% match to {topic} (engine latency {lat} ms, "
            f"{slots} calls in flight)")
        self.produce(topic, n, 100)
        extra = self.lifecycle_config()
        mock = {"enabled": True, "latency": {"distribution": "fixed", "base": f"{lat}ms"}}
        mock.update(self.engine_slots_config(slots))
        extra.setdefault("providers", {})["mock"] = mock
        extra.setdefault("dispatch", {}).setdefault("max_in_flight", slots)
        started = lambda m: metric(m, 'workflowd_dispatch_attempts_total{result="started"}')
        r = self.ingest("engine", topic, n, started, dispatch=True, extra=extra)
        r.update({"latency_ms": lat, "slots": slots, "goal": 0.8 * slots * 1000.0 / lat})
        log(f"engine: {r['rate']:.0f} starts/s (10-90 %) at {lat} ms x {slots} in flight "
            f"(goal {r['goal']:.0f})  cpu={r['cpu']}")
        self.results["engine"] = r

    def temporal_queue(self):
        """A task queue no worker polls: the runs stay open, only their starts are measured."""
        return f"bench-idle-{self.run_id}"

    def phase_temporal(self):
        """Workflow starts per second through workflowd against the local Temporal dev server
        (scripts/services.sh), and in the same run the official Python SDK's client starting the
        same workflow type with the same kind of input at the same concurrency. Target: workflowd
        at least 1.0 x the SDK client."""
        n, conc = self.args.temporal_starts, self.args.temporal_concurrency
        address = os.environ["WORKFLOWD_TEMPORAL_ADDRESS"]
        venv_python = os.path.join(os.environ.get("WORKFLOWD_TEMPORAL_CACHE",
                                                  os.path.join(self.repo, ".cache", "temporal")),
                                   "venv", "bin", "python")
        first = 9000
        self.apply_definitions(list(range(first, first + 10)), provider="temporal")
        extra = self.lifecycle_config()
        extra.setdefault("providers", {})["temporal"] = {"address": address,
                                                        "max_in_flight": conc}
        if self.args.temporal_poll_min_interval:
            extra["providers"]["temporal"]["poll_min_interval"] = \
                self.args.temporal_poll_min_interval
        started = lambda m: metric(m, 'workflowd_dispatch_attempts_total{result="started"}')
        # Rounds of one SDK run and one workflowd run, in turns first, each on an empty dev server
        # (SQLite, about one core; it slows as its database fills); best of each.
        sdks, runs = [], []

        def sdk_run(i):
            before = self.cpu.snapshot()
            out = subprocess.run(
                [venv_python, os.path.join(self.repo, "bench", "temporal_sdk_starts.py"),
                 "--address", address, "--task-queue", self.temporal_queue(), "--count", str(n),
                 "--concurrency", str(conc), "--id-prefix", f"sdk-{self.run_id}-{i}"],
                check=True, capture_output=True, text=True)
            sdk = json.loads(out.stdout.strip().splitlines()[-1])
            sdk["cpu"] = CpuSampler.diff(before, self.cpu.snapshot())
            sdks.append(sdk)
            log(f"temporal round {i + 1}: SDK client {sdk['rate']:.0f} starts/s (10-90 %) at "
                f"{conc} in flight")

        def workflowd_run(i):
            # As many events, of 10 tenants whose definitions run on Temporal.
            topic = self.topic(f"bench.temporal.{self.run_id}.{i}")
            subprocess.run([os.path.join(self.tools, "producer"), "produce", "--brokers",
                            self.brokers, "--topic", topic, "--count", str(n), "--match", "100",
                            "--tenants", "10", "--tenant-offset", str(first), "--envs", "2",
                            "--id-prefix", topic, "--linger-ms", "20"],
                           check=True, capture_output=True, text=True)
            # Each round measures a burst of starts from the same state: the earlier rounds'
            # executions are set aside (cancelled in PostgreSQL, their runs left on the server
            # like the SDK client's), or this round's daemon would also follow their runs.
            psql(self.dsn, "UPDATE workflow_executions SET status = 'cancelled', completed_at = "
                           "now(), next_poll_at = NULL WHERE provider = 'temporal' AND status IN "
                           "('pending', 'running')")
            r = self.ingest(f"temporal-{i + 1}", topic, n, started, dispatch=True, extra=extra)
            # The status reads the server answered in this run (it was reset before it).
            r["describes"] = temporal_requests("DescribeWorkflowExecution")
            runs.append(r)
            log(f"temporal round {i + 1}: workflowd {r['rate']:.0f} starts/s (10-90 %), "
                f"{r['describes']} status reads")

        for i in range(max(2, self.args.repeat)):
            for side in ((sdk_run, workflowd_run) if i % 2 == 0 else (workflowd_run, sdk_run)):
                # Each run on an empty server: the dev server slows as its database fills.
                subprocess.run([os.path.join(self.repo, "scripts", "services.sh"),
                                "reset-temporal"], check=True, capture_output=True)
                side(i)
        sdk = max(sdks, key=lambda x: x["rate"])
        r = max(runs, key=lambda x: x["rate"])
        r.update({"concurrency": conc, "sdk": sdk,
                  "runs": [round(x["rate"]) for x in runs],
                  "sdk_runs": [round(x["rate"]) for x in sdks],
                  "ratio": r["rate"] / sdk["rate"] if sdk["rate"] > 0 else 0})
        log(f"temporal: workflowd {r['rate']:.0f} starts/s (10-90 %) at {conc} in flight, "
            f"{r['ratio']:.2f} x the SDK client  cpu={r['cpu']}")
        self.results["temporal"] = r

    @staticmethod
    def engine_slots_config(slots):
        """The mock provider's own calls-in-flight limit."""
        return {"max_in_flight": slots}

    def lifecycle_config(self):
        extra = {}
        for kv in self.args.daemon_set or []:
            key, _, value = kv.partition("=")
            section, _, k = key.partition(".")
            v = value
            if value.isdigit():
                v = int(value)
            extra.setdefault(section, {})[k] = v
        return extra

    def phase_steady(self):
        self.results["steady"] = []
        if self.args.steady_broker_warmup > 0:
            self.warm_up_broker(self.args.steady_broker_warmup)
        for pct in self.args.steady_match:
            self.results["steady"].append(self.steady_run(pct))

    def quiesce(self, limit_s=60.0, busy_below=25.0):
        """Lets the machine settle before a latency run: flushes dirty pages (the earlier phases
        wrote gigabytes to Kafka's log and PostgreSQL), checkpoints PostgreSQL, then waits until
        the machine is mostly idle (autovacuum of the earlier phases' tables, the kernel's
        write-back) for a whole second, at most `limit_s`. Returns (seconds waited, last busy %)."""
        t0 = time.monotonic()
        subprocess.run(["sync"], check=False)
        psql(self.admin_dsn, "CHECKPOINT")
        busy = 100.0 * (os.cpu_count() or 1)
        while time.monotonic() - t0 < limit_s:
            a = self.cpu.snapshot()
            time.sleep(1.0)
            busy = CpuSampler.diff(a, self.cpu.snapshot()).get("machine_busy", 0.0)
            if busy < busy_below:
                break
        return round(time.monotonic() - t0, 1), busy

    def warm_up_broker(self, secs):
        """Runs the steady stream's traffic (small produce requests every few milliseconds, a
        caught-up consumer's fetches) through the broker for `secs` before the latency runs, not
        measured. A broker started minutes ago has compiled the bulk paths of the earlier phases
        but not these: in this machine's runs a fresh broker took 85-95 % of a core for the
        first ~15 s of a steady run (p99 several hundred ms), then 30-40 %, as a long-running
        broker does from the start."""
        topic = self.topic(f"bench.steadywarm.{self.run_id}")
        rate = self.args.steady_rate
        d = Daemon(self, "steadywarm", [topic], dispatch=True, extra=self.lifecycle_config()).start()
        try:
            d.wait_assigned()
            k0 = self.cpu.snapshot()
            self.produce(topic, int(rate * secs), 20, rate=rate, linger=5)
            k = CpuSampler.diff(k0, self.cpu.snapshot())
        finally:
            d.stop()
        self.truncate_executions()
        log(f"steady: broker warmed up with {secs:g}s of the steady stream (kafka "
            f"{k.get('kafka', 0):.0f}% of one core meanwhile)")
        self.results["steady_broker_warmup"] = {"seconds": secs, "cpu": k}

    def steady_run(self, pct):
        rate, secs = self.args.steady_rate, self.args.steady_seconds
        n = int(rate * secs)
        topic = self.topic(f"bench.steady{int(pct)}.{self.run_id}")
        self.truncate_executions()
        waited, busy = self.quiesce()
        log(f"steady: machine settled after {waited}s (busy {busy:.0f}% of one core)")
        # Bench-only column: remembers the inserting transaction of every execution row so its
        # commit time can be read (pg_xact_commit_timestamp; track_commit_timestamp is on). A
        # column default costs a function call per row; the statement trigger with a transition
        # table used before cost ~40 us per COPY (~10 % of a 9-row COPY at this rate), load the
        # measurement added to what it measured. The table is empty here (truncated above), so
        # adding a column with a volatile default rewrites nothing; it is dropped afterwards
        # (a dropped column stays in the catalog as a placeholder until the table is rebuilt).
        psql(self.dsn, """
ALTER TABLE workflow_executions DROP COLUMN IF EXISTS bench_xid;
ALTER TABLE workflow_executions ADD COLUMN bench_xid bigint DEFAULT txid_current();
""")
        d = Daemon(self, f"steady{int(pct)}", [topic], dispatch=True,
                   extra=self.lifecycle_config()).start()
        try:
            d.wait_assigned()
            time.sleep(1.0)
            before = self.cpu.snapshot(d.pid)
            log(f"steady: producing {rate}/s for {secs}s at {pct}% match")
            # linger.ms 5 (librdkafka's default, what a producing service typically runs with; it
            # is part of the measured latency): with 1 ms the broker served ~5,000 produce
            # requests/s and took 60-90 % of a core of this two-core machine during the run.
            # CPU per second of the run, next to the latency timeline below.
            cpu_seconds, stop = [], threading.Event()

            def sample():
                a = self.cpu.snapshot(d.pid)
                while not stop.wait(1.0):
                    b = self.cpu.snapshot(d.pid)
                    c = CpuSampler.diff(a, b)
                    cpu_seconds.append([c.get("machine_busy", 0), c.get("pg", 0),
                                        c.get("kafka", 0), c.get("daemon", 0)])
                    a = b

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                prod = self.produce(topic, n, pct, rate=rate, linger=5)
            finally:
                stop.set()
                sampler.join()
            cpu = CpuSampler.diff(before, self.cpu.snapshot(d.pid))
            log("steady cpu per second (machine busy, pg, kafka, daemon; % of one core): " +
                ", ".join(f"{i}: {c[0]:.0f} {c[1]:.0f} {c[2]:.0f} {c[3]:.0f}"
                          for i, c in enumerate(cpu_seconds)))
            # Give the daemon a bounded time to catch up: handled everything, started every row.
            deadline = time.monotonic() + self.args.steady_drain
            while time.monotonic() < deadline:
                m = d.metrics()
                handled = metric(m, "workflowd_events_matched_total") + metric(
                    m, "workflowd_events_unmatched_total")
                pending = int(psql_value(self.dsn, "SELECT count(*) FROM workflow_executions "
                                                   "WHERE started_at IS NULL"))
                if handled >= n and pending == 0:
                    break
                time.sleep(0.25)
            m = d.metrics()
            handled = metric(m, "workflowd_events_matched_total") + metric(
                m, "workflowd_events_unmatched_total")
            # Where the time goes: the broker's share (record timestamp -> poll) and the
            # pipeline's (poll -> committed), as the daemon's own histograms saw it.
            age = histogram_share(histogram(m, "workflowd_event_age_at_poll_seconds"))
            batch = histogram_share(histogram(m, "workflowd_batch_duration_seconds"))
            start = histogram_share(histogram(m, "workflowd_execution_start_latency_seconds"))
            rounds = {k: int(metric(m, f'workflowd_dispatch_rounds_total{{kind="{k}"}}'))
                      for k in ("fair", "offered")}
            log(f"steady {pct}%: event age at poll: {age}; batch duration: {batch}; "
                f"row created -> started: {start}; dispatch rounds: {rounds}")
        finally:
            d.stop()
        # Rows not committed / not started when the drain time ran out count with the time of this
        # query (a lower bound), so a daemon that falls behind cannot look good by omission.
        # The first `--steady-warmup` seconds of events are left out of the latency figures (a new
        # topic, the producer's first connection and metadata, the broker's first appends: in
        # this machine's runs the first 1.5 s showed 150-450 ms whatever the daemon did); the
        # whole run's figures are kept next to them ("all").
        produced = "((e.trigger_event->'data'->>'produced_at_ns')::numeric / 1e6)"
        warm = (f"{produced} >= (SELECT min((trigger_event->'data'->>'produced_at_ns')::numeric)"
                f" / 1e6 FROM workflow_executions) + {self.args.steady_warmup * 1000}")
        q = lambda expr, where="true": psql(self.dsn, f"""
SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms)
FROM (SELECT {expr} AS ms FROM workflow_executions e
      WHERE {where}) s""")[0]
        commit_ms = ("extract(epoch FROM pg_xact_commit_timestamp("
                     f"(e.bench_xid % 4294967296)::text::xid)) * 1000 - {produced}")
        started_ms = (f"extract(epoch FROM coalesce(e.started_at, clock_timestamp())) * 1000 - "
                      f"{produced}")
        commit = q(commit_ms, warm)
        created = q(f"extract(epoch FROM e.created_at) * 1000 - {produced}", warm)
        started = q(started_ms, warm)
        commit_all = q(commit_ms)
        started_all = q(started_ms)
        not_started = int(psql_value(self.dsn, "SELECT count(*) FROM workflow_executions WHERE "
                                               "started_at IS NULL"))
        # Per second of production: rows, p99 commit latency, p99 start latency. Shows whether a
        # tail is spread over the run or sits in a few seconds (a stall somewhere).
        timeline = [[int(r[0]), int(r[1]), round(float(r[2] or 0), 1), round(float(r[3] or 0), 1)]
                    for r in psql(self.dsn, f"""
SELECT s, count(*), percentile_cont(0.99) WITHIN GROUP (ORDER BY c),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY st)
FROM (SELECT floor(({produced} - (SELECT min((trigger_event->'data'->>'produced_at_ns')::numeric)
                    / 1e6 FROM workflow_executions)) / 1000) AS s, {commit_ms} AS c,
             {started_ms} AS st
      FROM workflow_executions e) t
GROUP BY s ORDER BY s""")]
        log("steady timeline (second: rows, p99 commit ms, p99 start ms): " +
            ", ".join(f"{t[0]}: {t[1]} {t[2]:.0f} {t[3]:.0f}" for t in timeline))
        psql(self.dsn, "ALTER TABLE workflow_executions DROP COLUMN bench_xid")
        conv = lambda r: {"n": int(r[0]), "p50_ms": float(r[1] or 0), "p99_ms": float(r[2] or 0),
                          "max_ms": float(r[3] or 0)}
        res = {"rate": rate, "seconds": secs, "match": pct, "producer": prod, "cpu": cpu,
               "events": n, "handled": handled, "not_started": not_started,
               "warmup_s": self.args.steady_warmup, "commit": conv(commit),
               "created": conv(created), "started": conv(started),
               "commit_all": conv(commit_all), "started_all": conv(started_all),
               "timeline": timeline, "age_at_poll": age, "batch_duration": batch,
               "cpu_per_second": cpu_seconds, "settled_after_s": waited}
        log(f"steady {pct}%: commit {res['commit']}, started {res['started']}, "
            f"not started {not_started}, handled {handled:.0f}/{n}")
        return res

    def phase_large(self):
        large = self.args.large_definitions
        tenants_needed = (large + 9) // 10
        handled = lambda m: metric(m, "workflowd_events_matched_total") + metric(
            m, "workflowd_events_unmatched_total")
        # The 20 % ingest with the base definitions once more, right before the large set is
        # loaded: the end-to-end matching ratio compares two runs a minute apart, not runs several
        # minutes apart on a machine whose speed drifts (this row is mostly PostgreSQL's COPY).
        base_defs = self.definition_count()
        base = self.ingest("m20base", self.topics[20], self.args.events, handled)
        log(f"large: the 20% ingest with {base_defs} definitions again: {base['rate']:.0f} events/s")
        have = self.definition_count()
        # Measure `definitions apply` on a chunk first (documents the apply rate).
        chunk = list(range(self.args.tenants, min(tenants_needed, self.args.tenants + 100)))
        applied, secs = self.apply_definitions(chunk) if chunk else (0, 0)
        log(f"definitions apply: {applied} definitions in {secs:.1f}s "
            f"({applied / secs if secs else 0:.0f}/s)")
        first = self.args.tenants + len(chunk)
        clone_s = 0.0
        if first < tenants_needed:
            clone_s = self.clone_definitions(first, tenants_needed - 1)
        total = self.definition_count()
        log(f"definitions: {have} -> {total} (bulk insert of {total - have - applied} in "
            f"{clone_s:.1f}s)")
        psql(self.dsn, "VACUUM ANALYZE workflow_definitions")
        psql(self.dsn, "VACUUM ANALYZE workflow_definition_versions")
        self.results["definitions_large"] = {"apply_count": applied, "apply_seconds": secs,
                                             "bulk_seconds": clone_s, "total": total}
        # The daemon with 100k definitions: RSS after loading, then the 20 % ingest again.
        self.truncate_executions()
        n = self.args.events
        # Dispatch off, like the 20 % run it is compared with (and the mock provider, which keeps
        # every execution in memory, does not inflate the RSS).
        d = Daemon(self, "large", [self.topics[20]], dispatch=False).start()
        try:
            m = d.metrics()
            loaded = metric(m, "workflowd_definitions_loaded")
            load_line = re.search(r"matching index loaded: (\d+) definitions \(startup, (\d+) ms\)",
                                  d.log_text())
            st = proc_status(d.pid)
            after_load = {"loaded": loaded, "vm_hwm_kb": kb(st, "VmHWM"),
                          "vm_rss_kb": kb(st, "VmRSS"),
                          "load_ms": int(load_line.group(2)) if load_line else None}
            log(f"large: {after_load}")
            samples, cpu = watch(d, handled, n, timeout=self.args.phase_timeout, cpu=self.cpu)
            rate, complete = progress_rate(samples, n)
            st = proc_status(d.pid)
            end = {"vm_hwm_kb": kb(st, "VmHWM"), "vm_rss_kb": kb(st, "VmRSS")}
        finally:
            d.stop()
        self.results["large"] = {"after_load": after_load, "ingest_m20_rate": rate,
                                 "base_ingest_m20_rate": base["rate"], "base_cpu": base["cpu"],
                                 "base_definitions": base_defs,
                                 "complete": complete, "cpu": cpu, "end": end}
        log(f"large: ingest 20% {rate:.0f} events/s, end {end}")

    def phase_match_bench(self):
        out = subprocess.run([os.path.join(self.tools, "match_bench"), "--small", "100", "--large",
                              str(self.args.large_definitions), "--seconds",
                              str(self.args.match_seconds)], check=True, capture_output=True,
                             text=True)
        r = json.loads(out.stdout.strip())
        log(f"match_bench: {r}")
        self.results["match_bench"] = r
        # The matching stage as the daemon runs it (decode, look up, conditions, plan the rows),
        # same index shapes, 20 % matching events spread over all tenants of each index.
        out = subprocess.run([os.path.join(self.tools, "decode_bench"), "--compare-index",
                              f"100,{self.args.large_definitions}", "--match", "20", "--seconds",
                              str(self.args.match_seconds)], check=True, capture_output=True,
                             text=True)
        r = json.loads(out.stdout.strip())
        log(f"decode_bench --compare-index: {r}")
        self.results["match_stage"] = r

    # --- report ---------------------------------------------------------------------------------

    def table(self):
        R = self.results
        rows = []

        def row(name, value, unit, target_text, ratio, ok, note=""):
            rows.append((name, value, unit, target_text, ratio, ok, note))

        def fmt_cpu(c):
            if not c:
                return ""
            parts = []
            if "daemon" in c:
                parts.append(f"wfd {c['daemon']:.0f}%")
                th = c.get("daemon_threads", {})
                if th:
                    top = sorted(th.items(), key=lambda kv: -kv[1])[:2]
                    parts.append("(" + ", ".join(f"{k} {v:.0f}%" for k, v in top) + ")")
            parts.append(f"pg {c['pg']:.0f}%")
            parts.append(f"kafka {c['kafka']:.0f}%")
            if "tools" in c:
                parts.append(f"tool {c['tools']:.0f}%")
            parts.append(f"other {c['other']:.0f}%")
            return "cpu: " + " ".join(parts)

        raw = R.get("raw_consume", {}).get("best", {}).get("rate_10_90")
        copy = R.get("copy", {}).get("best", {}).get("rate")
        if raw:
            row("ceiling: raw librdkafka consume, same topic", raw, "events/s", "(ceiling)", None,
                None, fmt_cpu(R["raw_consume"]["best"].get("cpu")))
        if copy:
            row("ceiling: PostgreSQL COPY, executions-shaped table", copy, "rows/s", "(ceiling)",
                None, None, f"into workflow_executions itself: "
                            f"{R['copy'].get('real_table_rate', 0):,.0f} rows/s, in 500-row "
                            f"transactions {R['copy'].get('real_table_batched_rate', 0):,.0f} "
                            f"rows/s; " +
                fmt_cpu(R["copy"]["best"].get("cpu")))
        def runs(r):  # the runs the best was taken from
            rates = r.get("runs", [])
            return f"best of {', '.join(f'{x:,}' for x in rates)}; " if len(rates) > 1 else ""

        if "ingest_m0" in R and raw:
            v = R["ingest_m0"]["rate"]
            row("ingest, 0 % match", v, "events/s", f">= 0.5 x raw = {0.5 * raw:,.0f}",
                v / raw, v >= 0.5 * raw, runs(R["ingest_m0"]) + fmt_cpu(R["ingest_m0"]["cpu"]))
        if "ingest_m20" in R:
            v = R["ingest_m20"]["rate"]
            row("ingest, 20 % match", v, "events/s", ">= 50,000", v / 50000, v >= 50000,
                runs(R["ingest_m20"]) + fmt_cpu(R["ingest_m20"]["cpu"]))
        if "ingest_m100" in R and copy:
            v = R["ingest_m100"]["rate"]
            row("ingest, 100 % match: rows committed", v, "rows/s",
                f">= 0.5 x COPY = {0.5 * copy:,.0f}", v / copy, v >= 0.5 * copy,
                runs(R["ingest_m100"]) + fmt_cpu(R["ingest_m100"]["cpu"]))
        if "lifecycle" in R:
            # The whole backlog, first row created -> last row succeeded, from PostgreSQL: the
            # 10-90 % window would hide the slow start (the lease query's cost grows with the
            # number of pending rows).
            L = R["lifecycle"]
            v = L["db_rate"]
            row("full lifecycle, event -> succeeded (mock)", v, "executions/s", ">= 5,000",
                v / 5000, v >= 5000,
                f"{L['succeeded_rows']:,}/{L['target']:,} succeeded in {L['db_span_s']:.0f} s "
                f"(first created -> last succeeded); 10-90 % window {L['rate']:,.0f}/s; daemon VmHWM "
                f"{L['vm_hwm_kb'] / 1024:.0f} MB; " + fmt_cpu(L["cpu"]))
        if "engine" in R:
            E = R["engine"]
            v = E["rate"]
            pg = (E.get("cpu") or {}).get("pg", 0.0)
            ok = v >= E["goal"] and pg < 50.0
            row(f"slow engine: starts with {E['latency_ms']} ms per call, {E['slots']} in flight",
                v, "starts/s", f">= 0.8 x C/L = {E['goal']:,.0f}, pg < 50 %", v / E["goal"], ok,
                f"{E['final']:,.0f}/{E['target']:,} started; " + fmt_cpu(E["cpu"]))
        if "temporal" in R:
            T = R["temporal"]
            v = T["ratio"]
            row(f"Temporal dev server: starts through workflowd vs the Python SDK client, "
                f"{T['concurrency']} in flight", v, "x", ">= 1.0", v, v >= 1.0,
                f"best of rounds: workflowd {T['rate']:,.0f} starts/s (runs {T.get('runs')}), "
                f"SDK client {T['sdk']['rate']:,.0f} starts/s (runs {T.get('sdk_runs')}); "
                + fmt_cpu(T["cpu"]))
        for s in R.get("steady", []):
            tag = f"steady {s['rate']:,} events/s, {s['match']:g} % match"
            v = s["commit"]["p99_ms"]
            behind = "" if s["handled"] >= s["events"] else (
                f"; only {s['handled']:,.0f}/{s['events']:,} events handled in time")
            warm = (f" after the first {s['warmup_s']:g} s (whole run p99 "
                    f"{s['commit_all']['p99_ms']:.0f} ms)" if s.get("warmup_s") else "")
            row(f"{tag}: p99 produce -> row committed", v, "ms", "<= 50", v / 50, v <= 50,
                f"p50 {s['commit']['p50_ms']:.1f} ms, max {s['commit']['max_ms']:.0f} ms, "
                f"{s['commit']['n']:,} rows{warm}{behind}")
            v = s["started"]["p99_ms"]
            ns = f"{s['not_started']:,} not started after the drain time (counted as of then); " \
                if s["not_started"] else ""
            row(f"{tag}: p99 produce -> provider start", v, "ms", "<= 100", v / 100, v <= 100,
                f"p50 {s['started']['p50_ms']:.1f} ms, max {s['started']['max_ms']:.0f} ms" +
                (f" (whole run p99 {s['started_all']['p99_ms']:.0f} ms)"
                 if s.get("warmup_s") else "") + f"; {ns}" +
                fmt_cpu(s["cpu"]))
        if "match_stage" in R:
            ms = R["match_stage"]
            mb = R.get("match_bench")
            # The matching stage (PlanBatch) in turn, milliseconds apart (median over the turns):
            # this VM's speed swings up to 3x within seconds. The index lookup alone
            # (match_bench, pre-decoded events) is in the notes: it measures one cache miss
            # against ~60-250 ns of other work, which no event of the daemon is.
            v = ms["ratio_in_turn"]
            alone = ""
            if mb:
                alone = (f"; the index lookup alone (match_bench, in turn): "
                         f"{mb['ratio_spread_interleaved']:.2f}x, same events "
                         f"{mb['ratio_same_interleaved']:.2f}x, small index "
                         f"{mb['small_events_per_s']:,.0f} events/s")
            row(f"matching {ms['large_definitions']:,} vs {ms['small_definitions']} defs "
                "(micro: decode + match + plan, events over all tenants)", v, "x", ">= 0.90",
                v / 0.9, v >= 0.9,
                f"in turn, median of {ms['turns']} turns; {ms['large_ns_per_event']:,.0f} vs "
                f"{ms['small_ns_per_event']:,.0f} ns/event{alone}")
        if "large" in R:
            base = R["large"]["base_ingest_m20_rate"]
            v = R["large"]["ingest_m20_rate"] / base
            early = (f"; the ingest phase's 20 % run: {R['ingest_m20']['rate']:,.0f} events/s"
                     if "ingest_m20" in R else "")
            row(f"matching end to end: 20 % ingest, {R['definitions_large']['total']:,} vs "
                f"{R['large']['base_definitions']:,} defs",
                v, "x", ">= 0.90", v / 0.9, v >= 0.9,
                f"{R['large']['ingest_m20_rate']:,.0f} vs {base:,.0f} events/s (the base run "
                f"right before the large set was loaded{early})")
        if "large" in R:
            hwm = max(R["large"]["end"]["vm_hwm_kb"], R["large"]["after_load"]["vm_hwm_kb"]) / 1024
            row(f"peak RSS, {R['definitions_large']['total']:,} definitions loaded", hwm, "MB",
                "<= 150", hwm / 150, hwm <= 150,
                f"after load {R['large']['after_load']['vm_hwm_kb'] / 1024:.0f} MB (index load "
                f"{R['large']['after_load']['load_ms']} ms); "
                f"500 defs: {R.get('ingest_m20', {}).get('vm_hwm_kb', 0) / 1024:.0f} MB")
        return rows

    def render(self, rows):
        def num(v, unit):
            if unit in ("ms", "x"):
                return f"{v:,.2f}" if unit == "x" else f"{v:,.1f}"
            if unit == "MB":
                return f"{v:,.0f}"
            return f"{v:,.0f}"

        lines = ["| measurement | value | target | ratio | result | notes |",
                 "|---|---:|---|---:|---|---|"]
        for name, value, unit, target, ratio, ok, note in rows:
            res = "" if ok is None else ("PASS" if ok else "MISS")
            r = "" if ratio is None else f"{ratio:.2f}"
            lines.append(f"| {name} | {num(value, unit)} {unit} | {target} | {r} | {res} | "
                         f"{note} |")
        return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--workflowd", required=True)
    ap.add_argument("--tools", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--copy-rows", type=int, default=0)
    ap.add_argument("--lifecycle-events", type=int, default=100000)
    ap.add_argument("--steady-rate", type=int, default=5000)
    ap.add_argument("--steady-seconds", type=int, default=30)
    ap.add_argument("--steady-match", default="20,100",
                    help="comma-separated match rates, one steady run each")
    ap.add_argument("--steady-warmup", type=float, default=2,
                    help="seconds at the start of a steady run left out of its latency figures")
    ap.add_argument("--steady-broker-warmup", type=float, default=20,
                    help="seconds of the steady stream run through the broker, unmeasured, "
                         "before the latency runs (0: none)")
    ap.add_argument("--steady-drain", type=float, default=20,
                    help="seconds the daemon gets to catch up after a steady run")
    ap.add_argument("--large-definitions", type=int, default=100000)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--match-seconds", type=float, default=2)
    ap.add_argument("--phase-timeout", type=float, default=120)
    ap.add_argument("--engine-events", type=int, default=20000)
    ap.add_argument("--engine-latency-ms", type=int, default=50)
    ap.add_argument("--engine-slots", type=int, default=64)
    ap.add_argument("--temporal-starts", type=int, default=3000)
    ap.add_argument("--temporal-concurrency", type=int, default=16)
    ap.add_argument("--temporal-poll-min-interval",
                    help="providers.temporal.poll_min_interval of the workflowd runs (default: "
                         "the provider's default)")
    ap.add_argument("--phases",
                    default="ceilings,ingest,lifecycle,engine,temporal,steady,match,large")
    ap.add_argument("--daemon-set", action="append",
                    help="extra daemon config for the lifecycle phases, SECTION.KEY=VALUE")
    ap.add_argument("--perf", action="store_true")
    ap.add_argument("--render", help="print the table of a saved results JSON and exit")
    ap.add_argument("--json-out")
    ap.add_argument("--table-out")
    args = ap.parse_args()
    args.steady_match = [float(x) for x in str(args.steady_match).split(",")]
    if not args.copy_rows:
        args.copy_rows = min(args.events, 300000)  # the COPY rate is stable well before this
    phases = args.phases.split(",")

    b = Bench(args)
    if args.render:
        # Re-render the table of a saved run (results JSON) without measuring anything.
        with open(args.render) as f:
            b.results = json.load(f)
        print(b.render(b.table()))
        return
    t0 = time.monotonic()
    b.results["load_before"] = os.getloadavg()
    b.setup_database()
    base = [t for t in range(args.tenants)]
    # Start from the base set only (a previous run may have left 100,000 definitions behind).
    psql(b.dsn, "TRUNCATE workflow_executions, execution_steps, execution_history_chunks; "
                "DELETE FROM workflow_definition_versions WHERE tenant_id LIKE 'bt%'; "
                "DELETE FROM workflow_definitions WHERE tenant_id LIKE 'bt%'")
    if b.definition_count() == 0:
        n, secs = b.apply_definitions(base)
        log(f"applied {n} definitions ({args.tenants} tenants x 2 environments x "
            f"{len(EVENT_TYPES)} event names) in {secs:.1f}s")
        b.results["definitions_base"] = {"count": n, "apply_seconds": secs}
    b.phase_produce_backlogs()
    if "ceilings" in phases:
        b.phase_raw_consume()
        b.phase_copy()
    if "ingest" in phases:
        b.phase_ingest()
    if "lifecycle" in phases:
        b.phase_lifecycle()
    if "engine" in phases:
        b.phase_engine()
    if "temporal" in phases:
        b.phase_temporal()
    if "steady" in phases:
        b.phase_steady()
    if "match" in phases:
        b.phase_match_bench()
    if "large" in phases:
        b.phase_large()
    b.results["load_after"] = os.getloadavg()
    b.results["elapsed_s"] = time.monotonic() - t0
    rows = b.table()
    table = b.render(rows)
    b.results["table"] = table
    la, lb = b.results["load_before"], b.results["load_after"]
    header = (f"load average before {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, after {lb[0]:.2f} "
              f"{lb[1]:.2f} {lb[2]:.2f}; {args.events:,} events per ingest run, "
              f"{args.lifecycle_events:,} lifecycle, steady {args.steady_rate}/s x "
              f"{args.steady_seconds}s; elapsed {b.results['elapsed_s']:.0f}s")
    print()
    print(header)
    print()
    print(table)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(b.results, f, indent=1, default=str)
    if args.table_out:
        with open(args.table_out, "w") as f:
            f.write(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
