#!/usr/bin/env bash
# The workflowd demo, on the real thing: installs what is missing, builds the daemon, starts the
# real PostgreSQL and Kafka on 127.0.0.1, migrates, applies the example workflow definitions, runs
# `workflowd run` with examples/workflowd.yaml, produces example events to the real broker
# (structured CloudEvents, binary-mode CloudEvents, a flat envelope, events that match nothing, a
# bad record and a redelivered event), waits for the daemon to record them, and prints the
# execution rows, the dead letter with its reason headers, metrics and health. Then it stops the
# daemon with SIGTERM and stops the services.
#
# Usage: scripts/demo.sh
# Environment:
#   WORKFLOWD_BUILD_DIR      build folder (default build; the same as scripts/test.sh)
#   WORKFLOWD_JOBS           parallel build jobs (default 2)
#   WORKFLOWD_SERVICES_DIR   the services' throwaway folder (default .services, see services.sh)
#   WORKFLOWD_DEMO_KEEP=1    leave the services running at the end to explore (the demo never
#                            stops services that were already running when it started)
#   WORKFLOWD_DEMO_TIMEOUT   seconds to wait for each step of the daemon (default 90)
#
# Running it again is fine: services that run are reused, definitions are applied again
# ("unchanged"), and re-produced events are recognised as duplicates (no new execution rows).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_DIR}"
BUILD_DIR="${WORKFLOWD_BUILD_DIR:-build}"
JOBS="${WORKFLOWD_JOBS:-2}"
TIMEOUT="${WORKFLOWD_DEMO_TIMEOUT:-90}"
KAFKA_LIBS="${WORKFLOWD_KAFKA_LIBS:-${REPO_DIR}/.cache/kafka/libs}"
EXAMPLES="examples"  # relative to REPO_DIR, so that the output shows short paths
CONFIG="${REPO_DIR}/${EXAMPLES}/workflowd.yaml"
WORKFLOWD="${BUILD_DIR}/daemon/workflowd"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/workflowd-demo.XXXXXX")"
DAEMON_LOG="${WORK_DIR}/workflowd.log"
START_SECONDS=${SECONDS}

daemon_pid=""
admin=""
services_started_here=0
succeeded=0

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
fail() {
  printf '\ndemo: FAILED: %s\n' "$*" >&2
  if [[ -s "${DAEMON_LOG}" ]]; then
    printf 'demo: last lines of the daemon log (%s):\n' "${DAEMON_LOG}" >&2
    tail -n 30 "${DAEMON_LOG}" | sed 's/^/    /' >&2
  fi
  exit 1
}

cleanup() {
  local code=$?
  if [[ -n "${daemon_pid}" ]] && kill -0 "${daemon_pid}" 2>/dev/null; then
    kill -TERM "${daemon_pid}" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "${daemon_pid}" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "${daemon_pid}" 2>/dev/null || true
    wait "${daemon_pid}" 2>/dev/null || true
  fi
  if [[ ${services_started_here} == 1 && "${WORKFLOWD_DEMO_KEEP:-0}" != 1 ]]; then
    step "stopping PostgreSQL and Kafka"
    scripts/services.sh stop >/dev/null 2>&1 || true
  fi
  if [[ ${succeeded} == 1 ]]; then
    rm -rf "${WORK_DIR}"
  elif [[ ${code} -ne 0 ]]; then
    printf 'demo: files kept in %s\n' "${WORK_DIR}" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every 0.5 s until it succeeds; fails the demo
# naming WHAT after SECONDS, or at once when the daemon has died.
wait_until() {
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "${daemon_pid}" ]] && ! kill -0 "${daemon_pid}" 2>/dev/null; then
      fail "the daemon exited while waiting for ${what}"
    fi
    [[ ${SECONDS} -lt ${deadline} ]] || fail "timed out after ${seconds}s waiting for ${what}"
    sleep 0.5
  done
}

# http_get PATH: prints the admin endpoint's response body; fails unless the status is 200.
http_get() {
  python3 - "http://${admin}$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode())
    sys.exit(1)
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(2)
PY
}

# metric_sum NAME: the sum of a metric's samples (all label values) from /metrics.
metric_sum() {
  http_get /metrics | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }'
}

# Short-lived Kafka command line tools from the cached broker jars: small heap, quick start.
kafka_tool() {
  timeout --kill-after=5 60 java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    "-Dlog4j.configuration=file:${REPO_DIR}/scripts/kafka/tools-log4j.properties" \
    -cp "${KAFKA_LIBS}/*" "$@"
}

# Prints one kafka.tools.ConsoleProducer line (headers TAB key TAB value) for an example event:
# the value is the file's JSON made compact; headers come from a NAME.headers file beside it
# ("name: value" lines) plus x-producer.
producer_line() {
  python3 - "$1" <<'PY'
import json, os, sys
path = sys.argv[1]
stem = os.path.basename(path).split(".")[0]
headers = [("x-producer", "workflowd-demo")]
headers_file = path[: -len(".json")] + ".headers"
if os.path.exists(headers_file):
    for line in open(headers_file, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
for name, value in headers:
    assert "," not in value and "\t" not in value, f"{path}: header {name} has , or TAB"
value = json.dumps(json.load(open(path, encoding="utf-8")), ensure_ascii=False, separators=(",", ":"))
print(",".join(f"{n}:{v}" for n, v in headers) + "\t" + stem + "\t" + value)
PY
}

# --- 1. build ------------------------------------------------------------------------------------
step "installing dependencies (fast when everything is present)"
deps_args=()
# The demo needs no Go toolchain (only the deployment checks do): skip it where the script knows how.
if scripts/install-deps.sh --help 2>/dev/null | grep -q -- '--no-go'; then deps_args+=(--no-go); fi
scripts/install-deps.sh "${deps_args[@]}" | tail -n 1

step "building workflowd (${BUILD_DIR})"
cmake -S . -B "${BUILD_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "${BUILD_DIR}" -j "${JOBS}" --target workflowd | tail -n 1
"${WORKFLOWD}" version

# --- 2. services, schema, topics -----------------------------------------------------------------
step "starting PostgreSQL and Kafka on 127.0.0.1"
if scripts/services.sh status >/dev/null 2>&1; then
  note "already running: reusing them (and leaving them running)"
else
  services_started_here=1
  scripts/services.sh start >/dev/null
fi
eval "$(scripts/services.sh env)"

# examples/workflowd.yaml describes a production deployment, except that it turns the mock engine
# on (providers.mock.enabled: true; off by default) for the example definitions (provider: mock);
# the environment points it at the local services (every setting section.key can be overridden by
# WORKFLOWD_SECTION_KEY). `definitions validate` reads it too (WORKFLOWD_CONFIG).
export WORKFLOWD_CONFIG="${CONFIG}"
export WORKFLOWD_DATABASE_URL="${WORKFLOWD_TEST_PG_DSN}"
export WORKFLOWD_KAFKA_BROKERS="${WORKFLOWD_TEST_KAFKA_BROKERS}"
export WORKFLOWD_KAFKA_GROUP_ID="workflowd-demo"
export WORKFLOWD_ADMIN_LISTEN="127.0.0.1:0"
export WORKFLOWD_LOG_FORMAT="text"
export WORKFLOWD_SHUTDOWN_TIMEOUT="20s"

step "workflowd config  (examples/workflowd.yaml + WORKFLOWD_* overrides; secrets masked)"
effective="$("${WORKFLOWD}" config)" || fail "workflowd config rejected the configuration"
awk '/^[a-z_]+:$/ { section = substr($1, 1, length($1) - 1); next }
     /^  [a-z_]+:/ { key = section "." substr($1, 1, length($1) - 1)
                     if (key ~ /^(database\.url|kafka\.(brokers|group_id|topics|dlq_topic|format)|admin\.listen|log\.format)$/)
                       printf "    %-17s %s\n", key, substr($0, length($1) + 4) }' <<<"${effective}"
TOPIC="$(awk '/^  topics:/ { gsub(/[][,]/, ""); print $2; exit }' <<<"${effective}")"
DLQ_TOPIC="$(awk '/^  dlq_topic:/ { print $2; exit }' <<<"${effective}")"
[[ -n "${TOPIC}" && -n "${DLQ_TOPIC}" ]] || fail "could not read the topics from workflowd config"

step "workflowd migrate"
"${WORKFLOWD}" migrate 2>&1 | sed 's/^[^ ]* [^ ]* //'

step "creating the topics ${TOPIC} (3 partitions) and ${DLQ_TOPIC}"
scripts/services.sh kafka-topic create "${TOPIC}" 3 2>&1 | sed 's/^services: kafka: /    /'
scripts/services.sh kafka-topic create "${DLQ_TOPIC}" 1 2>&1 | sed 's/^services: kafka: /    /'

# --- 3. definitions ------------------------------------------------------------------------------
step "workflowd definitions validate examples/definitions/*.yaml"
"${WORKFLOWD}" definitions validate "${EXAMPLES}"/definitions/*.yaml

step "workflowd definitions apply examples/definitions/*.yaml  (twice: the second changes nothing)"
"${WORKFLOWD}" definitions apply --actor demo "${EXAMPLES}"/definitions/*.yaml
"${WORKFLOWD}" definitions apply --actor demo "${EXAMPLES}"/definitions/*.yaml

# --- 4. the daemon -------------------------------------------------------------------------------
step "workflowd run  (in the background; log: ${DAEMON_LOG})"
"${WORKFLOWD}" run >"${DAEMON_LOG}" 2>&1 &
daemon_pid=$!
wait_until 60 "the admin endpoint" grep -q 'admin endpoint listening on' "${DAEMON_LOG}"
admin="$(sed -n 's/.*admin endpoint listening on \([0-9.]*:[0-9]*\).*/\1/p' "${DAEMON_LOG}" | head -n 1)"
[[ -n "${admin}" ]] || fail "could not find the admin port in the daemon log"
wait_until "${TIMEOUT}" "/readyz to answer 200" http_get /readyz
sed 's/^[^ ]* /    /' "${DAEMON_LOG}"
note "admin endpoint: http://${admin}  (/metrics /healthz /readyz)"

# What this run of the daemon has already accounted for (non-zero when the demo runs again while
# the services were kept and an earlier run left something unconsumed).
outcomes() {
  echo $(($(metric_sum workflowd_events_matched_total) + $(metric_sum workflowd_events_unmatched_total) +
    $(metric_sum workflowd_events_dead_lettered_total)))
}
before="$(outcomes)"
outcomes_at_least() { [[ "$(outcomes)" -ge "$1" ]]; }

# --- 5. events -----------------------------------------------------------------------------------
step "producing 7 records to ${TOPIC} with Kafka's console producer"
EVENTS=(
  "01-customer-created.cloudevents.json|CloudEvents structured|acme/prod US gold: matches 2 definitions"
  "02-invoice-paid.binary.json|CloudEvents binary (ce_ headers)|acme/staging invoice 42.50 EUR: 1 match"
  "03-subscription-activated.flat.json|flat envelope|globex/prod pro-annual plan: 1 match"
  "04-customer-created-no-match.cloudevents.json|CloudEvents structured|acme/prod FR silver: no match"
  "05-customer-created-other-environment.cloudevents.json|CloudEvents structured|acme/staging has no such definition: no match"
  "06-missing-tenant.cloudevents.json|CloudEvents structured|no tenantid: dead letter"
  "01-customer-created.cloudevents.json|CloudEvents structured|the first event again (same id): nothing doubled"
)
lines="${WORK_DIR}/records.txt"
: >"${lines}"
printf '    %-56s %-34s %s\n' "file (examples/events/)" "format" "expected"
for e in "${EVENTS[@]}"; do
  IFS='|' read -r file format expected <<<"${e}"
  producer_line "${EXAMPLES}/events/${file}" >>"${lines}"
  printf '    %-56s %-34s %s\n' "${file}" "${format}" "${expected}"
done
kafka_tool kafka.tools.ConsoleProducer --bootstrap-server "${WORKFLOWD_KAFKA_BROKERS}" \
  --topic "${TOPIC}" --producer-property acks=all \
  --property parse.headers=true --property parse.key=true <"${lines}" ||
  fail "the console producer failed"

wait_until "${TIMEOUT}" "the daemon to record the outcome of all 7 records" \
  outcomes_at_least $((before + ${#EVENTS[@]}))

# --- 6. what happened ----------------------------------------------------------------------------
step "execution rows in PostgreSQL (workflow_executions)"
psql "${WORKFLOWD_DATABASE_URL}" -X -q -P pager=off -c "
  SELECT tenant_id AS tenant, environment_id AS environment, workflow_id AS definition,
         definition_version AS v, trigger_event_id AS event_id, status,
         to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.MS') AS created_at
  FROM workflow_executions ORDER BY created_at, workflow_id"
expected_rows="acme-customer-onboarding:evt-acme-0001 acme-vip-welcome:evt-acme-0001
  acme-invoice-paid-followup:evt-acme-0002 globex-subscription-activated:900123"
found="$(psql "${WORKFLOWD_DATABASE_URL}" -X -qAt -c "
  SELECT workflow_id || ':' || trigger_event_id FROM workflow_executions
  WHERE trigger_event_id IN ('evt-acme-0001','evt-acme-0002','evt-acme-0004','evt-acme-0005',
                             'evt-unknown-0006','900123')")"
for row in ${expected_rows}; do
  grep -qx "${row}" <<<"${found}" || fail "execution ${row} is missing"
done
[[ "$(wc -l <<<"${found}")" -eq 4 ]] || fail "expected exactly 4 execution rows, found: ${found}"
note "4 rows: one per (definition, event); the redelivered event added none."

step "executions run on the mock provider until a terminal state (dispatcher + poller)"
terminal_count() {
  psql "${WORKFLOWD_DATABASE_URL}" -X -qAt -c "
    SELECT count(*) FROM workflow_executions
    WHERE trigger_event_id IN ('evt-acme-0001','evt-acme-0002','900123')
      AND status IN ('succeeded','failed','timed_out','cancelled')"
}
terminal_at_least() { [[ "$(terminal_count)" -ge "$1" ]]; }
wait_until "${TIMEOUT}" "the 4 executions to reach a terminal state" terminal_at_least 4
psql "${WORKFLOWD_DATABASE_URL}" -X -q -P pager=off -c "
  SELECT e.workflow_id AS definition, e.trigger_event_id AS event_id, e.status,
         e.provider_execution_id AS provider_execution,
         round(extract(epoch from e.completed_at - e.created_at)::numeric, 3) AS seconds,
         string_agg(s.step_id || '=' || s.status, ', ' ORDER BY s.started_at NULLS LAST, s.step_id)
           AS steps
  FROM workflow_executions e LEFT JOIN step_executions s ON s.execution_id = e.id
  WHERE e.trigger_event_id IN ('evt-acme-0001','evt-acme-0002','900123')
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1"

step "the trigger event stored with the binary-mode event's execution (trigger_event)"
psql "${WORKFLOWD_DATABASE_URL}" -X -qAt -c "
  SELECT jsonb_pretty(trigger_event)
  FROM workflow_executions WHERE workflow_id = 'acme-invoice-paid-followup'
  ORDER BY created_at LIMIT 1" | sed 's/^/    /'

step "the dead letter on ${DLQ_TOPIC} (original key and value plus workflowd_dlq_* headers)"
dead="$(kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer \
  --bootstrap-server "${WORKFLOWD_KAFKA_BROKERS}" --topic "${DLQ_TOPIC}" --from-beginning \
  --max-messages 1 --timeout-ms 30000 --property print.headers=true --property print.key=true \
  2>/dev/null)" || fail "could not read the dead-letter topic"
IFS=$'\t' read -r dead_headers dead_key dead_value <<<"${dead}"
note "key:   ${dead_key}"
note "value: ${dead_value:0:100}..."
tr ',' '\n' <<<"${dead_headers}" | grep '^workflowd_' | sed 's/^/    header /'
grep -q 'workflowd_dlq_reason:missing_tenant' <<<"${dead_headers}" ||
  fail "the dead letter does not carry workflowd_dlq_reason:missing_tenant"

step "metrics (GET /metrics, non-zero samples of the event pipeline)"
http_get /metrics | grep -E '^workflowd_(events_|executions_|definitions_loaded|consumer_lag|consumer_paused|batch_duration_seconds_count)' |
  awk '$NF != 0 || /^workflowd_consumer_(lag|paused)/' | sed 's/^/    /'

step "health"
note "GET /healthz -> $(http_get /healthz)"
note "GET /readyz  -> $(http_get /readyz)"

# --- 7. shutdown ---------------------------------------------------------------------------------
step "stopping workflowd with SIGTERM"
kill -TERM "${daemon_pid}"
stopped=0
for _ in $(seq 1 150); do
  if ! kill -0 "${daemon_pid}" 2>/dev/null; then stopped=1; break; fi
  sleep 0.2
done
[[ ${stopped} == 1 ]] || fail "workflowd did not stop within 30s of SIGTERM"
set +e
wait "${daemon_pid}"
status=$?
set -e
daemon_pid=""
grep -E 'SIGTERM|stopped' "${DAEMON_LOG}" | sed 's/^[^ ]* /    /'
[[ ${status} -eq 0 ]] || fail "workflowd exited with status ${status}"
note "workflowd exited with status 0"

if [[ ${services_started_here} == 1 && "${WORKFLOWD_DEMO_KEEP:-0}" == 1 ]]; then
  step "services left running; explore, then stop them with: scripts/services.sh stop"
  note "psql ${WORKFLOWD_DATABASE_URL}"
  note "WORKFLOWD_CONFIG=${CONFIG} WORKFLOWD_DATABASE_URL=... WORKFLOWD_KAFKA_BROKERS=${WORKFLOWD_KAFKA_BROKERS} ${WORKFLOWD} run"
fi
succeeded=1
step "demo finished in $((SECONDS - START_SECONDS))s"
