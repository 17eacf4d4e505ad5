#!/usr/bin/env bash
# Runs clang-tidy with the repository's .clang-tidy over the project's C++ sources: every source
# file of a build's compile_commands.json (the regular build: its generated files excluded), with
# the project headers each one includes (HeaderFilterRegex). Any finding fails; fix it, or, for a
# false positive only, silence that one line with `// NOLINT(check-name): why`.
# scripts/test.sh runs it after the regular build and counts it as one test.
#
# Usage: scripts/tidy.sh [FILE...]      (default: every project source of the build)
# Environment: WORKFLOWD_BUILD_DIR (default build: configured, and built so that generated files
#              exist), WORKFLOWD_TIDY_JOBS (default 2), WORKFLOWD_CLANG_TIDY (default clang-tidy).
# Prints the findings, then one line "tidy: N files clean" or "tidy: M of N files with findings".
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_DIR}"
BUILD_DIR="${WORKFLOWD_BUILD_DIR:-build}"
JOBS="${WORKFLOWD_TIDY_JOBS:-2}"
TIDY="${WORKFLOWD_CLANG_TIDY:-clang-tidy}"

command -v "${TIDY}" >/dev/null 2>&1 || { echo "tidy: ${TIDY} not found" >&2; exit 1; }
[[ -f "${BUILD_DIR}/compile_commands.json" ]] ||
  { echo "tidy: ${BUILD_DIR}/compile_commands.json missing: configure the build first" >&2; exit 1; }

if [[ $# -gt 0 ]]; then
  files=("$@")
else
  # Sources under the repository but not under a build folder (generated code is not ours to lint).
  mapfile -t files < <(python3 - "${BUILD_DIR}/compile_commands.json" "${REPO_DIR}" <<'EOF'
import json, os, sys
repo = os.path.realpath(sys.argv[2])
seen = set()
for entry in json.load(open(sys.argv[1])):
    path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    rel = os.path.relpath(path, repo)
    if rel.startswith("..") or rel.split(os.sep)[0].startswith("build") or rel in seen:
        continue
    seen.add(rel)
    print(rel)
EOF
  )
fi
[[ ${#files[@]} -gt 0 ]] || { echo "tidy: no files" >&2; exit 1; }

# One clang-tidy per file, JOBS at a time; each prints its findings in one piece (no interleaving)
# and leaves a mark when it found something.
marks="$(mktemp -d)"
trap 'rm -rf "${marks}"' EXIT
export TIDY BUILD_DIR marks
printf '%s\n' "${files[@]}" | xargs -P "${JOBS}" -I{} bash -c '
  out="$("${TIDY}" -p "${BUILD_DIR}" --quiet --warnings-as-errors="*" "$1" 2>&1)" && rc=0 || rc=$?
  if [[ ${rc} -ne 0 ]]; then
    printf "%s\n" "${out}" | grep -vE "^[0-9]+ (warnings?|errors?) (generated|treated as errors)\.$"
    touch "${marks}/$(printf "%s" "$1" | tr / _)"
  fi' _ {} || true

bad="$(find "${marks}" -type f | wc -l)"
if [[ ${bad} -gt 0 ]]; then
  echo "tidy: ${bad} of ${#files[@]} files with findings"
  exit 1
fi
echo "tidy: ${#files[@]} files clean"
