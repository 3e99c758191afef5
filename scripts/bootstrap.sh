#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install this package with the given extras.
# Usage: scripts/bootstrap.sh [extra,extra,...]   Idempotent: a second run only re-checks.
# A virtualenv without a working pip (e.g. made by `python3 -m venv` where Debian's
# python3-venv, which ships ensurepip, is missing) is recreated, never used half-built.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
VENV="${VENV:-.venv}"

is_new_enough() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

pick_python() {
    local cand
    # PATH first, then any pyenv-installed CPython 3.x (oldest suitable first, by version).
    local -a pyenv=()
    if [ -d "$HOME/.pyenv/versions" ]; then
        mapfile -t pyenv < <(ls -d "$HOME"/.pyenv/versions/3.*/bin/python 2>/dev/null | sort -V)
    fi
    for cand in "${PYTHON:-}" python3.11 python3 python3.12 python3.13 python3.14 "${pyenv[@]}"; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if is_new_enough "$cand"; then
            echo "$cand"; return 0
        fi
    done
    echo "error: no Python >= 3.11 found (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

venv_works() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

if ! venv_works; then
    if [ -e "$VENV" ]; then
        echo "==> $VENV exists but has no working pip; recreating it"
        rm -rf "$VENV"
    fi
    py="$(pick_python)"
    if ! "$py" -c 'import ensurepip' >/dev/null 2>&1; then
        # Debian/Ubuntu split ensurepip off into python3-venv; without it `-m venv` fails.
        echo "==> $py has no ensurepip; installing python3-venv"
        bash scripts/system-deps.sh --only python3-venv
    fi
    echo "==> creating $VENV with $("$py" --version)"
    if ! "$py" -m venv "$VENV" || ! venv_works; then
        rm -rf "$VENV"
        echo "error: '$py -m venv $VENV' did not give a virtualenv with pip; on Debian/Ubuntu" \
            "install python3-venv (scripts/system-deps.sh does), or set PYTHON=/path/to/python3" >&2
        exit 1
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
fi

spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp="$VENV/.installed-$(echo "$extras" | tr ',' '-')"
digest="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "==> installing backend.ai-common${extras:+[$extras]} into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
    echo "$digest" > "$stamp"
fi
