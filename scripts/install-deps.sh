#!/usr/bin/env bash
# Installs everything workflowd needs to build, test and run its real local services:
#   1. Debian packages (compiler, libraries, PostgreSQL 15, JDK, Maven, linters);
#   2. the Apache Kafka broker jars, resolved with Maven into <repo>/.cache/kafka/libs;
#   3. the Go modules of tests/deploy (Kubernetes manifest checks) into Go's module cache.
#
# Idempotent and fast when everything is present: packages are checked with dpkg first and
# apt-get runs only when one is missing; the Kafka jars are skipped when their stamp matches;
# `go mod download` only fetches modules missing from the cache.
#
# Usage: scripts/install-deps.sh [--no-apt] [--no-kafka] [--no-go]
# Environment:
#   WORKFLOWD_KAFKA_LIBS   where the Kafka jars go (default <repo>/.cache/kafka/libs)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "${SCRIPT_DIR}/.." && pwd)"
KAFKA_POM="${SCRIPT_DIR}/kafka/pom.xml"
KAFKA_LIBS="${WORKFLOWD_KAFKA_LIBS:-${REPO_DIR}/.cache/kafka/libs}"

do_apt=1
do_kafka=1
do_go=1
for arg in "$@"; do
  case "${arg}" in
    --no-apt) do_apt=0 ;;
    --no-kafka) do_kafka=0 ;;
    --no-go) do_go=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
  postgresql-15 clang-format clang-tidy procps iproute2 python3
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

log "done in $((SECONDS - START_SECONDS)) s"
