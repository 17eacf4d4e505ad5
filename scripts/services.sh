#!/usr/bin/env bash
# Starts and stops the real local services that workflowd's tests, demo and CI use: PostgreSQL 15
# (Debian's packages), a single-node Apache Kafka 3.9 broker in KRaft mode (jars resolved by
# scripts/install-deps.sh) and a Temporal dev server (`temporal server start-dev`, SQLite file)
# with workflowd's worker (workers/temporal/worker.py) polling its task queue (CLI and venv
# installed by scripts/install-deps.sh). Everything listens on 127.0.0.1 on free ports, with its
# data in a throwaway folder.
#
# Usage: scripts/services.sh COMMAND [ARGS]
#   start [SERVICE]              start SERVICE (default all); when already running and ready, only
#                                prints the environment. A service stopped with `stop SERVICE` comes
#                                back on the same port with its data.
#                                SERVICE: all (postgres, kafka, temporal), postgres, kafka, temporal
#                                (server + worker) or temporal-worker (the worker alone)
#   stop [SERVICE]               stop (default all). `stop`/`stop all` also deletes the throwaway
#                                folder unless WORKFLOWD_KEEP_SERVICES_DATA=1; stopping one service
#                                keeps its data and port. Never fails when nothing runs.
#   restart SERVICE              stop and start on the same ports, keeping the data. `restart
#                                temporal` restarts the server only: the worker reconnects by itself
#                                (restarted when it does not poll again in time)
#   restart-postgres | restart-kafka | restart-temporal   the same as restart SERVICE
#   reset-temporal               restart the Temporal server with an empty database (its runs are
#                                gone; the benchmark gives each of its rounds a fresh server)
#   status [SERVICE]             one line per service; exit 0 when all asked for are running and ready
#   env                          print the export lines: eval "$(scripts/services.sh env)"
#   kafka-topic create NAME [PARTITIONS]   create a topic (default 4 partitions) if it is missing
#   kafka-topic list | describe [NAME] | delete NAME
#
# Environment:
#   WORKFLOWD_SERVICES_DIR          throwaway folder (default <repo>/.services)
#   WORKFLOWD_KEEP_SERVICES_DATA=1  `stop` keeps the folder
#   WORKFLOWD_KAFKA_LIBS            Kafka jars (default <repo>/.cache/kafka/libs)
#   WORKFLOWD_KAFKA_HEAP            broker heap options (default "-Xms128m -Xmx512m")
#   WORKFLOWD_PG_BIN                PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   WORKFLOWD_PG_START_TIMEOUT      seconds (default 60)
#   WORKFLOWD_KAFKA_START_TIMEOUT   seconds (default 90)
#   WORKFLOWD_TEMPORAL_CACHE        Temporal CLI and worker venv (default <repo>/.cache/temporal)
#   WORKFLOWD_TEMPORAL_START_TIMEOUT      seconds for the server, then the worker (default 60)
#   WORKFLOWD_TEMPORAL_RECONNECT_TIMEOUT  seconds the worker gets to poll again after
#                                         `restart temporal` before it is restarted (default 60)
#
# The env file defines WORKFLOWD_SERVICES_DIR, WORKFLOWD_TEST_PG_DSN, WORKFLOWD_TEST_PG_ADMIN_DSN,
# WORKFLOWD_TEST_PG_HOST, WORKFLOWD_TEST_PG_PORT, WORKFLOWD_TEST_PG_PID_FILE,
# WORKFLOWD_TEST_PG_LOG, WORKFLOWD_TEST_KAFKA_BROKERS, WORKFLOWD_TEST_KAFKA_PORT,
# WORKFLOWD_TEST_KAFKA_PID_FILE, WORKFLOWD_TEST_KAFKA_LOG, WORKFLOWD_TEMPORAL_ADDRESS,
# WORKFLOWD_TEMPORAL_NAMESPACE, WORKFLOWD_TEMPORAL_TASK_QUEUE, WORKFLOWD_TEMPORAL_CLI,
# WORKFLOWD_TEMPORAL_PID_FILE, WORKFLOWD_TEMPORAL_LOG, WORKFLOWD_TEMPORAL_WORKER_PID_FILE,
# WORKFLOWD_TEMPORAL_WORKER_LOG (for the services that were started).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "${SCRIPT_DIR}/.." && pwd)"

BASE="${WORKFLOWD_SERVICES_DIR:-${REPO_DIR}/.services}"
[[ "${BASE}" == /* ]] || BASE="${PWD}/${BASE}"
BASE="${BASE%/}"
KAFKA_LIBS="${WORKFLOWD_KAFKA_LIBS:-${REPO_DIR}/.cache/kafka/libs}"
KAFKA_HEAP="${WORKFLOWD_KAFKA_HEAP:--Xms128m -Xmx512m}"
PG_BIN="${WORKFLOWD_PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_START_TIMEOUT="${WORKFLOWD_PG_START_TIMEOUT:-60}"
KAFKA_START_TIMEOUT="${WORKFLOWD_KAFKA_START_TIMEOUT:-90}"
TEMPORAL_CACHE="${WORKFLOWD_TEMPORAL_CACHE:-${REPO_DIR}/.cache/temporal}"
TEMPORAL_START_TIMEOUT="${WORKFLOWD_TEMPORAL_START_TIMEOUT:-60}"
TEMPORAL_RECONNECT_TIMEOUT="${WORKFLOWD_TEMPORAL_RECONNECT_TIMEOUT:-60}"
STOP_TIMEOUT=30
HOST=127.0.0.1

PG_DB=workflowd
PG_ROLE=workflowd
PG_PASSWORD=workflowd
PG_SUPERUSER=postgres

MARKER="${BASE}/.workflowd-services"
ENV_FILE="${BASE}/env"
PG_PORT_FILE="${BASE}/postgres.port"
PG_PID_FILE="${BASE}/postgres.pid"
PG_ROOT_FILE="${BASE}/postgres.root"
KAFKA_DIR="${BASE}/kafka"
KAFKA_PORT_FILE="${BASE}/kafka.port"
KAFKA_CONTROLLER_PORT_FILE="${BASE}/kafka.controller.port"
KAFKA_PID_FILE="${BASE}/kafka.pid"
KAFKA_LOG="${KAFKA_DIR}/kafka.log"
KAFKA_PROPS="${KAFKA_DIR}/server.properties"
KAFKA_ADMIN_PROPS="${KAFKA_DIR}/admin.properties"
TEMPORAL_BIN="${TEMPORAL_CACHE}/bin/temporal"
TEMPORAL_PYTHON="${TEMPORAL_CACHE}/venv/bin/python"
TEMPORAL_WORKER="${REPO_DIR}/workers/temporal/worker.py"
TEMPORAL_NAMESPACE=default
TEMPORAL_TASK_QUEUE=workflowd
TEMPORAL_DIR="${BASE}/temporal"
TEMPORAL_DB="${TEMPORAL_DIR}/db.sqlite"
TEMPORAL_LOG="${TEMPORAL_DIR}/temporal.log"
TEMPORAL_WORKER_LOG="${TEMPORAL_DIR}/worker.log"
TEMPORAL_PORT_FILE="${BASE}/temporal.port"
TEMPORAL_HTTP_PORT_FILE="${BASE}/temporal.http.port"
TEMPORAL_METRICS_PORT_FILE="${BASE}/temporal.metrics.port"
TEMPORAL_PID_FILE="${BASE}/temporal.pid"
TEMPORAL_WORKER_PID_FILE="${BASE}/temporal-worker.pid"
TEMPORAL_WORKER_ID_FILE="${BASE}/temporal-worker.identity"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# --- helpers -------------------------------------------------------------------------------------

now_ms() { date +%s%3N; }

# Serialises commands that change state; the lock lives outside BASE because `stop` deletes BASE.
take_lock() {
  local lock_dir="${TMPDIR:-/tmp}"
  local lock hash
  hash="$(printf '%s' "${BASE}" | sha256sum | cut -c1-16)"
  lock="${lock_dir}/workflowd-services.${EUID}.${hash}.lock"
  exec 9>>"${lock}"
  flock -w 300 9 || die "another services.sh has held ${lock} for 300 s"
}

# Prints N distinct free TCP ports on 127.0.0.1.
free_ports() {
  local n="$1"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "${n}" <<'PY'
import socket, sys
n = int(sys.argv[1])
socks, ports = [], []
while len(ports) < n:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    p = s.getsockname()[1]
    if p not in ports:
        ports.append(p)
for s in socks:
    s.close()
print(" ".join(map(str, ports)))
PY
  else
    local ports=() p tries=0
    while [[ ${#ports[@]} -lt ${n} ]]; do
      tries=$((tries + 1))
      [[ ${tries} -lt 1000 ]] || die "could not find ${n} free ports"
      p=$((20000 + RANDOM % 20000))
      [[ " ${ports[*]} " == *" ${p} "* ]] && continue
      [[ -z "$(ss -Hltn "sport = :${p}" 2>/dev/null)" ]] && ports+=("${p}")
    done
    echo "${ports[*]}"
  fi
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/${HOST}/$1" 2>/dev/null; }

# True when PID runs; a killed process can linger as a zombie until it is reaped, which counts as dead.
pid_alive() {
  local pid="${1:-}" stat
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  stat="$(cat "/proc/${pid}/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z && "${stat:0:1}" != X ]]
}

# Prints the content of a small state file without whitespace, or nothing when it is missing.
read_file() {
  if [[ -f "$1" ]]; then tr -d '[:space:]' <"$1"; fi
}

# Sends SIGTERM to PID, waits up to STOP_TIMEOUT seconds, then SIGKILL.
stop_pid() {
  local name="$1" pid="$2"
  log "${name}: stopping (pid ${pid})"
  kill -TERM "${pid}" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while pid_alive "${pid}" && [[ ${SECONDS} -lt ${deadline} ]]; do
    sleep 0.1
  done
  if pid_alive "${pid}"; then
    log "${name}: still running after ${STOP_TIMEOUT} s; SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while pid_alive "${pid}" && [[ ${SECONDS} -lt ${deadline} ]]; do
      sleep 0.1
    done
  fi
}

# Creates BASE (refusing a non-empty folder that is not ours, so a wrong WORKFLOWD_SERVICES_DIR
# is never filled or deleted).
ensure_base() {
  if [[ -d "${BASE}" && ! -f "${MARKER}" ]] && [[ -n "$(ls -A "${BASE}")" ]]; then
    die "${BASE} exists, is not empty and was not made by services.sh; set WORKFLOWD_SERVICES_DIR to another folder"
  fi
  mkdir -p "${BASE}"
  chmod 755 "${BASE}"
  touch "${MARKER}"
}

# --- PostgreSQL ----------------------------------------------------------------------------------

# PostgreSQL refuses to run as root: as root, run it as the `postgres` system user.
pg_os_user() { if [[ ${EUID} -eq 0 ]]; then echo postgres; else id -un; fi; }

as_pg() {
  if [[ ${EUID} -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

ensure_pg_os_user() {
  [[ ${EUID} -eq 0 ]] || return 0
  id postgres >/dev/null 2>&1 && return 0
  log "creating system user postgres"
  useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
    --shell /usr/sbin/nologin postgres
}

# The folder holding PostgreSQL's data, socket and log: <BASE>/postgres when the postgres user can
# reach it and the socket path is short enough, otherwise a private folder under /tmp.
pg_root() { read_file "${PG_ROOT_FILE}"; }

pg_choose_root() {
  local root="${BASE}/postgres" owner
  owner="$(pg_os_user)"
  mkdir -p "${root}"
  chown "${owner}:" "${root}" 2>/dev/null || chown "${owner}" "${root}"
  chmod 700 "${root}"
  # Unix socket paths are limited to 107 bytes: <root>/run/.s.PGSQL.NNNNN
  if [[ $(( ${#root} + 20 )) -gt 100 ]] || ! as_pg test -w "${root}" -a -x "${root}"; then
    rmdir "${root}" 2>/dev/null || true
    root="$(mktemp -d "${TMPDIR:-/tmp}/workflowd-pg.XXXXXX")"
    chown "${owner}:" "${root}" 2>/dev/null || chown "${owner}" "${root}"
    chmod 700 "${root}"
    log "postgres cannot use ${BASE}/postgres (permissions or socket path length); using ${root}"
  fi
  printf '%s\n' "${root}" >"${PG_ROOT_FILE}"
}

pg_data() { echo "$(pg_root)/data"; }
pg_log() { echo "$(pg_root)/postgres.log"; }

pg_postmaster_pid() {
  local root
  root="$(pg_root)"
  [[ -n "${root}" && -f "${root}/data/postmaster.pid" ]] || return 0
  head -n 1 "${root}/data/postmaster.pid" | tr -d '[:space:]'
}

pg_alive() {
  local pid
  pid="$(pg_postmaster_pid)"
  pid_alive "${pid}" && grep -q postgres "/proc/${pid}/comm" 2>/dev/null
}

pg_ready() {
  local port
  port="$(read_file "${PG_PORT_FILE}")"
  [[ -n "${port}" ]] \
    && "${PG_BIN}/pg_isready" -q -h "${HOST}" -p "${port}" -U "${PG_SUPERUSER}" -d postgres -t 2
}

pg_dsn() { echo "postgresql://${PG_ROLE}:${PG_PASSWORD}@${HOST}:$1/${PG_DB}"; }

pg_psql_admin() {
  local port="$1"; shift
  PGCONNECT_TIMEOUT=5 "${PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 \
    "postgresql://${PG_SUPERUSER}@${HOST}:${port}/postgres" "$@"
}

pg_initdb() {
  local root port data
  root="$(pg_root)"; port="$1"; data="${root}/data"
  log "postgres: initdb in ${data}"
  local out
  if ! out="$(as_pg "${PG_BIN}/initdb" -D "${data}" -U "${PG_SUPERUSER}" --auth=trust \
      --encoding=UTF8 --no-locale --no-sync 2>&1)"; then
    printf '%s\n' "${out}" >&2
    die "postgres: initdb failed"
  fi
  as_pg mkdir -p "${root}/run"
  as_pg tee -a "${data}/postgresql.conf" >/dev/null <<EOF

# --- added by scripts/services.sh: local throwaway server for tests ---
listen_addresses = '${HOST}'
port = ${port}
unix_socket_directories = '${root}/run'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 128MB
log_autovacuum_min_duration = 0
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  as_pg tee "${data}/pg_hba.conf" >/dev/null <<EOF
# written by scripts/services.sh: local throwaway server for tests
local   all all                trust
host    all all 127.0.0.1/32   trust
EOF
}

# After a crash (kill -9) the old postmaster's pid stays in postmaster.pid and its process can
# linger as a zombie for a moment; PostgreSQL refuses to start while that pid exists.
pg_wait_old_postmaster_gone() {
  local data="$1" pid deadline=$((SECONDS + 15))
  [[ -f "${data}/postmaster.pid" ]] || return 0
  pid="$(head -n 1 "${data}/postmaster.pid" | tr -d '[:space:]')"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 0
  while [[ -e "/proc/${pid}" && ${SECONDS} -lt ${deadline} ]] && ! pid_alive "${pid}"; do
    sleep 0.2
  done
  if [[ -e "/proc/${pid}" ]] && ! pid_alive "${pid}"; then
    log "postgres: old server ${pid} is a zombie nobody reaps; removing its postmaster.pid"
    rm -f "${data}/postmaster.pid"
  fi
}

pg_bootstrap() {
  local port="$1"
  pg_psql_admin "${port}" >/dev/null <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${PG_ROLE}') THEN
    CREATE ROLE ${PG_ROLE} LOGIN CREATEDB PASSWORD '${PG_PASSWORD}';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE ${PG_DB} OWNER ${PG_ROLE}'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '${PG_DB}')\gexec
SQL
}

pg_start() {
  [[ -x "${PG_BIN}/initdb" && -x "${PG_BIN}/pg_ctl" ]] \
    || die "PostgreSQL 15 not found in ${PG_BIN}: run scripts/install-deps.sh"
  local port root data t0
  t0="$(now_ms)"
  port="$(read_file "${PG_PORT_FILE}")"
  if [[ -n "${port}" ]] && pg_alive && pg_ready; then
    log "postgres: already running on ${HOST}:${port}"
    return 0
  fi
  ensure_pg_os_user
  if [[ -z "$(pg_root)" || ! -d "$(pg_root)" ]]; then
    pg_choose_root
  fi
  root="$(pg_root)"; data="${root}/data"
  if [[ -z "${port}" ]]; then
    port="${1:-$(free_ports 1)}"
    printf '%s\n' "${port}" >"${PG_PORT_FILE}"
  fi
  if [[ ! -f "${data}/PG_VERSION" ]]; then
    pg_initdb "${port}"
  fi
  local deadline=$((SECONDS + PG_START_TIMEOUT))
  if ! pg_alive; then
    pg_wait_old_postmaster_gone "${data}"
    if port_open "${port}"; then
      die "postgres: port ${port} is already taken by another process (ss -ltnp 'sport = :${port}')"
    fi
    log "postgres: starting on ${HOST}:${port}"
    # pg_ctl -w waits until the server accepts connections; setsid detaches it from our session,
    # 9>&- keeps it from inheriting our lock. Retried: after a crash, backends of the old server
    # can hold its shared memory for a moment.
    until as_pg setsid -w "${PG_BIN}/pg_ctl" -D "${data}" -l "${root}/postgres.log" \
        -w -t "$((deadline - SECONDS > 1 ? deadline - SECONDS : 1))" start >/dev/null 2>&1 9>&-; do
      if pg_alive || [[ ${SECONDS} -ge ${deadline} ]]; then
        break
      fi
      sleep 1
    done
  fi
  until pg_ready; do
    if ! pg_alive; then
      tail -n 30 "${root}/postgres.log" >&2 2>/dev/null || true
      die "postgres: server exited during start (log: ${root}/postgres.log)"
    fi
    if [[ ${SECONDS} -ge ${deadline} ]]; then
      tail -n 30 "${root}/postgres.log" >&2 2>/dev/null || true
      die "postgres: not ready within ${PG_START_TIMEOUT} s (log: ${root}/postgres.log)"
    fi
    sleep 0.2
  done
  pg_bootstrap "${port}" || die "postgres: could not create role/database ${PG_ROLE}/${PG_DB}"
  PGCONNECT_TIMEOUT=5 "${PG_BIN}/psql" -X -q -t -A "$(pg_dsn "${port}")" -c 'select 1' >/dev/null \
    || die "postgres: cannot connect as ${PG_ROLE} to ${PG_DB}"
  pg_postmaster_pid >"${PG_PID_FILE}"
  log "postgres: ready on ${HOST}:${port} (pid $(read_file "${PG_PID_FILE}"), $(( $(now_ms) - t0 )) ms)"
}

pg_stop() {
  local root data pid
  root="$(pg_root)"
  [[ -n "${root}" && -d "${root}/data" ]] || return 0
  data="${root}/data"
  pid="$(pg_postmaster_pid)"
  if pg_alive; then
    log "postgres: stopping (pid ${pid})"
    if ! as_pg "${PG_BIN}/pg_ctl" -D "${data}" -m fast -w -t "${STOP_TIMEOUT}" stop >/dev/null 2>&1; then
      log "postgres: fast shutdown timed out; immediate shutdown"
      as_pg "${PG_BIN}/pg_ctl" -D "${data}" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    fi
    if pid_alive "${pid}"; then
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  fi
  rm -f "${PG_PID_FILE}"
  return 0
}

# --- Kafka ---------------------------------------------------------------------------------------

# Short-lived Kafka tools (StorageTool, TopicCommand): small heap, quick JIT, warnings only.
kafka_tool_argv() {
  KAFKA_TOOL=(java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
    "-Dlog4j.configuration=file:${SCRIPT_DIR}/kafka/tools-log4j.properties"
    -cp "${KAFKA_LIBS}/*")
}

# TopicCommand against the local broker, bounded by TIMEOUT seconds so a hung client never hangs us.
kafka_topic_cmd() {
  local seconds="$1"; shift
  local KAFKA_TOOL
  kafka_tool_argv
  timeout --kill-after=5 "${seconds}" "${KAFKA_TOOL[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$(kafka_brokers)" --command-config "${KAFKA_ADMIN_PROPS}" "$@"
}

kafka_check_libs() {
  command -v java >/dev/null 2>&1 || die "java not found: run scripts/install-deps.sh"
  if ! compgen -G "${KAFKA_LIBS}/kafka_2.13-*.jar" >/dev/null \
      || ! compgen -G "${KAFKA_LIBS}/kafka-tools-[0-9]*.jar" >/dev/null; then
    die "Kafka jars not found in ${KAFKA_LIBS}: run scripts/install-deps.sh"
  fi
}

kafka_pid() { read_file "${KAFKA_PID_FILE}"; }

kafka_alive() {
  local pid
  pid="$(kafka_pid)"
  pid_alive "${pid}" && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF "kafka.Kafka ${KAFKA_PROPS}"
}

kafka_brokers() { echo "${HOST}:$(read_file "${KAFKA_PORT_FILE}")"; }

# Ready = the broker answers a metadata request (lists topics). Prints the tool's output.
kafka_list_topics() { kafka_topic_cmd 40 --list 2>&1; }

kafka_write_config() {
  local port="$1" cport="$2"
  mkdir -p "${KAFKA_DIR}/data"
  cat >"${KAFKA_PROPS}" <<EOF
# written by scripts/services.sh: single-node KRaft broker+controller for tests
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@${HOST}:${cport}
listeners=PLAINTEXT://${HOST}:${port},CONTROLLER://${HOST}:${cport}
advertised.listeners=PLAINTEXT://${HOST}:${port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${KAFKA_DIR}/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
# Tests kill consumers with -9: allow short consumer sessions so their partitions move on quickly.
group.min.session.timeout.ms=1000
# After a kill -9 the restarted broker cannot register until its old session expires (default 9 s).
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
  cat >"${KAFKA_ADMIN_PROPS}" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=15000
EOF
}

kafka_format() {
  [[ -f "${KAFKA_DIR}/data/meta.properties" ]] && return 0
  local id out
  local KAFKA_TOOL
  kafka_tool_argv
  id="$(timeout 60 "${KAFKA_TOOL[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 | tr -d '[:space:]')"
  [[ -n "${id}" ]] || die "kafka: StorageTool random-uuid printed nothing"
  printf '%s\n' "${id}" >"${KAFKA_DIR}/cluster.id"
  if ! out="$(timeout 60 "${KAFKA_TOOL[@]}" kafka.tools.StorageTool format -t "${id}" -c "${KAFKA_PROPS}" 2>&1)"; then
    printf '%s\n' "${out}" >&2
    die "kafka: storage format failed"
  fi
  log "kafka: formatted storage (cluster ${id})"
}

# Starts the JVM without waiting for readiness (kafka_wait_ready does that).
KAFKA_LAUNCH_MS=""
kafka_launch() {
  kafka_check_libs
  if kafka_alive; then
    return 0
  fi
  local port cport
  port="$(read_file "${KAFKA_PORT_FILE}")"
  cport="$(read_file "${KAFKA_CONTROLLER_PORT_FILE}")"
  if [[ -z "${port}" || -z "${cport}" ]]; then
    if [[ $# -ge 2 ]]; then
      port="$1"; cport="$2"
    else
      read -r port cport <<<"$(free_ports 2)"
    fi
    printf '%s\n' "${port}" >"${KAFKA_PORT_FILE}"
    printf '%s\n' "${cport}" >"${KAFKA_CONTROLLER_PORT_FILE}"
  fi
  local p
  for p in "${port}" "${cport}"; do
    if port_open "${p}"; then
      die "kafka: port ${p} is already taken by another process (ss -ltnp 'sport = :${p}')"
    fi
  done
  kafka_write_config "${port}" "${cport}"
  kafka_format
  log "kafka: starting on ${HOST}:${port} (controller ${HOST}:${cport})"
  {
    echo "=== $(date -u +%FT%TZ) services.sh: starting broker"
  } >>"${KAFKA_LOG}"
  # setsid: own session, so signals sent to the caller's process group do not reach the broker;
  # 9>&-: the broker must not inherit our lock.
  (
    cd "${KAFKA_DIR}"
    # shellcheck disable=SC2086 # KAFKA_HEAP holds several options
    exec setsid java ${KAFKA_HEAP} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dlog4j.configuration="file:${SCRIPT_DIR}/kafka/log4j.properties" \
      -Dkafka.logs.dir="${KAFKA_DIR}" \
      -cp "${KAFKA_LIBS}/*" kafka.Kafka "${KAFKA_PROPS}"
  ) </dev/null >>"${KAFKA_LOG}" 2>&1 9>&- &
  printf '%s\n' "$!" >"${KAFKA_PID_FILE}"
  KAFKA_LAUNCH_MS="$(now_ms)"
}

kafka_fail() {
  log "kafka: $1; last lines of ${KAFKA_LOG}:"
  tail -n 40 "${KAFKA_LOG}" >&2 2>/dev/null || true
  kafka_stop
  exit 1
}

# The broker exited during its start because one of the free ports chosen for it was taken before
# the JVM could bind it (the Temporal dev server, booting at the same time, opens ports of its
# own): launched again on other ports, up to three times. Returns 1 when that was not the cause.
KAFKA_PORT_RETRIES=0
kafka_relaunch_if_port_taken() {
  [[ ${KAFKA_PORT_RETRIES} -lt 3 ]] || return 1
  awk '/^=== .* services.sh: starting broker/ { tail = "" } { tail = tail $0 "\n" } END { printf "%s", tail }' \
    "${KAFKA_LOG}" 2>/dev/null | grep -q "Address already in use" || return 1
  KAFKA_PORT_RETRIES=$((KAFKA_PORT_RETRIES + 1))
  log "kafka: a port chosen for the broker was taken before it could bind it; starting it on other ports"
  rm -f "${KAFKA_PID_FILE}" "${KAFKA_PORT_FILE}" "${KAFKA_CONTROLLER_PORT_FILE}"
  kafka_launch
  write_env
}

kafka_wait_ready() {
  local port t0 deadline
  t0="${KAFKA_LAUNCH_MS:-$(now_ms)}"
  port="$(read_file "${KAFKA_PORT_FILE}")"
  deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  # Cheap checks first: the JVM is alive and the listener accepts TCP connections.
  until port_open "${port}"; do
    if ! kafka_alive; then
      kafka_relaunch_if_port_taken || kafka_fail "broker exited during start"
      port="$(read_file "${KAFKA_PORT_FILE}")"
      continue
    fi
    [[ ${SECONDS} -lt ${deadline} ]] || kafka_fail "listener ${HOST}:${port} not open within ${KAFKA_START_TIMEOUT} s"
    sleep 0.2
  done
  # Then a real metadata request, retried until the deadline.
  local out=""
  until out="$(kafka_list_topics)"; do
    kafka_alive || kafka_fail "broker exited during start"
    [[ ${SECONDS} -lt ${deadline} ]] \
      || { printf '%s\n' "${out}" | tail -n 5 >&2; kafka_fail "no metadata answer within ${KAFKA_START_TIMEOUT} s"; }
    sleep 1
  done
  if [[ -n "${KAFKA_LAUNCH_MS}" ]]; then
    log "kafka: ready on ${HOST}:${port} (pid $(kafka_pid), $(( $(now_ms) - t0 )) ms after launch)"
  else
    log "kafka: already running on ${HOST}:${port} (pid $(kafka_pid))"
  fi
}

kafka_start() {
  local port
  port="$(read_file "${KAFKA_PORT_FILE}")"
  if [[ -n "${port}" ]] && kafka_alive && port_open "${port}" && kafka_list_topics >/dev/null; then
    log "kafka: already running on ${HOST}:${port}"
    return 0
  fi
  kafka_launch
  kafka_wait_ready
}

kafka_stop() {
  if kafka_alive; then
    stop_pid kafka "$(kafka_pid)"
  fi
  rm -f "${KAFKA_PID_FILE}"
  return 0
}

# --- Temporal ------------------------------------------------------------------------------------

temporal_check_tools() {
  [[ -x "${TEMPORAL_BIN}" ]] \
    || die "Temporal CLI not found at ${TEMPORAL_BIN}: run scripts/install-deps.sh"
}

temporal_check_worker_tools() {
  [[ -x "${TEMPORAL_PYTHON}" ]] \
    || die "Temporal worker venv not found at ${TEMPORAL_CACHE}/venv: run scripts/install-deps.sh"
  [[ -f "${TEMPORAL_WORKER}" ]] || die "${TEMPORAL_WORKER} not found"
}

temporal_address() { echo "${HOST}:$(read_file "${TEMPORAL_PORT_FILE}")"; }

temporal_pid() { read_file "${TEMPORAL_PID_FILE}"; }

temporal_alive() {
  local pid
  pid="$(temporal_pid)"
  pid_alive "${pid}" \
    && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- "start-dev --headless --ip ${HOST}"
}

temporal_worker_pid() { read_file "${TEMPORAL_WORKER_PID_FILE}"; }

temporal_worker_alive() {
  local pid
  pid="$(temporal_worker_pid)"
  pid_alive "${pid}" && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- "${TEMPORAL_WORKER}"
}

# The Temporal CLI against the local server, bounded by SECONDS so it never hangs us.
temporal_cmd() {
  local seconds="$1"; shift
  timeout --kill-after=5 "${seconds}" "${TEMPORAL_BIN}" "$@" --address "$(temporal_address)" \
    --command-timeout "${seconds}s" --color never
}

# Ready = the gRPC health check says SERVING and the namespace answers.
temporal_ready() {
  local out
  out="$(temporal_cmd 5 operator cluster health 2>&1)" && [[ "${out}" == *SERVING* ]] \
    && temporal_cmd 10 operator namespace describe --namespace "${TEMPORAL_NAMESPACE}" >/dev/null 2>&1
}

# True when our worker (its identity, written at launch) polls the task queue for workflow and
# activity tasks. The server lists a poller for minutes after it went away, hence the identity.
# The legacy describe answers at once (the newer one serves a cache refreshed every few seconds).
temporal_queue_polled() {
  local identity kind out
  identity="$(read_file "${TEMPORAL_WORKER_ID_FILE}")"
  [[ -n "${identity}" ]] || return 1
  for kind in workflow activity; do
    out="$(temporal_cmd 10 task-queue describe --namespace "${TEMPORAL_NAMESPACE}" \
      --task-queue "${TEMPORAL_TASK_QUEUE}" --legacy-mode --task-queue-type-legacy "${kind}" \
      -o json 2>/dev/null)" || return 1
    python3 -c '
import json, sys
pollers = json.loads(sys.argv[1]).get("pollers") or []
sys.exit(0 if any(p.get("identity") == sys.argv[2] for p in pollers) else 1)' "${out}" "${identity}" \
      || return 1
  done
}

temporal_fail() {
  log "temporal: $1; last lines of ${TEMPORAL_LOG}:"
  tail -n 40 "${TEMPORAL_LOG}" >&2 2>/dev/null || true
  exit 1
}

TEMPORAL_LAUNCH_MS=""
temporal_launch() {
  temporal_check_tools
  if temporal_alive; then
    return 0
  fi
  local port hport mport
  port="$(read_file "${TEMPORAL_PORT_FILE}")"
  hport="$(read_file "${TEMPORAL_HTTP_PORT_FILE}")"
  mport="$(read_file "${TEMPORAL_METRICS_PORT_FILE}")"
  if [[ -z "${port}" || -z "${hport}" || -z "${mport}" ]]; then
    if [[ $# -ge 3 ]]; then
      port="$1"; hport="$2"; mport="$3"
    else
      read -r port hport mport <<<"$(free_ports 3)"
    fi
    printf '%s\n' "${port}" >"${TEMPORAL_PORT_FILE}"
    printf '%s\n' "${hport}" >"${TEMPORAL_HTTP_PORT_FILE}"
    printf '%s\n' "${mport}" >"${TEMPORAL_METRICS_PORT_FILE}"
  fi
  local p
  for p in "${port}" "${hport}" "${mport}"; do
    if port_open "${p}"; then
      die "temporal: port ${p} is already taken by another process (ss -ltnp 'sport = :${p}')"
    fi
  done
  mkdir -p "${TEMPORAL_DIR}"
  log "temporal: starting on ${HOST}:${port} (http ${hport}, metrics ${mport}, db ${TEMPORAL_DB})"
  echo "=== $(date -u +%FT%TZ) services.sh: starting the Temporal dev server" >>"${TEMPORAL_LOG}"
  # setsid: own session (signals to the caller's group do not reach it); 9>&-: no lock inherited.
  # The search attributes are those workflowd sets on the runs it starts. One task queue partition:
  # polls and tasks meet at once instead of being forwarded between partitions.
  (
    cd "${TEMPORAL_DIR}"
    exec setsid "${TEMPORAL_BIN}" server start-dev --headless --ip "${HOST}" \
      --port "${port}" --http-port "${hport}" --metrics-port "${mport}" \
      --db-filename "${TEMPORAL_DB}" --namespace "${TEMPORAL_NAMESPACE}" \
      --search-attribute WorkflowdTenant=Keyword \
      --search-attribute WorkflowdEnvironment=Keyword \
      --search-attribute WorkflowdDefinition=Keyword \
      --dynamic-config-value matching.numTaskqueueReadPartitions=1 \
      --dynamic-config-value matching.numTaskqueueWritePartitions=1 \
      --log-level warn
  ) </dev/null >>"${TEMPORAL_LOG}" 2>&1 9>&- &
  printf '%s\n' "$!" >"${TEMPORAL_PID_FILE}"
  TEMPORAL_LAUNCH_MS="$(now_ms)"
}

temporal_wait_ready() {
  local t0 deadline
  t0="${TEMPORAL_LAUNCH_MS:-$(now_ms)}"
  deadline=$((SECONDS + TEMPORAL_START_TIMEOUT))
  until temporal_ready; do
    temporal_alive || temporal_fail "server exited during start"
    [[ ${SECONDS} -lt ${deadline} ]] \
      || { temporal_stop_server; temporal_fail "not ready within ${TEMPORAL_START_TIMEOUT} s"; }
    sleep 0.2
  done
  if [[ -n "${TEMPORAL_LAUNCH_MS}" ]]; then
    log "temporal: ready on $(temporal_address) (pid $(temporal_pid), $(( $(now_ms) - t0 )) ms after launch)"
  else
    log "temporal: already running on $(temporal_address) (pid $(temporal_pid))"
  fi
}

temporal_worker_fail() {
  log "temporal-worker: $1; last lines of ${TEMPORAL_WORKER_LOG}:"
  tail -n 40 "${TEMPORAL_WORKER_LOG}" >&2 2>/dev/null || true
  temporal_worker_stop
  exit 1
}

# Starts the worker (when it does not run) and waits until the task queue is polled.
temporal_worker_start() {
  temporal_check_worker_tools
  local t0 deadline
  t0="$(now_ms)"
  deadline=$((SECONDS + TEMPORAL_START_TIMEOUT))
  if ! temporal_worker_alive; then
    mkdir -p "${TEMPORAL_DIR}"
    log "temporal-worker: starting (task queue ${TEMPORAL_TASK_QUEUE})"
    echo "=== $(date -u +%FT%TZ) services.sh: starting the worker" >>"${TEMPORAL_WORKER_LOG}"
    local identity
    identity="workflowd-worker@$(hostname)-$(now_ms)"
    printf '%s\n' "${identity}" >"${TEMPORAL_WORKER_ID_FILE}"
    (
      cd "${TEMPORAL_DIR}"
      exec setsid "${TEMPORAL_PYTHON}" "${TEMPORAL_WORKER}" --address "$(temporal_address)" \
        --namespace "${TEMPORAL_NAMESPACE}" --task-queue "${TEMPORAL_TASK_QUEUE}" \
        --identity "${identity}" --graceful-shutdown-seconds 2
    ) </dev/null >>"${TEMPORAL_WORKER_LOG}" 2>&1 9>&- &
    printf '%s\n' "$!" >"${TEMPORAL_WORKER_PID_FILE}"
  fi
  until temporal_queue_polled; do
    temporal_worker_alive || temporal_worker_fail "worker exited during start"
    [[ ${SECONDS} -lt ${deadline} ]] \
      || temporal_worker_fail "task queue ${TEMPORAL_TASK_QUEUE} not polled within ${TEMPORAL_START_TIMEOUT} s"
    sleep 0.2
  done
  log "temporal-worker: polling ${TEMPORAL_TASK_QUEUE} (pid $(temporal_worker_pid), $(( $(now_ms) - t0 )) ms)"
}

temporal_worker_stop() {
  if temporal_worker_alive; then
    stop_pid temporal-worker "$(temporal_worker_pid)"
  fi
  rm -f "${TEMPORAL_WORKER_PID_FILE}"
  return 0
}

temporal_stop_server() {
  if temporal_alive; then
    stop_pid temporal "$(temporal_pid)"
  fi
  rm -f "${TEMPORAL_PID_FILE}"
  return 0
}

temporal_start() {
  temporal_launch "$@"
  temporal_wait_ready
  temporal_worker_start
}

temporal_stop() {
  temporal_worker_stop
  temporal_stop_server
}

# Restarts the server on the same ports and database (with `fresh`: an empty one), leaving the
# worker running: it reconnects by itself (its polls back off while the server is away). Waits
# until it polls again; restarts it when it does not within WORKFLOWD_TEMPORAL_RECONNECT_TIMEOUT
# seconds.
temporal_restart() {
  local t0 deadline
  temporal_stop_server
  if [[ "${1:-}" == fresh ]]; then
    rm -f "${TEMPORAL_DB}" "${TEMPORAL_DB}-wal" "${TEMPORAL_DB}-shm"
  fi
  temporal_launch
  temporal_wait_ready
  if ! temporal_worker_alive; then
    temporal_worker_start
    return 0
  fi
  t0="$(now_ms)"
  deadline=$((SECONDS + TEMPORAL_RECONNECT_TIMEOUT))
  until temporal_queue_polled; do
    if ! temporal_worker_alive || [[ ${SECONDS} -ge ${deadline} ]]; then
      log "temporal-worker: not polling again within ${TEMPORAL_RECONNECT_TIMEOUT} s after the restart; restarting it"
      temporal_worker_stop
      temporal_worker_start
      return 0
    fi
    sleep 0.2
  done
  log "temporal-worker: polling again after the restart ($(( $(now_ms) - t0 )) ms)"
}

# --- env file ------------------------------------------------------------------------------------

write_env() {
  [[ -d "${BASE}" ]] || return 0
  local tmp="${ENV_FILE}.tmp.$$" port
  {
    # shellcheck disable=SC2016 # the $(...) is meant literally
    printf '# written by scripts/services.sh; load with: eval "$(scripts/services.sh env)"\n'
    printf 'export WORKFLOWD_SERVICES_DIR=%q\n' "${BASE}"
    port="$(read_file "${PG_PORT_FILE}")"
    if [[ -n "${port}" ]]; then
      printf 'export WORKFLOWD_TEST_PG_DSN=%q\n' "$(pg_dsn "${port}")"
      printf 'export WORKFLOWD_TEST_PG_ADMIN_DSN=%q\n' "postgresql://${PG_SUPERUSER}@${HOST}:${port}/postgres"
      printf 'export WORKFLOWD_TEST_PG_HOST=%q\n' "${HOST}"
      printf 'export WORKFLOWD_TEST_PG_PORT=%q\n' "${port}"
      printf 'export WORKFLOWD_TEST_PG_PID_FILE=%q\n' "${PG_PID_FILE}"
      printf 'export WORKFLOWD_TEST_PG_LOG=%q\n' "$(pg_log)"
    fi
    port="$(read_file "${KAFKA_PORT_FILE}")"
    if [[ -n "${port}" ]]; then
      printf 'export WORKFLOWD_TEST_KAFKA_BROKERS=%q\n' "${HOST}:${port}"
      printf 'export WORKFLOWD_TEST_KAFKA_PORT=%q\n' "${port}"
      printf 'export WORKFLOWD_TEST_KAFKA_PID_FILE=%q\n' "${KAFKA_PID_FILE}"
      printf 'export WORKFLOWD_TEST_KAFKA_LOG=%q\n' "${KAFKA_LOG}"
    fi
    port="$(read_file "${TEMPORAL_PORT_FILE}")"
    if [[ -n "${port}" ]]; then
      printf 'export WORKFLOWD_TEMPORAL_ADDRESS=%q\n' "${HOST}:${port}"
      printf 'export WORKFLOWD_TEMPORAL_NAMESPACE=%q\n' "${TEMPORAL_NAMESPACE}"
      printf 'export WORKFLOWD_TEMPORAL_TASK_QUEUE=%q\n' "${TEMPORAL_TASK_QUEUE}"
      printf 'export WORKFLOWD_TEMPORAL_CLI=%q\n' "${TEMPORAL_BIN}"
      printf 'export WORKFLOWD_TEMPORAL_PID_FILE=%q\n' "${TEMPORAL_PID_FILE}"
      printf 'export WORKFLOWD_TEMPORAL_LOG=%q\n' "${TEMPORAL_LOG}"
      printf 'export WORKFLOWD_TEMPORAL_WORKER_PID_FILE=%q\n' "${TEMPORAL_WORKER_PID_FILE}"
      printf 'export WORKFLOWD_TEMPORAL_WORKER_LOG=%q\n' "${TEMPORAL_WORKER_LOG}"
      printf 'export WORKFLOWD_TEMPORAL_METRICS_ADDRESS=%q\n' \
        "${HOST}:$(read_file "${TEMPORAL_METRICS_PORT_FILE}")"
    fi
  } >"${tmp}"
  mv -f "${tmp}" "${ENV_FILE}"
}

print_env() {
  [[ -f "${ENV_FILE}" ]] || die "no services started in ${BASE}: run scripts/services.sh start"
  cat "${ENV_FILE}"
}

# --- commands ------------------------------------------------------------------------------------

ALL_SERVICES="postgres kafka temporal"

which_services() {
  case "${1:-all}" in
    all) echo "${ALL_SERVICES}" ;;
    postgres|pg|postgresql) echo postgres ;;
    kafka) echo kafka ;;
    temporal) echo temporal ;;
    temporal-worker) echo temporal-worker ;;
    *) die "unknown service '$1' (all, postgres, kafka, temporal or temporal-worker)" ;;
  esac
}

# True when SERVICES (a list from which_services) names SERVICE.
has_service() { [[ " $1 " == *" $2 "* ]]; }

cmd_start() {
  local services t0
  services="$(which_services "${1:-all}")"
  t0="$(now_ms)"
  take_lock
  ensure_base
  # Ports for the services never started here, taken in one go so that no two get the same one.
  local n=0 ports=() pg_port=() k_ports=() t_ports=()
  has_service "${services}" postgres && [[ -z "$(read_file "${PG_PORT_FILE}")" ]] && n=$((n + 1))
  has_service "${services}" kafka && [[ -z "$(read_file "${KAFKA_PORT_FILE}")" ]] && n=$((n + 2))
  has_service "${services}" temporal && [[ -z "$(read_file "${TEMPORAL_PORT_FILE}")" ]] && n=$((n + 3))
  if [[ ${n} -gt 0 ]]; then
    read -r -a ports <<<"$(free_ports "${n}")"
    if has_service "${services}" postgres && [[ -z "$(read_file "${PG_PORT_FILE}")" ]]; then
      pg_port=("${ports[0]}"); ports=("${ports[@]:1}")
    fi
    if has_service "${services}" kafka && [[ -z "$(read_file "${KAFKA_PORT_FILE}")" ]]; then
      k_ports=("${ports[@]:0:2}"); ports=("${ports[@]:2}")
    fi
    if has_service "${services}" temporal && [[ -z "$(read_file "${TEMPORAL_PORT_FILE}")" ]]; then
      t_ports=("${ports[@]:0:3}")
    fi
  fi
  # Launch the broker and the Temporal server first: they boot while PostgreSQL is initialised.
  if has_service "${services}" kafka; then kafka_launch "${k_ports[@]}"; fi
  if has_service "${services}" temporal; then temporal_launch "${t_ports[@]}"; fi
  write_env
  if has_service "${services}" postgres; then
    pg_start "${pg_port[@]}"
    write_env
  fi
  if has_service "${services}" kafka; then kafka_wait_ready; fi
  if has_service "${services}" temporal; then
    temporal_wait_ready
    temporal_worker_start
  fi
  if has_service "${services}" temporal-worker; then
    temporal_alive || die "the Temporal server is not running: scripts/services.sh start temporal"
    temporal_worker_start
  fi
  write_env
  log "started ${services// /+} in $(( $(now_ms) - t0 )) ms; env in ${ENV_FILE}"
  print_env
}

wipe_base() {
  [[ -d "${BASE}" ]] || return 0
  if [[ ! -f "${MARKER}" ]]; then
    log "not deleting ${BASE}: it was not made by services.sh"
    return 0
  fi
  local root
  root="$(pg_root)"
  if [[ -n "${root}" && "${root}" != "${BASE}/postgres" && "${root}" == "${TMPDIR:-/tmp}"/workflowd-pg.* ]]; then
    rm -rf -- "${root}"
  fi
  rm -rf -- "${BASE}/postgres" "${KAFKA_DIR}" "${ENV_FILE}" "${PG_PORT_FILE}" "${PG_PID_FILE}" \
    "${PG_ROOT_FILE}" "${KAFKA_PORT_FILE}" "${KAFKA_CONTROLLER_PORT_FILE}" "${KAFKA_PID_FILE}" \
    "${TEMPORAL_DIR}" "${TEMPORAL_PORT_FILE}" "${TEMPORAL_HTTP_PORT_FILE}" \
    "${TEMPORAL_METRICS_PORT_FILE}" "${TEMPORAL_PID_FILE}" "${TEMPORAL_WORKER_PID_FILE}" \
    "${TEMPORAL_WORKER_ID_FILE}"
  rm -f -- "${MARKER}"
  rmdir -- "${BASE}" 2>/dev/null || log "left ${BASE} in place: it holds files services.sh did not make"
  log "deleted ${BASE}"
}

cmd_stop() {
  local services
  services="$(which_services "${1:-all}")"
  take_lock
  [[ -d "${BASE}" ]] || { log "nothing to stop in ${BASE}"; return 0; }
  if has_service "${services}" temporal; then temporal_stop; fi
  if has_service "${services}" temporal-worker; then temporal_worker_stop; fi
  if has_service "${services}" kafka; then kafka_stop; fi
  if has_service "${services}" postgres; then pg_stop; fi
  if [[ "${services}" == "${ALL_SERVICES}" ]]; then
    if [[ "${WORKFLOWD_KEEP_SERVICES_DATA:-0}" == 1 ]]; then
      log "stopped; data kept in ${BASE} (WORKFLOWD_KEEP_SERVICES_DATA=1)"
    else
      wipe_base
    fi
  else
    log "stopped ${services}; its data and port are kept for the next start"
  fi
  return 0
}

cmd_restart() {
  local service="$1"
  take_lock
  case "${service}" in
    postgres)
      [[ -n "$(read_file "${PG_PORT_FILE}")" ]] || die "postgres was never started in ${BASE}"
      pg_stop
      pg_start
      ;;
    kafka)
      [[ -n "$(read_file "${KAFKA_PORT_FILE}")" ]] || die "kafka was never started in ${BASE}"
      kafka_stop
      kafka_start
      ;;
    temporal)
      [[ -n "$(read_file "${TEMPORAL_PORT_FILE}")" ]] || die "temporal was never started in ${BASE}"
      temporal_restart "${2:-}"
      ;;
    temporal-worker)
      [[ -n "$(read_file "${TEMPORAL_PORT_FILE}")" ]] || die "temporal was never started in ${BASE}"
      temporal_alive || die "the Temporal server is not running: scripts/services.sh start temporal"
      temporal_worker_stop
      temporal_worker_start
      ;;
    *) die "unknown service '${service}' (postgres, kafka, temporal or temporal-worker)" ;;
  esac
  write_env
}

cmd_status() {
  local services rc=0 port
  services="$(which_services "${1:-all}")"
  if has_service "${services}" postgres; then
    port="$(read_file "${PG_PORT_FILE}")"
    if [[ -z "${port}" ]]; then
      echo "postgres: not started"; rc=3
    elif pg_alive && pg_ready; then
      echo "postgres: running  pid $(pg_postmaster_pid)  ${HOST}:${port}  $(pg_dsn "${port}")"
    elif pg_alive; then
      echo "postgres: running but not ready  pid $(pg_postmaster_pid)  ${HOST}:${port}"; rc=3
    else
      echo "postgres: stopped  ${HOST}:${port}  data $(pg_data)"; rc=3
    fi
  fi
  if has_service "${services}" kafka; then
    port="$(read_file "${KAFKA_PORT_FILE}")"
    if [[ -z "${port}" ]]; then
      echo "kafka:    not started"; rc=3
    elif kafka_alive && port_open "${port}"; then
      echo "kafka:    running  pid $(kafka_pid)  ${HOST}:${port}  log ${KAFKA_LOG}"
    elif kafka_alive; then
      echo "kafka:    starting (listener closed)  pid $(kafka_pid)  ${HOST}:${port}"; rc=3
    else
      echo "kafka:    stopped  ${HOST}:${port}  data ${KAFKA_DIR}/data"; rc=3
    fi
  fi
  if has_service "${services}" temporal; then
    port="$(read_file "${TEMPORAL_PORT_FILE}")"
    if [[ -z "${port}" ]]; then
      echo "temporal: not started"; rc=3
    elif temporal_alive && temporal_ready; then
      echo "temporal: running  pid $(temporal_pid)  ${HOST}:${port}  db ${TEMPORAL_DB}  log ${TEMPORAL_LOG}"
    elif temporal_alive; then
      echo "temporal: running but not ready  pid $(temporal_pid)  ${HOST}:${port}"; rc=3
    else
      echo "temporal: stopped  ${HOST}:${port}  db ${TEMPORAL_DB}"; rc=3
    fi
  fi
  if has_service "${services}" temporal || has_service "${services}" temporal-worker; then
    if [[ -z "$(read_file "${TEMPORAL_PORT_FILE}")" ]]; then
      echo "temporal-worker: not started"; rc=3
    elif temporal_worker_alive && temporal_alive && temporal_queue_polled; then
      echo "temporal-worker: running  pid $(temporal_worker_pid)  polling ${TEMPORAL_TASK_QUEUE}  log ${TEMPORAL_WORKER_LOG}"
    elif temporal_worker_alive; then
      echo "temporal-worker: running but not polling  pid $(temporal_worker_pid)  log ${TEMPORAL_WORKER_LOG}"; rc=3
    else
      echo "temporal-worker: stopped  log ${TEMPORAL_WORKER_LOG}"; rc=3
    fi
  fi
  return "${rc}"
}

cmd_kafka_topic() {
  local action="${1:-}"
  [[ -n "${action}" ]] || die "usage: services.sh kafka-topic create NAME [PARTITIONS] | list | describe [NAME] | delete NAME"
  shift
  kafka_check_libs
  [[ -n "$(read_file "${KAFKA_PORT_FILE}")" ]] || die "kafka is not started in ${BASE}: run scripts/services.sh start"
  kafka_alive || die "kafka is not running (pid file ${KAFKA_PID_FILE}): run scripts/services.sh start kafka"
  case "${action}" in
    create)
      local name="${1:-}" partitions="${2:-4}"
      [[ -n "${name}" ]] || die "usage: services.sh kafka-topic create NAME [PARTITIONS]"
      [[ "${partitions}" =~ ^[0-9]+$ && "${partitions}" -ge 1 ]] || die "PARTITIONS must be a positive number, got '${partitions}'"
      kafka_topic_cmd 60 --create --if-not-exists --topic "${name}" --partitions "${partitions}" \
        --replication-factor 1 >/dev/null \
        || die "kafka: could not create topic ${name}"
      log "kafka: topic ${name} ready (${partitions} partitions requested; an existing topic is left as it is)"
      ;;
    list)
      kafka_list_topics || die "kafka: could not list topics"
      ;;
    describe|delete)
      local args=()
      if [[ $# -ge 1 ]]; then args=(--topic "$1"); fi
      [[ "${action}" == describe || ${#args[@]} -gt 0 ]] || die "usage: services.sh kafka-topic delete NAME"
      kafka_topic_cmd 60 "--${action}" "${args[@]}" \
        || die "kafka: topic ${action} failed"
      ;;
    *) die "unknown kafka-topic action '${action}' (create, list, describe, delete)" ;;
  esac
}

# The comment block at the top of this file.
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "${cmd}" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    restart-postgres) cmd_restart postgres ;;
    restart-kafka) cmd_restart kafka ;;
    restart-temporal) cmd_restart temporal ;;
    reset-temporal) cmd_restart temporal fresh ;;
    restart)
      [[ $# -ge 1 && "$1" != all ]] || die "usage: services.sh restart postgres|kafka|temporal|temporal-worker"
      local service
      service="$(which_services "$1")"
      cmd_restart "${service}"
      ;;
    status) cmd_status "$@" ;;
    env) print_env ;;
    kafka-topic) cmd_kafka_topic "$@" ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) log "unknown command '${cmd}'"; usage >&2; exit 2 ;;
  esac
}

main "$@"
