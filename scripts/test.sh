#!/usr/bin/env bash
# The whole test job: system packages, virtualenv, ruff, mypy --strict, import-linter, pytest.
# Usage: scripts/test.sh [--lint-only] [pytest args...]
# Extra pytest args go through, e.g. `scripts/test.sh -m "not slow"` to skip chaos tests locally.
set -euo pipefail
cd "$(dirname "$0")/.."
lint_only=0
if [ "${1:-}" = "--lint-only" ]; then lint_only=1; shift; fi

bash scripts/system-deps.sh prometheus chromium chromium-driver
bash scripts/bootstrap.sh test,bench
bin=.venv/bin

echo "==> ruff"
"$bin/ruff" check src tests benchmarks scripts
"$bin/ruff" format --check src tests benchmarks scripts
echo "==> mypy --strict"
"$bin/mypy"
"$bin/mypy" scripts/run_benchmarks.py
echo "==> import-linter (layers of DESIGN.md section 2)"
"$bin/lint-imports"
[ "$lint_only" -eq 1 ] && exit 0

echo "==> pytest"
"$bin/python" -m pytest "$@"
