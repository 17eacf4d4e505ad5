#!/usr/bin/env bash
# Checks the deployment artifacts (issue 5, docs/deployment.md); scripts/test.sh runs it after the
# build. Each part prints how long it took; the script stops at the first failure.
#   systemd     `cmake --install` into a staging prefix; `systemd-analyze verify` of the installed
#               unit alone and with the credentials drop-in (any warning fails);
#               `systemd-analyze security` exposure at most 2.0; sysusers.d/tmpfiles.d snippets
#               applied to a scratch root; the example config and env file accepted by
#               `workflowd config`, every variable of the env file a real setting
#   package     `cpack -G DEB`; control fields, dependencies from dpkg-shlibdeps, file list; then
#               installed with dpkg into this machine (root needed): binary runs, user created,
#               config files with the right owners and modes, installed unit verified, reinstall
#               keeps edited config, remove keeps config, purge removes every file; the workflowd
#               user is deleted again if this script created it
#   monitoring  `promtool check rules` and `promtool test rules` (tests/deploy/alerts_test.yaml)
#   kubernetes  `go test` in tests/deploy, offline (GOPROXY=off): kustomize overlays rendered and
#               decoded strictly into k8s.io/api types, invariants, dashboard and alert checks,
#               each overlay's config validated by the built daemon
#
# Usage: scripts/check-deploy.sh [systemd|package|monitoring|kubernetes ...]   (default: all)
# Environment: WORKFLOWD_BUILD_DIR (default build), WORKFLOWD_JOBS (default 2).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_DIR}"
BUILD_DIR="$(realpath -m "${WORKFLOWD_BUILD_DIR:-build}")"
JOBS="${WORKFLOWD_JOBS:-2}"
BINARY="${BUILD_DIR}/daemon/workflowd"
PARTS=("$@")
[[ ${#PARTS[@]} -gt 0 ]] || PARTS=(systemd package monitoring kubernetes)

log() { printf 'check-deploy: %s\n' "$*"; }
die() {
  printf 'check-deploy: FAILED: %s\n' "$*" >&2
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found ($2; scripts/install-deps.sh installs it)"; }

WORK="$(mktemp -d /tmp/workflowd-check-deploy.XXXXXX)"
CLEANUPS=()
cleanup() {
  local i
  for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[i]}" || true; done
  rm -rf "${WORK}"
}
trap cleanup EXIT

# A placeholder URL: `workflowd config` validates it but never connects.
DUMMY_DB_URL="postgresql://check:check@127.0.0.1:5432/check"

# Runs `workflowd config` with a clean environment plus the given VAR=value pairs.
daemon_config() {
  local binary="$1" config="$2"
  shift 2
  # A fixed instance_id: the default (hostname-pid) would differ on every run.
  env -i PATH="${PATH}" WORKFLOWD_DATABASE_URL="${DUMMY_DB_URL}" WORKFLOWD_INSTANCE_ID=check "$@" \
    "${binary}" config --config "${config}"
}

# "45s", "2min", "1m", "90" -> seconds; 0 when empty or not understood.
seconds() {
  local v="$1"
  case "${v}" in
    *min) echo $((${v%min} * 60)) ;;
    *ms) echo 0 ;;
    *m) echo $((${v%m} * 60)) ;;
    *s) echo "${v%s}" ;;
    '' | *[!0-9]*) echo 0 ;;
    *) echo "${v}" ;;
  esac
}

ensure_binary() {
  [[ -d "${BUILD_DIR}" ]] || die "${BUILD_DIR} does not exist: build first (cmake -S . -B ${BUILD_DIR} -G Ninja)"
  cmake --build "${BUILD_DIR}" -j "${JOBS}" --target workflowd >/dev/null
  [[ -x "${BINARY}" ]] || die "${BINARY} was not built"
}

# Fails when `systemd-analyze verify` prints anything: it reports unknown keys and bad values as
# warnings with exit code 0.
verify_unit() {
  local out
  out="$("$@" 2>&1)" || die "systemd-analyze verify failed:"$'\n'"${out}"
  [[ -z "${out}" ]] || die "systemd-analyze verify warns:"$'\n'"${out}"
}

check_systemd() {
  need systemd-analyze "Debian package systemd"
  ensure_binary
  local stage="${WORK}/stage" unit
  cmake --install "${BUILD_DIR}" --prefix "${stage}" >/dev/null
  unit="${stage}/lib/systemd/system/workflowd.service"
  [[ -f "${unit}" ]] || die "cmake --install put no unit at lib/systemd/system/workflowd.service"
  for f in bin/workflowd lib/sysusers.d/workflowd.conf lib/tmpfiles.d/workflowd.conf \
      share/workflowd/examples/workflowd.yaml share/workflowd/examples/workflowd.env.example \
      share/workflowd/examples/credentials.conf.example share/doc/workflowd/deployment.md; do
    [[ -e "${stage}/${f}" ]] || die "cmake --install did not install ${f}"
  done
  grep -qx "ExecStart=${stage}/bin/workflowd run" "${unit}" \
    || die "the installed unit's ExecStart does not point at the install prefix: $(grep '^ExecStart=' "${unit}")"
  grep -qx "ExecStartPre=${stage}/bin/workflowd migrate" "${unit}" \
    || die "the installed unit's ExecStartPre does not run migrate from the install prefix"

  # The unit as installed (ExecStart must exist), then with the credentials drop-in.
  verify_unit systemd-analyze verify --man=no "${unit}"
  local units="${WORK}/units"
  mkdir -p "${units}/workflowd.service.d"
  cp "${unit}" "${units}/"
  cp systemd/credentials.conf.example "${units}/workflowd.service.d/credentials.conf"
  verify_unit env SYSTEMD_UNIT_PATH="${units}:" systemd-analyze verify --man=no "${units}/workflowd.service"
  # What issue 5 asks of the unit, line by line (verify accepts a unit without any of them).
  local want
  for want in Type=notify NotifyAccess=main Restart=on-failure RestartPreventExitStatus=2 \
      User=workflowd Group=workflowd 'Environment=WORKFLOWD_CONFIG=/etc/workflowd/workflowd.yaml' \
      EnvironmentFile=-/etc/workflowd/workflowd.env NoNewPrivileges=yes ProtectSystem=strict \
      ProtectHome=yes PrivateTmp=yes PrivateDevices=yes ProtectKernelTunables=yes \
      ProtectKernelModules=yes ProtectKernelLogs=yes ProtectControlGroups=yes \
      'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' RestrictNamespaces=yes LockPersonality=yes \
      MemoryDenyWriteExecute=yes RestrictRealtime=yes RestrictSUIDSGID=yes CapabilityBoundingSet= \
      SystemCallFilter=@system-service SystemCallArchitectures=native UMask=0077; do
    grep -qxF "${want}" "${unit}" || die "systemd/workflowd.service lacks the line ${want}"
  done
  local stop_sec watchdog_sec shutdown_sec
  stop_sec="$(seconds "$(sed -n 's/^TimeoutStopSec=//p' "${unit}")")"
  watchdog_sec="$(seconds "$(sed -n 's/^WatchdogSec=//p' "${unit}")")"
  shutdown_sec="$(seconds "$(sed -n 's/^shutdown_timeout: *\([^ #]*\).*/\1/p' systemd/workflowd.yaml)")"
  [[ ${watchdog_sec} -gt 0 ]] || die "systemd/workflowd.service sets no WatchdogSec"
  [[ ${stop_sec} -gt $((shutdown_sec + 5)) ]] \
    || die "TimeoutStopSec (${stop_sec}s) must exceed shutdown_timeout of systemd/workflowd.yaml (${shutdown_sec}s) by more than 5s"
  local security
  security="$(systemd-analyze security --offline=true --threshold=20 "${unit}" 2>&1)" \
    || die "systemd-analyze security: exposure above 2.0 (hardening lost?):"$'\n'"$(tail -n 30 <<<"${security}")"
  log "unit hardening: $(grep -o 'Overall exposure level.*' <<<"${security}")"

  # sysusers.d and tmpfiles.d: applied to a scratch root, never to this machine.
  local root="${WORK}/root"
  mkdir -p "${root}/etc"
  systemd-sysusers --root="${root}" "${stage}/lib/sysusers.d/workflowd.conf" >/dev/null 2>&1 \
    || die "systemd-sysusers rejects lib/sysusers.d/workflowd.conf"
  grep -q '^workflowd:x:[0-9]*:[0-9]*:[^:]*:/nonexistent:/usr/sbin/nologin$' "${root}/etc/passwd" \
    || die "sysusers.d did not create a nologin workflowd user: $(cat "${root}/etc/passwd")"
  systemd-tmpfiles --root="${root}" --create "${stage}/lib/tmpfiles.d/workflowd.conf" \
    || die "systemd-tmpfiles rejects lib/tmpfiles.d/workflowd.conf"
  local gid
  gid="$(awk -F: '$1 == "workflowd" {print $3}' "${root}/etc/group")"
  [[ "$(stat -c '%a %u %g' "${root}/etc/workflowd")" == "750 0 ${gid}" ]] \
    || die "tmpfiles.d made /etc/workflowd $(stat -c '%a %u:%g' "${root}/etc/workflowd"), want 750 0:${gid}"

  # The example configuration and environment file are accepted by the daemon itself.
  local out
  out="$(daemon_config "${BINARY}" systemd/workflowd.yaml 2>&1)" \
    || die "workflowd config rejects systemd/workflowd.yaml:"$'\n'"${out}"
  local baseline vars=() line name
  baseline="${out}"
  while IFS= read -r line; do
    [[ "${line}" =~ ^#?(WORKFLOWD_[A-Z0-9_]+)=(.*)$ ]] || continue
    name="${BASH_REMATCH[1]}"
    vars+=("${name}=${BASH_REMATCH[2]}")
    [[ "${name}" == WORKFLOWD_DATABASE_URL ]] && continue
    # A misspelt variable would be ignored by the daemon: each one must change the effective config.
    out="$(daemon_config "${BINARY}" systemd/workflowd.yaml "${name}=${BASH_REMATCH[2]}" 2>&1)" \
      || die "workflowd config rejects ${name} from systemd/workflowd.env.example:"$'\n'"${out}"
    [[ "${out}" != "${baseline}" ]] \
      || die "systemd/workflowd.env.example: ${name} is no setting workflowd reads"
  done <systemd/workflowd.env.example
  [[ ${#vars[@]} -ge 2 ]] || die "systemd/workflowd.env.example lists no WORKFLOWD_ variables"
  out="$(env -i PATH="${PATH}" "${vars[@]}" "${BINARY}" config --config systemd/workflowd.yaml 2>&1)" \
    || die "workflowd config rejects systemd/workflowd.env.example with every line enabled:"$'\n'"${out}"
  if grep -q 'CHANGE_ME' <<<"${out}"; then
    die "workflowd config printed a secret from the env file unmasked"
  fi
}

# dpkg refuses at once while apt/dpkg runs elsewhere (another developer's install-deps): retry.
dpkg_wait() {
  local out i
  for i in $(seq 1 90); do
    if out="$("${SUDO[@]}" dpkg "$@" 2>&1)"; then
      printf '%s\n' "${out}"
      return 0
    fi
    if ! grep -qi 'lock' <<<"${out}"; then
      printf '%s\n' "${out}" >&2
      return 1
    fi
    sleep 2
  done
  printf '%s\n' "${out}" >&2
  return 1
}

check_package() {
  need cpack "CMake"
  need dpkg-shlibdeps "Debian package dpkg-dev"
  ensure_binary
  SUDO=()
  if [[ ${EUID} -ne 0 ]]; then
    sudo -n true 2>/dev/null || die "the package test installs the .deb with dpkg: run as root or with passwordless sudo"
    SUDO=(sudo -n)
  fi
  local pkgdir="${WORK}/pkg" deb version
  version="$("${BINARY}" version | awk '{print $2}')"
  cpack -G DEB --config "${BUILD_DIR}/CPackConfig.cmake" -B "${pkgdir}" >"${WORK}/cpack.log" 2>&1 \
    || die "cpack -G DEB failed:"$'\n'"$(tail -n 30 "${WORK}/cpack.log")"
  deb="$(compgen -G "${pkgdir}/workflowd_*.deb" | head -n1)" || die "cpack made no workflowd_*.deb"
  log "package: $(basename "${deb}") ($(du -h "${deb}" | cut -f1))"
  [[ "$(dpkg-deb -f "${deb}" Package)" == workflowd ]] || die "package name is not workflowd"
  [[ "$(dpkg-deb -f "${deb}" Version)" == "${version}" ]] \
    || die "package version $(dpkg-deb -f "${deb}" Version) differs from workflowd version ${version}"
  local depends
  depends="$(dpkg-deb -f "${deb}" Depends)"
  for lib in librdkafka1 libpqxx- libsystemd0 libyaml-cpp libprometheus-cpp-core; do
    grep -q "${lib}" <<<"${depends}" || die "Depends lacks ${lib} (dpkg-shlibdeps): ${depends}"
  done
  local contents
  contents="$(dpkg-deb -c "${deb}" | awk '{print $6}')"
  for f in ./usr/bin/workflowd ./usr/lib/systemd/system/workflowd.service \
      ./usr/lib/sysusers.d/workflowd.conf ./usr/lib/tmpfiles.d/workflowd.conf \
      ./usr/share/workflowd/examples/workflowd.yaml ./usr/share/doc/workflowd/deployment.md; do
    grep -qxF "${f}" <<<"${contents}" || die "the package lacks ${f}"
  done
  if grep -q '^\./etc/' <<<"${contents}"; then
    die "the package ships files under /etc (postinst creates the config instead)"
  fi
  dpkg-deb --fsys-tarfile "${deb}" | tar -xO ./usr/lib/systemd/system/workflowd.service \
    | grep -qx 'ExecStart=/usr/bin/workflowd run' || die "the packaged unit's ExecStart is not /usr/bin/workflowd run"

  # Install into this machine, one test run at a time.
  exec 9>/tmp/workflowd-check-deploy.lock
  flock -w 600 9 || die "another check-deploy holds /tmp/workflowd-check-deploy.lock"
  if dpkg-query -W -f='${db:Status-Abbrev}' workflowd 2>/dev/null | grep -q '^[ir]'; then
    log "removing the workflowd package left installed (by an earlier, interrupted run?)"
    dpkg_wait --purge workflowd >/dev/null || die "dpkg --purge workflowd failed"
  fi
  [[ ! -e /etc/workflowd ]] || die "/etc/workflowd exists although workflowd is not installed: move it away first"
  local had_user=0
  getent passwd workflowd >/dev/null && had_user=1
  CLEANUPS+=("dpkg-query -W workflowd >/dev/null 2>&1 && dpkg_wait --purge workflowd >/dev/null")
  [[ ${had_user} -eq 1 ]] || CLEANUPS+=("getent passwd workflowd >/dev/null && ${SUDO[*]} userdel workflowd; getent group workflowd >/dev/null && ${SUDO[*]} groupdel workflowd")

  local out
  out="$(dpkg_wait -i "${deb}")" || die "dpkg -i $(basename "${deb}") failed"
  [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' workflowd)" == "ii " ]] || die "workflowd is not installed after dpkg -i"
  [[ "$(/usr/bin/workflowd version)" == "workflowd ${version}" ]] || die "/usr/bin/workflowd version: $(/usr/bin/workflowd version)"
  getent passwd workflowd | grep -q ':/usr/sbin/nologin$' || die "postinst created no nologin workflowd user"
  [[ "$("${SUDO[@]}" runuser -u workflowd -- /usr/bin/workflowd version)" == "workflowd ${version}" ]] \
    || die "the workflowd user cannot run /usr/bin/workflowd"
  [[ "$(stat -c '%a %U %G' /etc/workflowd)" == "750 root workflowd" ]] \
    || die "/etc/workflowd is $(stat -c '%a %U %G' /etc/workflowd), want 750 root workflowd"
  for f in workflowd.yaml workflowd.env; do
    [[ "$(stat -c '%a %U %G' "/etc/workflowd/${f}")" == "640 root workflowd" ]] \
      || die "/etc/workflowd/${f} is $(stat -c '%a %U %G' "/etc/workflowd/${f}"), want 640 root workflowd"
  done
  # The service user reads the installed configuration as the unit would give it.
  out="$("${SUDO[@]}" runuser -u workflowd -- env -i PATH="${PATH}" WORKFLOWD_CONFIG=/etc/workflowd/workflowd.yaml \
    WORKFLOWD_DATABASE_URL="${DUMMY_DB_URL}" /usr/bin/workflowd config 2>&1)" \
    || die "workflowd (as user workflowd) rejects the installed /etc/workflowd/workflowd.yaml:"$'\n'"${out}"
  verify_unit systemd-analyze verify --man=no /usr/lib/systemd/system/workflowd.service

  # Reinstalling (the upgrade path of the maintainer scripts) keeps an edited configuration.
  echo "# edited by check-deploy" | "${SUDO[@]}" tee -a /etc/workflowd/workflowd.yaml >/dev/null
  dpkg_wait -i "${deb}" >/dev/null || die "reinstalling $(basename "${deb}") failed"
  grep -q 'edited by check-deploy' /etc/workflowd/workflowd.yaml || die "reinstalling overwrote /etc/workflowd/workflowd.yaml"

  # remove keeps the configuration, purge removes everything the package and postinst created.
  dpkg_wait -r workflowd >/dev/null || die "dpkg -r workflowd failed"
  [[ ! -e /usr/bin/workflowd && ! -e /usr/lib/systemd/system/workflowd.service ]] || die "dpkg -r left the package's files"
  [[ -f /etc/workflowd/workflowd.yaml ]] || die "dpkg -r removed the configuration (only purge may)"
  dpkg_wait --purge workflowd >/dev/null || die "dpkg --purge workflowd failed"
  [[ ! -e /etc/workflowd ]] || die "dpkg --purge left /etc/workflowd: $(ls -la /etc/workflowd)"
  local f
  while IFS= read -r f; do
    f="${f#.}"
    [[ -n "${f}" && ! -d "${f}" && -e "${f}" ]] && die "dpkg --purge left ${f}"
  done <<<"${contents}"
  if dpkg-query -W workflowd >/dev/null 2>&1; then
    die "dpkg still knows workflowd after --purge"
  fi
  log "package: installed, ran as user workflowd, reinstalled, removed and purged cleanly"
}

check_monitoring() {
  need promtool "Debian package prometheus"
  promtool check rules deploy/monitoring/alerts.yaml >/dev/null \
    || die "promtool check rules deploy/monitoring/alerts.yaml: $(promtool check rules deploy/monitoring/alerts.yaml 2>&1)"
  local out
  out="$(promtool test rules tests/deploy/alerts_test.yaml 2>&1)" \
    || die "promtool test rules tests/deploy/alerts_test.yaml:"$'\n'"${out}"
}

check_kubernetes() {
  need go "Go >= 1.24"
  ensure_binary
  local out
  # Offline: every module must already be in the cache (scripts/install-deps.sh downloads them).
  if ! out="$(cd tests/deploy && GOPROXY=off GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=readonly" \
      WORKFLOWD_BINARY="${BINARY}" go test -count=1 ./... 2>&1)"; then
    printf '%s\n' "${out}" >&2
    grep -q 'GOPROXY=off' <<<"${out}" && die "Go modules missing from the cache: run scripts/install-deps.sh"
    die "go test in tests/deploy"
  fi
  printf '%s\n' "${out}"
}

for part in "${PARTS[@]}"; do
  start=${SECONDS}
  case "${part}" in
    systemd) check_systemd ;;
    package) check_package ;;
    monitoring) check_monitoring ;;
    kubernetes) check_kubernetes ;;
    *) die "unknown part '${part}' (systemd, package, monitoring, kubernetes)" ;;
  esac
  log "${part}: ok ($((SECONDS - start)) s)"
done
