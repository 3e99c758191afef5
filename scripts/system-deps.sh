#!/usr/bin/env bash
# Install the real servers the test suite starts (redis-server, redis-sentinel, etcd) when missing.
# Idempotent: does nothing when all are on PATH. Needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
for pkg in "$@"; do
    case "$pkg" in
        prometheus) command -v prometheus >/dev/null 2>&1 || need+=(prometheus) ;;
        *) dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg") ;;
    esac
done
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "==> installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian packages try to start their services; the tests start their own on free ports.
