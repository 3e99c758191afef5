#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install this package with the given extras.
# Usage: scripts/bootstrap.sh [extra,extra,...]   Idempotent: a second run only re-checks.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
VENV="${VENV:-.venv}"

pick_python() {
    local cand
    for cand in "${PYTHON:-}" python3.11 python3 python3.12 python3.13 \
        "$HOME/.pyenv/versions/3.11.7/bin/python" "$HOME/.pyenv/versions/3.12.1/bin/python"; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$cand"; return 0
        fi
    done
    echo "error: no Python >= 3.11 found (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    py="$(pick_python)"
    echo "==> creating $VENV with $("$py" --version)"
    "$py" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp="$VENV/.installed-$(echo "$extras" | tr ',' '-')"
digest="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "==> installing backend.ai-common${extras:+[$extras]} into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
    echo "$digest" > "$stamp"
fi
