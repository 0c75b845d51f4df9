#!/usr/bin/env bash
# Set up (idempotent) and launch the app on http://127.0.0.1:8501.
# Extra arguments go to `streamlit run`, e.g.: bash scripts/app.sh --server.port 8599
# scripts/serve.py runs Streamlit in a process that first starts the background preload of the
# grounded model, the renderer and the goal embedder (kalm.ui.preload), so that they load with the
# server rather than at the first click; `streamlit run app.py` still works (it preloads from the
# first tab on).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

source scripts/env.sh
export STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
# Streamlit's file watcher would watch the whole repo recursively (.venv and runs/ included: thousands
# of folders, and inotify overflows). Off by default; to reload on edits while developing pages,
# pass --server.fileWatcherType auto.
export STREAMLIT_SERVER_FILE_WATCHER_TYPE="${STREAMLIT_SERVER_FILE_WATCHER_TYPE:-none}"

echo "[app] Starting the kalm app (default http://127.0.0.1:8501); Ctrl+C to stop."
exec .venv/bin/python scripts/serve.py --server.address 127.0.0.1 --server.headless true "$@"
