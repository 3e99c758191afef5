#!/usr/bin/env bash
# Install the real servers the test suite starts (redis-server, redis-sentinel, etcd, etcdctl)
# when missing, python3-venv when `python3 -m venv` cannot work (no ensurepip), plus any Debian
# packages named as arguments (e.g. `prometheus`, `chromium`: with it come the fonts a headless
# screenshot needs, since packages are installed without their recommends).
# Usage: scripts/system-deps.sh [--only] [package...]   (--only: just the named packages)
# Idempotent: does nothing when everything is present. Needs root (or sudo) only to install.
# The tests start their own servers on free loopback ports; services the packages start
# (redis on 6379, etcd on 2379) are neither used nor stopped.
set -euo pipefail
only=0
if [ "${1:-}" = "--only" ]; then only=1; shift; fi
need=()
if [ "$only" -eq 0 ]; then
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
    command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
    # `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
    if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        need+=(python3-venv)
    fi
fi
add_deb() { dpkg -s "$1" >/dev/null 2>&1 || need+=("$1"); }
for pkg in "$@"; do
    case "$pkg" in
        prometheus) command -v prometheus >/dev/null 2>&1 || need+=(prometheus) ;;
        chromium)
            add_deb chromium
            # Without recommends chromium has no fonts: screenshots would show empty boxes.
            add_deb fonts-liberation
            add_deb fonts-dejavu-core
            ;;
        *) add_deb "$pkg" ;;
    esac
done
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "error: missing ${need[*]}; run this script as root (no sudo found)" >&2
        exit 1
    fi
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "==> installing system packages: ${need[*]}"
$sudo apt-get update -qq
# Older releases ship etcd as one package named `etcd` instead of etcd-server + etcd-client.
if ! apt-cache show etcd-server >/dev/null 2>&1; then
    mapped=()
    for pkg in "${need[@]}"; do
        case "$pkg" in
            etcd-server | etcd-client) [[ " ${mapped[*]-} " == *" etcd "* ]] || mapped+=(etcd) ;;
            *) mapped+=("$pkg") ;;
        esac
    done
    need=("${mapped[@]}")
fi
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [ "$only" -eq 0 ]; then
    for program in redis-server etcd etcdctl; do
        command -v "$program" >/dev/null 2>&1 || {
            echo "error: $program is still missing after installing ${need[*]}" >&2
            exit 1
        }
    done
fi
