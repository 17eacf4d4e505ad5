#!/usr/bin/env bash
# workflowd benchmark: one command (see docs/benchmarks.md).
#
#   bench/run.sh            full run (~10 min): 1,000,000 events per ingest run, 50,000 lifecycle
#                           executions, 2 x 30 s at a steady 5,000 events/s (20 % and 100 % match),
#                           100,000 definitions
#   bench/run.sh --quick    quick run (< 3 min): 200,000 / 10,000 / 2 x 10 s, 100,000 definitions
#
# Options (after --quick/--full, later ones win):
#   --events N              events per ingest run (0 %, 20 %, 100 % match)
#   --copy-rows N           rows of each COPY ceiling run (default min(events, 300000))
#   --lifecycle-events N    executions in the full-lifecycle run
#   --steady-rate R         events/s of the latency run (default 5000)
#   --steady-seconds S      duration of each latency run
#   --steady-drain S        time the daemon gets to catch up after a latency run (default 20)
#   --steady-warmup S       seconds at the start of a latency run left out of its figures (default 2)
#   --steady-broker-warmup S  seconds of the steady stream run through the broker, unmeasured,
#                           before the latency runs (default 20; a fresh broker is slow at first)
#   --steady-match LIST     match rates of the latency runs, one run each (default 20,100)
#   --large-definitions N   definitions for the matching/RSS runs (default 100000)
#   --tenants N             tenants of the base set (x 2 environments x 5 event names; default 50)
#   --engine-events N       executions of the slow-engine run (default 20000)
#   --engine-latency-ms L   mock latency per call in the slow-engine run (default 50)
#   --engine-slots C        mock calls in flight in the slow-engine run (default 64)
#   --temporal-starts N     workflow starts of the Temporal run, through workflowd and through the
#                           Python SDK's client (default 3000)
#   --temporal-concurrency C  starts in flight in both (default 16)
#   --temporal-poll-min-interval D  providers.temporal.poll_min_interval of workflowd (e.g. 60s)
#   --phases LIST           ceilings,ingest,lifecycle,engine,temporal,steady,match,large (default all)
#   --daemon-set K=V        extra daemon config for the lifecycle runs (e.g. dispatch.batch_size=500)
#   --perf                  record a cpu-clock profile of each daemon run (perf record -g) into the
#                           work folder; `perf report -i FILE` afterwards
#   --no-build              use the binaries already built
#   --keep-services         leave PostgreSQL and Kafka running afterwards (same data next run)
#
# Environment: WORKFLOWD_BENCH_SERVICES_DIR (default /tmp/wfd-bench-svc: its own PostgreSQL and
# Kafka, never the tests' ones), WORKFLOWD_BENCH_BUILD_DIR (default <repo>/build-bench),
# WORKFLOWD_BENCH_JOBS (build parallelism, default 1: the machine is shared).
# Results: <build dir>/bench-results/latest.{json,md} (and a timestamped copy).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${WORKFLOWD_BENCH_BUILD_DIR:-${REPO}/build-bench}"
SERVICES_DIR="${WORKFLOWD_BENCH_SERVICES_DIR:-/tmp/wfd-bench-svc}"
JOBS="${WORKFLOWD_BENCH_JOBS:-1}"
export WORKFLOWD_SERVICES_DIR="${SERVICES_DIR}"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

build=1
keep=0
full=(--events 1000000 --lifecycle-events 50000 --steady-seconds 30 --steady-drain 20 --repeat 2
      --match-seconds 2)
args=("${full[@]}")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) args+=(--events 200000 --copy-rows 100000 --lifecycle-events 10000 --engine-events 5000 --temporal-starts 1000 --steady-seconds 10 --steady-drain 10
                    --steady-broker-warmup 10 --repeat 1 --match-seconds 1 --phase-timeout 60) ;;
    --full) args+=("${full[@]}") ;;
    --no-build) build=0 ;;
    --keep-services) keep=1 ;;
    --perf) args+=(--perf) ;;
    --events|--lifecycle-events|--steady-rate|--steady-seconds|--steady-match|\
    --large-definitions|--tenants|--phases|--daemon-set|--partitions|--repeat|--steady-drain|--steady-warmup|--steady-broker-warmup|--phase-timeout|--copy-rows|\
    --engine-events|--engine-latency-ms|--engine-slots|--temporal-starts|--temporal-concurrency|\
    --temporal-poll-min-interval)
      [[ $# -ge 2 ]] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
      args+=("$1" "$2"); shift ;;
    -h|--help) sed -n '2,39p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

started=$(date +%s)
if [[ ${build} -eq 1 ]]; then
  "${REPO}/scripts/install-deps.sh" >/dev/null
  log "building workflowd (Release) in ${BUILD}"
  cmake -S "${REPO}" -B "${BUILD}" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DWORKFLOWD_BUILD_TESTS=OFF >/dev/null
  cmake --build "${BUILD}" -j"${JOBS}" --target workflowd >/dev/null
  log "building bench tools in ${BUILD}/tools"
  cmake -S "${REPO}/bench" -B "${BUILD}/tools" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "${BUILD}/tools" -j"${JOBS}" >/dev/null
fi
[[ -x "${BUILD}/daemon/workflowd" && -x "${BUILD}/tools/producer" ]] ||
  { echo "run.sh: binaries missing in ${BUILD}; run without --no-build" >&2; exit 1; }

cleanup() {
  if [[ ${keep} -eq 0 ]]; then
    log "stopping services"
    "${REPO}/scripts/services.sh" stop >/dev/null 2>&1 || true
  fi
}
# Set before the start: a service that fails to start must not leave the others running.
trap cleanup EXIT
log "starting PostgreSQL, Kafka and Temporal in ${SERVICES_DIR}"
"${REPO}/scripts/services.sh" start >/dev/null
eval "$("${REPO}/scripts/services.sh" env)"

RESULTS="${BUILD}/bench-results"
WORK="${RESULTS}/work"
rm -rf "${WORK}"
mkdir -p "${WORK}"
stamp=$(date +%Y%m%d-%H%M%S)
log "load average: $(cut -d' ' -f1-3 /proc/loadavg); building took $(( $(date +%s) - started ))s"
python3 "${REPO}/bench/bench.py" --repo "${REPO}" --workflowd "${BUILD}/daemon/workflowd" \
  --tools "${BUILD}/tools" --work "${WORK}" \
  --json-out "${RESULTS}/${stamp}.json" --table-out "${RESULTS}/${stamp}.md" "${args[@]}"
cp "${RESULTS}/${stamp}.json" "${RESULTS}/latest.json"
cp "${RESULTS}/${stamp}.md" "${RESULTS}/latest.md"
log "results: ${RESULTS}/latest.md, ${RESULTS}/latest.json (total $(( $(date +%s) - started ))s)"
