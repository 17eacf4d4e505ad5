#!/usr/bin/env bash
# The workflowd demo: installs what is missing, builds the daemon, starts the real PostgreSQL and
# Kafka on 127.0.0.1, applies the schema, runs the daemon, and shows what it did.
#
# Today the daemon is a skeleton: it checks its database and waits for a signal. The event
# pipeline (Kafka events -> execution rows) and the execution lifecycle land in the next issues, and
# this demo grows with them.
#
# Usage: scripts/demo.sh            (services are stopped at the end)
#        WORKFLOWD_DEMO_KEEP=1 scripts/demo.sh   (leave them running to explore)
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_DIR}"
BUILD_DIR="${WORKFLOWD_BUILD_DIR:-build}"

step() { printf '\n==> %s\n' "$*"; }

step "installing dependencies"
scripts/install-deps.sh

step "building workflowd"
cmake -S . -B "${BUILD_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "${BUILD_DIR}" -j "${WORKFLOWD_JOBS:-2}" --target workflowd
WORKFLOWD="${BUILD_DIR}/daemon/workflowd"
"${WORKFLOWD}" version

step "starting PostgreSQL and Kafka on 127.0.0.1"
if [[ "${WORKFLOWD_DEMO_KEEP:-0}" != 1 ]]; then
  trap 'step "stopping services"; scripts/services.sh stop || true' EXIT
fi
scripts/services.sh start >/dev/null
eval "$(scripts/services.sh env)"
export WORKFLOWD_DATABASE_URL="${WORKFLOWD_TEST_PG_DSN}"
echo "PostgreSQL: ${WORKFLOWD_DATABASE_URL//:workflowd@/:***@}"
echo "Kafka:      ${WORKFLOWD_TEST_KAFKA_BROKERS}"

step "workflowd migrate (twice: the second run changes nothing)"
"${WORKFLOWD}" migrate
"${WORKFLOWD}" migrate

step "the schema"
psql "${WORKFLOWD_DATABASE_URL}" -X -q -c '\dt' -c \
  'SELECT version, name, applied_at FROM schema_migrations ORDER BY version'

step "workflowd run (3 seconds, then SIGTERM)"
"${WORKFLOWD}" run &
pid=$!
sleep 3
kill -TERM "${pid}"
wait "${pid}" && echo "workflowd exited cleanly (status 0)"

if [[ "${WORKFLOWD_DEMO_KEEP:-0}" == 1 ]]; then
  step "services left running; stop them with: scripts/services.sh stop"
  scripts/services.sh env
fi
