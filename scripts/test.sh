#!/usr/bin/env bash
# Set up (idempotent) and run the tests: bash scripts/test.sh [pytest args...]  (default: tests/)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KALM_WITH_BROWSER=1 bash scripts/setup.sh

source scripts/env.sh

if (($# == 0)); then set -- tests; fi
echo "[test] .venv/bin/python -m pytest -q $*"
# pytest's exit code passes through unchanged (5 = no tests collected counts as a failure).
exec .venv/bin/python -m pytest -q "$@"
