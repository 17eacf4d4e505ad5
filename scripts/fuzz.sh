#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, AddressSanitizer + UndefinedBehaviorSanitizer) in
# their own build folder and runs each for a bounded time:
#   decode_record_fuzzer  decoding::DecodeRecord on arbitrary Kafka records
#   condition_fuzzer      compiling, evaluating and explaining conditions
#   definition_fuzzer     loading and validating definition files (JSON / YAML)
# Each target's header comment (fuzz/<target>.cpp) says how it frames its input and what it checks.
#
# Before fuzzing, every saved reproducer fuzz/crashes/<target>-<name> is replayed: a bug found once
# stays a regression test. Then each target runs from a COPY of its committed seed corpus
# (fuzz/corpus/<target>/) with its dictionary (fuzz/dict/<target>.dict); the repository is never
# written to. Any crash, leak, timeout, out-of-memory or sanitizer report fails the target; the
# script prints the target, the reproducer's path and the end of libFuzzer's log, and exits 1.
# One line per target "fuzz: <target>: passed|FAILED ..." (scripts/test.sh counts those).
#
# Usage: scripts/fuzz.sh [--ci] [--minutes N | --seconds N] [--target NAME]... [--keep-going]
#                        [--no-build]
#   --ci          the short run of the test suite: 20 s per target, corpus copy in a temporary
#                 folder that is removed afterwards
#   --minutes N   fuzz N minutes per target (default without --ci: 5); --seconds N likewise
#   --target NAME only this target (repeatable; "decode_record" or "decode_record_fuzzer")
#   --keep-going  do not stop at the first crash of a target (libFuzzer's -fork=1
#                 -ignore_crashes=1), and fuzz a target even when a saved reproducer of it still
#                 fails: collects every finding of a long run
#   --no-build    use the targets already built
# Outside --ci the grown corpus is kept in <build>/corpus/<target>/ and reused by the next run;
# to fold new inputs into the committed seeds, minimize them first:
#   build-fuzz/<target>_fuzzer -merge=1 fuzz/corpus/<target> build-fuzz/corpus/<target>
# Reproducers of failures are copied to <build>/artifacts/. Replay one with
#   build-fuzz/<target>_fuzzer <file>
# Environment: WORKFLOWD_FUZZ_BUILD_DIR (default build-fuzz), WORKFLOWD_FUZZ_JOBS (default 1: the
# machine is shared), WORKFLOWD_FUZZ_CC / WORKFLOWD_FUZZ_CXX (default clang-14 / clang++-14, else
# clang / clang++). Needs clang and libFuzzer's runtime (scripts/install-deps.sh installs them).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_DIR}"
BUILD_DIR="${WORKFLOWD_FUZZ_BUILD_DIR:-build-fuzz}"
JOBS="${WORKFLOWD_FUZZ_JOBS:-1}"
ALL_TARGETS=(decode_record condition definition)

log() { printf 'fuzz: %s\n' "$*"; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 2; }

ci=0
seconds=""
keep_going=0
build=1
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ci) ci=1 ;;
    --minutes) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--minutes needs a number"
      seconds=$(( $2 * 60 )); shift ;;
    --seconds) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--seconds needs a number"
      seconds="$2"; shift ;;
    --target) [[ $# -ge 2 ]] || die "--target needs a name"
      targets+=("${2%_fuzzer}"); shift ;;
    --keep-going) keep_going=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done
if [[ -z "${seconds}" ]]; then
  if [[ ${ci} -eq 1 ]]; then seconds=20; else seconds=300; fi
fi
[[ ${seconds} -ge 1 ]] || die "the run time must be at least one second"
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ -f "fuzz/${t}_fuzzer.cpp" ]] || die "unknown target '${t}' (known: ${ALL_TARGETS[*]})"
done

# Per-target limits: inputs larger than real ones only slow the search down.
max_len_of() {
  case "$1" in
    definition) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

# --- build -----------------------------------------------------------------------------------------
pick() {
  local c
  for c in "$@"; do
    if command -v "${c}" >/dev/null 2>&1; then printf '%s' "${c}"; return; fi
  done
}
if [[ ${build} -eq 1 ]]; then
  CC_BIN="${WORKFLOWD_FUZZ_CC:-$(pick clang-14 clang)}"
  CXX_BIN="${WORKFLOWD_FUZZ_CXX:-$(pick clang++-14 clang++)}"
  [[ -n "${CC_BIN}" && -n "${CXX_BIN}" ]] \
    || die "clang not found (scripts/install-deps.sh installs clang-14 and libclang-rt-14-dev)"
  runtime="$("${CXX_BIN}" -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)"
  if [[ "$(uname -m)" == "x86_64" && ! -f "${runtime}" ]]; then
    die "libFuzzer's runtime is missing for ${CXX_BIN} (Debian: libclang-rt-14-dev)"
  fi
  build_start=${SECONDS}
  if [[ ! -f "${BUILD_DIR}/build.ninja" ]]; then
    log "configuring ${BUILD_DIR} with ${CXX_BIN}"
    CC="${CC_BIN}" CXX="${CXX_BIN}" cmake -S fuzz -B "${BUILD_DIR}" -G Ninja >/dev/null
  fi
  log "building the fuzz targets in ${BUILD_DIR} (-j${JOBS})"
  build_targets=()
  for t in "${targets[@]}"; do build_targets+=("${t}_fuzzer"); done
  if ! cmake --build "${BUILD_DIR}" -j "${JOBS}" --target "${build_targets[@]}"; then
    for t in "${targets[@]}"; do log "${t}: FAILED (the build failed)"; done
    exit 1
  fi
  log "built in $((SECONDS - build_start)) s"
fi
for t in "${targets[@]}"; do
  [[ -x "${BUILD_DIR}/${t}_fuzzer" ]] || die "${BUILD_DIR}/${t}_fuzzer is not built"
done

# --- run -------------------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/workflowd-fuzz.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
mkdir -p "${BUILD_DIR}/artifacts" "${BUILD_DIR}/logs"

# Sanitizer findings must end the process with a report libFuzzer recognizes. ASan records one
# frame per allocation (malloc_context_size=1): on an out-of-memory finding libFuzzer prints a heap
# profile grouped by allocation stack, which takes many minutes with full stacks and millions of
# live chunks. Replay a reproducer with ASAN_OPTIONS=malloc_context_size=30 to see where the
# memory of a heap or leak report was allocated.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" ]]; then
  symbolizer="$(pick llvm-symbolizer-14 llvm-symbolizer)"
  if [[ -n "${symbolizer}" ]]; then
    ASAN_SYMBOLIZER_PATH="$(command -v "${symbolizer}")"
    export ASAN_SYMBOLIZER_PATH
  fi
fi

passed=0
failed=0
failed_targets=()

# Prints the end of a libFuzzer log: the report and the stack.
show_log() {
  echo "----- $1 (last 60 lines) -----"
  tail -n 60 "$1"
  echo "-----"
}

# Replays the saved reproducers of a target; returns non-zero when one still fails.
replay_crashes() {
  local t="$1" bin="$2" file rc=0 log
  shopt -s nullglob
  local files=(fuzz/crashes/"${t}"-*)
  shopt -u nullglob
  [[ ${#files[@]} -gt 0 ]] || return 0
  for file in "${files[@]}"; do
    log="${BUILD_DIR}/logs/${t}-replay-$(basename "${file}").log"
    if timeout -k 10 120 "${bin}" -rss_limit_mb=2048 -timeout=30 "${file}" >"${log}" 2>&1; then
      log "${t}: reproducer ${file} passes now (fixed; keep it as a regression input)"
    else
      log "${t}: reproducer ${file} still fails"
      show_log "${log}"
      rc=1
    fi
  done
  return ${rc}
}

for t in "${targets[@]}"; do
  bin="${BUILD_DIR}/${t}_fuzzer"
  replay_failed=0
  replay_crashes "${t}" "${bin}" || replay_failed=1
  if [[ ${replay_failed} -eq 1 && ${keep_going} -eq 0 ]]; then
    log "${t}: FAILED (a saved reproducer in fuzz/crashes/ still fails)"
    failed=$((failed + 1))
    failed_targets+=("${t}")
    continue
  fi

  if [[ ${ci} -eq 1 ]]; then
    corpus="${work}/corpus/${t}"
  else
    corpus="${BUILD_DIR}/corpus/${t}"
  fi
  mkdir -p "${corpus}" "${work}/artifacts/${t}"
  cp -p fuzz/corpus/"${t}"/* "${corpus}/"
  run_log="${BUILD_DIR}/logs/${t}.log"
  args=(
    -max_total_time="${seconds}"
    -max_len="$(max_len_of "${t}")"
    -rss_limit_mb=2048
    -timeout=10
    -dict="fuzz/dict/${t}.dict"
    -artifact_prefix="${work}/artifacts/${t}/"
    -print_final_stats=1
  )
  if [[ ${keep_going} -eq 1 ]]; then
    args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  fi
  log "${t}: fuzzing for ${seconds} s (log: ${run_log})"
  start=${SECONDS}
  set +e
  # The outer timeout only guards against a hung libFuzzer (it stops by itself at -max_total_time).
  timeout -k 10 $((seconds + 120)) "${bin}" "${args[@]}" "${corpus}" >"${run_log}" 2>&1
  rc=$?
  set -e
  elapsed=$((SECONDS - start))
  runs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "${run_log}" | tail -n 1)"
  [[ -n "${runs}" ]] || runs="$(sed -nE 's/^#([0-9]+):? .*/\1/p' "${run_log}" | tail -n 1)"

  shopt -s nullglob
  artifacts=("${work}/artifacts/${t}"/*)
  shopt -u nullglob
  kept=()
  for a in "${artifacts[@]}"; do
    dest="${BUILD_DIR}/artifacts/${t}-$(basename "${a}")"
    cp -p "${a}" "${dest}"
    kept+=("${dest}")
  done

  if [[ ${rc} -eq 0 && ${#kept[@]} -eq 0 && ${replay_failed} -eq 0 ]]; then
    log "${t}: passed (${runs:-?} inputs in ${elapsed} s, corpus $(find "${corpus}" -type f | wc -l) files)"
    passed=$((passed + 1))
  else
    why="libFuzzer exit code ${rc} after ${elapsed} s, ${#kept[@]} new reproducers"
    [[ ${replay_failed} -eq 0 ]] || why+="; a saved reproducer in fuzz/crashes/ still fails"
    log "${t}: FAILED (${why})"
    for a in "${kept[@]}"; do
      log "${t}: reproducer ${a}  (replay: ASAN_OPTIONS=malloc_context_size=30 ${bin} ${a})"
    done
    [[ ${#kept[@]} -gt 0 ]] || log "${t}: no reproducer was written; see the log"
    show_log "${run_log}"
    failed=$((failed + 1))
    failed_targets+=("${t}")
  fi
done

log "${passed} targets passed, ${failed} failed${failed_targets[*]:+ (${failed_targets[*]})}"
[[ ${failed} -eq 0 ]]
