#!/usr/bin/env bash
# The main job: run the demo on the embedded in-memory backends.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m ai.backend.common demo "$@"
