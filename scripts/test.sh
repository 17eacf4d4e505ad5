#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script):
#   1. installs what is missing (scripts/install-deps.sh: Debian packages, Kafka jars, the Temporal
#      CLI, API protos and worker venv);
#   2. checks formatting (clang-format) of the C++ sources;
#   3. builds workflowd and its tests; runs clang-tidy over the project's sources (scripts/tidy.sh);
#      builds the unit and integration tests again with ThreadSanitizer, and the unit tests with
#      AddressSanitizer + UndefinedBehaviorSanitizer;
#   4. starts the real PostgreSQL, Kafka and Temporal dev server (with the step-runner worker) on
#      127.0.0.1 (scripts/services.sh) in a throwaway folder;
#   5. runs every test: unit, integration (real services) and end to end (the built binary); then
#      the unit and integration tests again under ThreadSanitizer (tests/tsan.supp: races inside
#      the uninstrumented librdkafka / libpq only), and the unit tests under ASan + UBSan;
#   6. runs the short fuzzing run (scripts/fuzz.sh --ci: replays the saved reproducers of
#      fuzz/crashes/, then 20 s per libFuzzer target); each target counts as one test;
#   7. stops the services, whatever happened.
# clang-tidy counts as one test (failed on any finding). Prints each stage's counts and duration,
# then ends with one line "N passed, M failed" (the totals) and exits non-zero when anything failed.
#
# Usage: scripts/test.sh [ctest -R regex]
# Environment: WORKFLOWD_BUILD_DIR (default build), WORKFLOWD_TSAN_BUILD_DIR (default build-tsan),
#              WORKFLOWD_ASAN_BUILD_DIR (default build-asan), WORKFLOWD_JOBS (default 2).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_DIR}"
BUILD_DIR="${WORKFLOWD_BUILD_DIR:-build}"
TSAN_DIR="${WORKFLOWD_TSAN_BUILD_DIR:-build-tsan}"
ASAN_DIR="${WORKFLOWD_ASAN_BUILD_DIR:-build-asan}"
JOBS="${WORKFLOWD_JOBS:-2}"
FILTER=()
[[ $# -gt 0 ]] && FILTER=(-R "$1")

# Each step says how long the previous one took; the summary lists them all.
step_name=""
step_started=${SECONDS}
durations=()
end_step() {
  if [[ -n "${step_name}" ]]; then
    local took=$((SECONDS - step_started))
    durations+=("$(printf '%5ss  %s' "${took}" "${step_name}")")
    printf '(%s: %ss)\n' "${step_name}" "${took}"
  fi
  step_name=""
}
step() {
  end_step
  step_name="$*"
  step_started=${SECONDS}
  printf '\n==> %s\n' "$*"
}

step "installing dependencies"
scripts/install-deps.sh

step "checking formatting"
scripts/format.sh --check

step "building (${BUILD_DIR})"
cmake -S . -B "${BUILD_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "${BUILD_DIR}" -j "${JOBS}"

passed=0
failed=0
stage_counts=()
# Adds one stage's counts to the totals and to the summary.
count() {
  local stage="$1" p="$2" f="$3"
  passed=$((passed + p))
  failed=$((failed + f))
  stage_counts+=("${stage}: ${p} passed, ${f} failed")
}

step "clang-tidy (scripts/tidy.sh, ${BUILD_DIR}/compile_commands.json)"
# One test: any finding fails it (the findings are printed above the summary line).
if WORKFLOWD_BUILD_DIR="${BUILD_DIR}" WORKFLOWD_TIDY_JOBS="${JOBS}" scripts/tidy.sh; then
  count clang-tidy 1 0
else
  count clang-tidy 0 1
fi

# The sanitizer builds trade optimisation and full debug information (line tables are enough for
# the reports) for compile time: with ASan + UBSan, -O2 -g took 3 to 5 times as long to compile
# as -O0 -g1 (decoding_test.cpp 93 s against 19 s); TSan keeps -O1, its tests run several times
# slower without optimisation.
step "building the ThreadSanitizer tests: unit and integration (${TSAN_DIR})"
cmake -S . -B "${TSAN_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWORKFLOWD_TSAN=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" >/dev/null
cmake --build "${TSAN_DIR}" -j "${JOBS}" --target workflowd_unit_tests workflowd_integration_tests

step "building the AddressSanitizer + UndefinedBehaviorSanitizer tests: unit (${ASAN_DIR})"
cmake -S . -B "${ASAN_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWORKFLOWD_ASAN=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O0 -g1 -DNDEBUG" >/dev/null
cmake --build "${ASAN_DIR}" -j "${JOBS}" --target workflowd_unit_tests

step "checking deployment artifacts"
scripts/check-deploy.sh

step "starting PostgreSQL, Kafka and Temporal (with its worker)"
cleanup() {
  step "stopping services"
  scripts/services.sh stop || true
}
trap cleanup EXIT
scripts/services.sh start >/dev/null
eval "$(scripts/services.sh env)"
echo "PostgreSQL: ${WORKFLOWD_TEST_PG_DSN//:workflowd@/:***@}"
echo "Kafka:      ${WORKFLOWD_TEST_KAFKA_BROKERS}"

# Runs ctest in a build dir and counts its results as stage `stage`.
run_ctest() {
  local stage="$1" dir="$2"
  shift 2
  local log
  log="$(mktemp)"
  set +e
  ctest --test-dir "${dir}" --output-on-failure --timeout 600 "$@" 2>&1 | tee "${log}"
  set -e
  local line total nfail
  line="$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "${log}" | tail -1 || true)"
  if [[ -z "${line}" ]] && grep -q 'No tests were found' "${log}" && [[ ${#FILTER[@]} -gt 0 ]]; then
    count "${stage}" 0 0  # the regex given matches no test of this build
  elif [[ -z "${line}" ]]; then
    echo "ctest in ${dir} printed no summary" >&2
    count "${stage}" 0 1
  else
    nfail="$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"${line}")"
    total="$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"${line}")"
    count "${stage}" $((total - nfail)) "${nfail}"
  fi
  rm -f "${log}"
}

step "running unit, integration and end-to-end tests"
run_ctest tests "${BUILD_DIR}" -j "${JOBS}" "${FILTER[@]}"

# A report fails its test (exit code 66 for TSan) instead of scrolling past; suppressions are for
# the uninstrumented libraries only (each says why in tests/tsan.supp).
step "running the unit and integration tests under ThreadSanitizer"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=${REPO_DIR}/tests/tsan.supp" \
  run_ctest tsan "${TSAN_DIR}" -j "${JOBS}" -L 'unit|integration' "${FILTER[@]}"

step "running the unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
ASAN_OPTIONS="detect_leaks=1 check_initialization_order=1 strict_init_order=1" \
  UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1" \
  run_ctest asan "${ASAN_DIR}" -j "${JOBS}" -L unit "${FILTER[@]}"

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
count fuzz "${fuzz_passed}" "${fuzz_failed}"
rm -f "${fuzz_log}"

# Stopped here rather than by the trap, so that nothing is printed after the totals.
trap - EXIT
cleanup
end_step

echo
echo "durations:"
printf '%s\n' "${durations[@]}"
echo
printf '%s\n' "${stage_counts[@]}"
echo "${passed} passed, ${failed} failed"
[[ ${failed} -eq 0 ]]
