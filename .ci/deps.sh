#!/usr/bin/env bash
# Installs the Debian packages baton's build and tests use, only when missing (needs root).
# Each package is checked by the files the project really uses from it (and by dpkg), not by a
# command name that another package could also provide. The Rust build itself needs no system
# package: protoc and the protobuf well-known types come from the protoc-bin-vendored crate.
set -euo pipefail

# package: the files of it that the project uses
declare -A uses=(
  [util-linux]="/usr/bin/unshare /usr/bin/nsenter /usr/bin/setarch"
  [mount]="/usr/bin/mount"
  [iproute2]="/usr/bin/ip /sbin/ip"
  [dbus]="/usr/bin/dbus-daemon"
  [systemd]="/lib/systemd/systemd /usr/bin/systemd-analyze /usr/bin/journalctl /usr/bin/systemctl /usr/bin/systemd-socket-activate"
  [binutils]="/usr/bin/objdump"
  [debootstrap]="/usr/sbin/debootstrap"
  [python3-venv]="/usr/lib/python3*/ensurepip/__init__.py"
  # The fleet harness (integration/src/fleet.rs): an sshd per sandboxed host, ssh from the controller.
  [openssh-server]="/usr/sbin/sshd /usr/lib/openssh/sftp-server"
  [openssh-client]="/usr/bin/ssh /usr/bin/ssh-keygen"
  # A keep-alive HTTP client nobody here wrote (integration/tests/keepalive.rs).
  [wrk]="/usr/bin/wrk"
)

installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }
has_files() {
  local f
  for f in $1; do
    # A file may live under /usr (merged /usr) or be matched by a glob.
    compgen -G "$f" >/dev/null || compgen -G "/usr$f" >/dev/null || return 1
  done
}

need=()
for pkg in "${!uses[@]}"; do
  case "$pkg" in
    # iproute2 ships ip in /sbin or /usr/bin depending on the release: one of them suffices.
    iproute2) { [ -x /usr/bin/ip ] || [ -x /sbin/ip ]; } && installed "$pkg" || need+=("$pkg") ;;
    # python3-venv: the machine's python3 must have ensurepip and venv (pyenv builds have them
    # without the Debian package).
    python3-venv) python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv) ;;
    *) has_files "${uses[$pkg]}" && installed "$pkg" || need+=("$pkg") ;;
  esac
done

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]} and not root: install them with apt-get" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No package may start a daemon on this machine (its PID 1 is not systemd; openssh-server
  # would start an sshd on the host): a policy-rc.d that exits 101 is in place for the install,
  # and removed afterwards unless one was there before.
  # A policy-rc.d already there that denies (exit 101) is kept as is; one that would allow is
  # set aside and put back.
  policy=/usr/sbin/policy-rc.d
  denies() { [ -x "$policy" ] && { "$policy" ssh start >/dev/null 2>&1; [ $? = 101 ]; }; }
  if ! denies; then
    if [ -e "$policy" ]; then
      mv "$policy" "$policy.baton-saved"
      trap 'mv -f "$policy.baton-saved" "$policy"' EXIT
    else
      trap 'rm -f "$policy"' EXIT
    fi
    printf '#!/bin/sh\n# baton .ci/deps.sh: no daemon starts during the install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
  fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
