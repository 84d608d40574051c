#!/usr/bin/env bash
# Installs the system packages baton's tests need, only when missing (Debian; needs root).
set -euo pipefail
need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v nsenter >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v dbus-daemon >/dev/null || need+=(dbus)
command -v systemd-analyze >/dev/null || need+=(systemd)
[ -x /lib/systemd/systemd ] || need+=(systemd)
command -v journalctl >/dev/null || need+=(systemd)


# The Ansible collection's tests install ansible-core into a venv (make .venv).
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]} and not root: install them with apt-get" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
