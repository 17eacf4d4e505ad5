#!/usr/bin/env bash
# Installs everything workflowd needs to build, test and run its real local services:
#   1. Debian packages (compiler, libraries, PostgreSQL 15, JDK, Maven, linters);
#   2. the Apache Kafka broker jars, resolved with Maven into <repo>/.cache/kafka/libs;
#   3. the Go modules of tests/deploy (Kubernetes manifest checks) into Go's module cache;
#   4. the Temporal tooling (pins in scripts/temporal/versions.env), into the Temporal cache:
#      bin/temporal (the Temporal CLI and dev server, built with `go install`; minutes cold),
#      protos-<v>/ (the Temporal API .proto files, taken from the pinned `temporalio` wheel) and
#      venv/ (a Python venv with the `temporalio` SDK, for workers/temporal/worker.py).
#
# Idempotent and fast when everything is present: packages are checked with dpkg first and
# apt-get runs only when one is missing; the Kafka jars and each Temporal part are skipped when
# their stamp matches; `go mod download` only fetches modules missing from the cache.
#
# Usage: scripts/install-deps.sh [--no-apt] [--no-kafka] [--no-go] [--no-temporal]
# Environment:
#   WORKFLOWD_KAFKA_LIBS       where the Kafka jars go (default <repo>/.cache/kafka/libs)
#   WORKFLOWD_TEMPORAL_CACHE   where the Temporal tooling goes (default <repo>/.cache/temporal)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "${SCRIPT_DIR}/.." && pwd)"
KAFKA_POM="${SCRIPT_DIR}/kafka/pom.xml"
KAFKA_LIBS="${WORKFLOWD_KAFKA_LIBS:-${REPO_DIR}/.cache/kafka/libs}"
TEMPORAL_CACHE="${WORKFLOWD_TEMPORAL_CACHE:-${REPO_DIR}/.cache/temporal}"
TEMPORAL_VERSIONS="${SCRIPT_DIR}/temporal/versions.env"

do_apt=1
do_kafka=1
do_go=1
do_temporal=1
for arg in "$@"; do
  case "${arg}" in
    --no-apt) do_apt=0 ;;
    --no-kafka) do_kafka=0 ;;
    --no-go) do_go=0 ;;
    --no-temporal) do_temporal=0 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps: unknown argument '${arg}' (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

START_SECONDS=${SECONDS}

# --- 1. Debian packages --------------------------------------------------------------------------
PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config git
  librdkafka-dev libpqxx-dev libspdlog-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libyaml-cpp-dev libre2-dev libcli11-dev libcpp-httplib-dev
  libsystemd-dev libcurl4-openssl-dev libsimdjson-dev libjemalloc-dev
  prometheus-cpp-dev libutfcpp-dev libhowardhinnant-date-dev
  postgresql-15 clang-format clang-tidy procps iproute2 python3 python3-venv
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  prometheus
  dpkg-dev file systemd adduser passwd
  clang-14 libclang-rt-14-dev llvm-14
)

# A JDK and Maven may come from elsewhere (for example a Temurin JDK on PATH): only ask Debian
# for them when the commands are missing or the JDK is too old for Kafka 3.9 (needs 11+).
java_major() {
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}')"
  v="${v#1.}"
  printf '%s' "${v%%.*}"
}
if ! command -v java >/dev/null 2>&1 || [[ "$(java_major)" -lt 11 ]]; then
  PACKAGES+=(openjdk-17-jre-headless)
fi
if ! command -v mvn >/dev/null 2>&1; then
  PACKAGES+=(maven)
fi

missing_packages() {
  # dpkg-query prints one line per known package; unknown ones go to stderr and count as missing.
  local installed
  installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null \
    | awk '$2 ~ /^ii/ {print $1}' || true)"
  local p
  for p in "${PACKAGES[@]}"; do
    if ! grep -qxF "${p}" <<<"${installed}"; then
      printf '%s\n' "${p}"
    fi
  done
}

if [[ ${do_apt} -eq 1 ]]; then
  command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script expects Debian 12"
  mapfile -t MISSING < <(missing_packages)
  if [[ ${#MISSING[@]} -eq 0 ]]; then
    log "Debian packages: all ${#PACKAGES[@]} present"
  else
    log "Debian packages missing: ${MISSING[*]}"
    SUDO=()
    if [[ ${EUID} -ne 0 ]]; then
      command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install as root: apt-get install ${MISSING[*]}"
      SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq
    log "apt-get install ${MISSING[*]}"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
    mapfile -t STILL < <(missing_packages)
    [[ ${#STILL[@]} -eq 0 ]] || die "still missing after apt-get install: ${STILL[*]}"
    log "Debian packages installed"
  fi
  [[ -x /usr/lib/postgresql/15/bin/initdb ]] || die "/usr/lib/postgresql/15/bin/initdb missing although postgresql-15 is installed"
else
  log "Debian packages: skipped (--no-apt)"
fi

# --- 2. Apache Kafka jars ------------------------------------------------------------------------
if [[ ${do_kafka} -eq 1 ]]; then
  [[ -f "${KAFKA_POM}" ]] || die "${KAFKA_POM} not found"
  STAMP="${KAFKA_LIBS}/.stamp"
  want_stamp="$(sha256sum "${KAFKA_POM}" | awk '{print $1}')"
  if [[ -f "${STAMP}" && "$(cat "${STAMP}")" == "${want_stamp}" ]] \
      && compgen -G "${KAFKA_LIBS}/kafka_2.13-*.jar" >/dev/null \
      && compgen -G "${KAFKA_LIBS}/kafka-tools-[0-9]*.jar" >/dev/null; then
    log "Kafka jars: present in ${KAFKA_LIBS}"
  else
    command -v mvn >/dev/null 2>&1 || die "mvn not found (run without --no-apt to install maven)"
    command -v java >/dev/null 2>&1 || die "java not found (run without --no-apt to install a JDK)"
    log "Kafka jars: resolving with Maven into ${KAFKA_LIBS} (first run takes a minute)"
    parent="$(dirname "${KAFKA_LIBS}")"
    mkdir -p "${parent}"
    tmp="$(mktemp -d "${parent}/.libs.tmp.XXXXXX")"
    trap 'rm -rf "${tmp}"' EXIT
    if ! mvn -q -B -Dstyle.color=never -f "${KAFKA_POM}" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="${tmp}" \
        >"${tmp}.mvn.log" 2>&1; then
      tail -n 40 "${tmp}.mvn.log" >&2 || true
      rm -f "${tmp}.mvn.log"
      die "Maven could not resolve the Kafka jars (see above)"
    fi
    rm -f "${tmp}.mvn.log"
    compgen -G "${tmp}/kafka_2.13-*.jar" >/dev/null || die "Maven ran but no kafka_2.13 jar was copied"
    printf '%s\n' "${want_stamp}" >"${tmp}/.stamp"
    chmod 755 "${tmp}"  # mktemp made it private; other users (a non-root developer) read the jars too
    rm -rf "${KAFKA_LIBS}"
    mv "${tmp}" "${KAFKA_LIBS}"
    trap - EXIT
    log "Kafka jars: $(find "${KAFKA_LIBS}" -name '*.jar' | wc -l) jars, $(basename "$(compgen -G "${KAFKA_LIBS}/kafka_2.13-*.jar" | head -n1)")"
  fi
else
  log "Kafka jars: skipped (--no-kafka)"
fi

# --- 3. Go modules of tests/deploy -----------------------------------------------------------------
# The Kubernetes manifest checks (scripts/check-deploy.sh) render and decode deploy/ with the
# kustomize and k8s.io/api Go modules; download them now so that the checks run offline.
# Needs Go >= 1.24 (the polyglot machine image has it; Debian 12's golang is too old).
GO_MODULE_DIR="${REPO_DIR}/tests/deploy"
if [[ ${do_go} -eq 1 ]]; then
  command -v go >/dev/null 2>&1 \
    || die "go not found: the deployment checks need Go >= 1.24 on PATH (or pass --no-go)"
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  [[ "${go_minor}" =~ ^[0-9]+$ && ${go_minor} -ge 24 ]] \
    || die "$(go env GOVERSION) is too old: the deployment checks need Go >= 1.24"
  if ! (cd "${GO_MODULE_DIR}" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go mod download); then
    die "go mod download failed in ${GO_MODULE_DIR}"
  fi
  log "Go modules: present for tests/deploy ($(go env GOVERSION))"
else
  log "Go modules: skipped (--no-go)"
fi

# --- 4. Temporal tooling ---------------------------------------------------------------------------
# Everything lands in TEMPORAL_CACHE; each part writes its stamp last, so an interrupted run is
# redone next time and a finished one is skipped.
temporal_cli() {
  local bin_dir="${TEMPORAL_CACHE}/bin"
  local stamp="${bin_dir}/.temporal.stamp" want="${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION}"
  if [[ -x "${bin_dir}/temporal" && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
    log "Temporal CLI: ${TEMPORAL_CLI_VERSION} present in ${bin_dir}"
    return 0
  fi
  command -v go >/dev/null 2>&1 \
    || die "go not found: the Temporal CLI is built with Go >= 1.25 (or pass --no-temporal)"
  local go_minor
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  [[ "${go_minor}" =~ ^[0-9]+$ && ${go_minor} -ge 25 ]] \
    || die "$(go env GOVERSION) is too old: the Temporal CLI ${TEMPORAL_CLI_VERSION} needs Go >= 1.25"
  mkdir -p "${bin_dir}"
  local tmp t0=${SECONDS}
  tmp="$(mktemp -d "${bin_dir}/.install.XXXXXX")"
  log "Temporal CLI: go install ${want} (a cold build takes several minutes)"
  if ! GOBIN="${tmp}" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
      go install "${want}" >"${tmp}.log" 2>&1; then
    tail -n 40 "${tmp}.log" >&2 || true
    rm -rf "${tmp}" "${tmp}.log"
    die "go install ${want} failed (see above)"
  fi
  if [[ ! -x "${tmp}/temporal" ]]; then
    rm -rf "${tmp}" "${tmp}.log"
    die "go install ran but left no temporal binary"
  fi
  rm -f "${stamp}"
  mv -f "${tmp}/temporal" "${bin_dir}/temporal"
  rm -rf "${tmp}" "${tmp}.log"
  printf '%s\n' "${want}" >"${stamp}"
  log "Temporal CLI: $("${bin_dir}/temporal" --version 2>/dev/null | head -n 1) in $((SECONDS - t0)) s"
}

# Prints the path of the pinned `temporalio` wheel for manylinux x86_64, downloading it with the
# venv's pip (Debian's python3 has no pip of its own) when it is not in wheels/ yet. The .proto
# files are the same in every platform's wheel.
temporal_wheel() {
  local dir="${TEMPORAL_CACHE}/wheels" pattern whl
  pattern="${dir}/temporalio-${TEMPORALIO_VERSION}-*manylinux2014_x86_64*.whl"
  whl="$(compgen -G "${pattern}" | head -n 1 || true)"
  if [[ -z "${whl}" ]]; then
    mkdir -p "${dir}"
    log "temporalio ${TEMPORALIO_VERSION}: pip download (one wheel, about 15 MB)" >&2
    "${TEMPORAL_CACHE}/venv/bin/python" -m pip download -q --disable-pip-version-check \
      --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 --python-version 3.11 -d "${dir}" \
      "temporalio==${TEMPORALIO_VERSION}" >&2 \
      || die "pip download temporalio==${TEMPORALIO_VERSION} failed"
    whl="$(compgen -G "${pattern}" | head -n 1 || true)"
    [[ -n "${whl}" ]] || die "pip download ran but left no temporalio-${TEMPORALIO_VERSION} wheel in ${dir}"
  fi
  printf '%s\n' "${whl}"
}

temporal_protos() {
  local dest="${TEMPORAL_CACHE}/protos-${TEMPORALIO_VERSION}"
  local stamp="${dest}/.stamp" want="temporalio==${TEMPORALIO_VERSION}"
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
    log "Temporal protos: present in ${dest}"
    return 0
  fi
  local whl tmp count
  whl="$(temporal_wheel)"
  tmp="$(mktemp -d "${TEMPORAL_CACHE}/.protos.XXXXXX")"
  # Only the API protos and google/rpc/, keeping the tree below .../protos/.
  if ! count="$(python3 - "${whl}" "${tmp}" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "temporalio/bridge/sdk-core/crates/protos/protos/"
keep = (prefix + "api_upstream/", prefix + "google/rpc/")
count = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.is_dir() or not info.filename.startswith(keep):
            continue
        parts = info.filename[len(prefix):].split("/")
        if any(p in ("", ".", "..") for p in parts):
            sys.exit(f"unexpected path in the wheel: {info.filename}")
        out = os.path.join(dest, *parts)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        count += 1
for need in ("api_upstream/temporal/api/workflowservice/v1/service.proto",
             "google/rpc/status.proto"):
    if not os.path.isfile(os.path.join(dest, need)):
        sys.exit(f"{need} not found in {wheel}")
print(count)
PY
  )"; then
    rm -rf "${tmp}"
    die "could not extract the Temporal protos from ${whl}"
  fi
  printf '%s\n' "${want}" >"${tmp}/.stamp"
  chmod 755 "${tmp}"  # mktemp made it private
  rm -rf "${dest}"
  mv "${tmp}" "${dest}"
  log "Temporal protos: ${count} files in ${dest}"
}

temporal_venv() {
  local venv="${TEMPORAL_CACHE}/venv"
  local stamp="${venv}/.stamp" want="temporalio==${TEMPORALIO_VERSION}"
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]] \
      && "${venv}/bin/python" -c '' >/dev/null 2>&1; then
    log "Temporal worker venv: ${want} present in ${venv}"
    return 0
  fi
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$(python3 --version 2>&1) is too old: temporalio ${TEMPORALIO_VERSION} needs Python >= 3.10"
  local t0=${SECONDS} links=()
  # A wheel already downloaded for the protos is used when it fits this machine.
  if [[ -d "${TEMPORAL_CACHE}/wheels" ]]; then
    links=(--find-links "${TEMPORAL_CACHE}/wheels")
  fi
  rm -rf "${venv}"
  log "Temporal worker venv: python3 -m venv ${venv}; pip install ${want}"
  python3 -m venv "${venv}" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "${venv}/bin/python" -m pip install -q --disable-pip-version-check "${links[@]}" "${want}" >&2 \
    || die "pip install ${want} into ${venv} failed"
  "${venv}/bin/python" -c 'import temporalio.worker' || die "${venv}: temporalio does not import"
  printf '%s\n' "${want}" >"${stamp}"
  log "Temporal worker venv: ready in $((SECONDS - t0)) s"
}

if [[ ${do_temporal} -eq 1 ]]; then
  [[ -f "${TEMPORAL_VERSIONS}" ]] || die "${TEMPORAL_VERSIONS} not found"
  # shellcheck source=temporal/versions.env
  source "${TEMPORAL_VERSIONS}"
  [[ -n "${TEMPORAL_CLI_MODULE:-}" && -n "${TEMPORAL_CLI_VERSION:-}" && -n "${TEMPORALIO_VERSION:-}" ]] \
    || die "${TEMPORAL_VERSIONS} must set TEMPORAL_CLI_MODULE, TEMPORAL_CLI_VERSION and TEMPORALIO_VERSION"
  command -v python3 >/dev/null 2>&1 || die "python3 not found (run without --no-apt)"
  mkdir -p "${TEMPORAL_CACHE}"
  temporal_venv
  temporal_protos
  temporal_cli
else
  log "Temporal tooling: skipped (--no-temporal)"
fi

log "done in $((SECONDS - START_SECONDS)) s"
