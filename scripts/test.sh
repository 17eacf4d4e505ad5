#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script):
#   1. installs what is missing (scripts/install-deps.sh: Debian packages, Kafka jars);
#   2. checks formatting (clang-format) of the C++ sources;
#   3. builds workflowd and its tests, and a ThreadSanitizer build of the concurrency-heavy tests;
#   4. starts the real PostgreSQL and Kafka on 127.0.0.1 (scripts/services.sh) in a throwaway folder;
#   5. runs every test: unit, integration (real services) and end to end (the built binary), then
#      the unit tests again under ThreadSanitizer;
#   6. runs the short fuzzing run (scripts/fuzz.sh --ci: replays the saved reproducers of
#      fuzz/crashes/, then 20 s per libFuzzer target); each target counts as one test;
#   7. stops the services, whatever happened.
# Ends with one line "N passed, M failed" and exits non-zero when anything failed.
#
# Usage: scripts/test.sh [ctest -R regex]
# Environment: WORKFLOWD_BUILD_DIR (default build), WORKFLOWD_TSAN_BUILD_DIR (default build-tsan),
#              WORKFLOWD_JOBS (default 2).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_DIR}"
BUILD_DIR="${WORKFLOWD_BUILD_DIR:-build}"
TSAN_DIR="${WORKFLOWD_TSAN_BUILD_DIR:-build-tsan}"
JOBS="${WORKFLOWD_JOBS:-2}"
FILTER=()
[[ $# -gt 0 ]] && FILTER=(-R "$1")

step() { printf '\n==> %s\n' "$*"; }

step "installing dependencies"
scripts/install-deps.sh

step "checking formatting"
scripts/format.sh --check

step "building (${BUILD_DIR})"
cmake -S . -B "${BUILD_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "${BUILD_DIR}" -j "${JOBS}"

step "building the ThreadSanitizer tests (${TSAN_DIR})"
cmake -S . -B "${TSAN_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWORKFLOWD_TSAN=ON >/dev/null
cmake --build "${TSAN_DIR}" -j "${JOBS}" --target common_test providers_test

step "checking deployment artifacts"
scripts/check-deploy.sh

step "starting PostgreSQL and Kafka"
cleanup() {
  step "stopping services"
  scripts/services.sh stop || true
}
trap cleanup EXIT
scripts/services.sh start >/dev/null
eval "$(scripts/services.sh env)"
echo "PostgreSQL: ${WORKFLOWD_TEST_PG_DSN//:workflowd@/:***@}"
echo "Kafka:      ${WORKFLOWD_TEST_KAFKA_BROKERS}"

passed=0
failed=0
# Runs ctest in a build dir and adds its counts to the totals.
run_ctest() {
  local dir="$1"
  shift
  local log
  log="$(mktemp)"
  set +e
  ctest --test-dir "${dir}" --output-on-failure --timeout 600 "$@" 2>&1 | tee "${log}"
  set -e
  local line total nfail
  line="$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "${log}" | tail -1 || true)"
  if [[ -z "${line}" ]]; then
    echo "ctest in ${dir} printed no summary" >&2
    failed=$((failed + 1))
  else
    nfail="$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"${line}")"
    total="$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"${line}")"
    passed=$((passed + total - nfail))
    failed=$((failed + nfail))
  fi
  rm -f "${log}"
}

step "running unit, integration and end-to-end tests"
run_ctest "${BUILD_DIR}" -j "${JOBS}" "${FILTER[@]}"

step "running the unit tests under ThreadSanitizer"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" run_ctest "${TSAN_DIR}" -L unit "${FILTER[@]}"

step "fuzzing (short run)"
# scripts/fuzz.sh prints one line "fuzz: <target>: passed|FAILED ..." per target.
fuzz_log="$(mktemp)"
set +e
scripts/fuzz.sh --ci 2>&1 | tee "${fuzz_log}"
fuzz_rc=${PIPESTATUS[0]}
set -e
fuzz_passed="$(grep -cE '^fuzz: [a-z_]+: passed' "${fuzz_log}" || true)"
fuzz_failed="$(grep -cE '^fuzz: [a-z_]+: FAILED' "${fuzz_log}" || true)"
# A failure before any target ran (clang missing, bad arguments) still counts.
if [[ ${fuzz_rc} -ne 0 && ${fuzz_failed} -eq 0 ]]; then fuzz_failed=1; fi
passed=$((passed + fuzz_passed))
failed=$((failed + fuzz_failed))
rm -f "${fuzz_log}"

echo
echo "${passed} passed, ${failed} failed"
[[ ${failed} -eq 0 ]]
