"""Serve the kalm app with its background preload started together with the server.

Streamlit runs ``app.py`` only when a browser tab connects, so preloading from there alone would
start at the first tab. This launcher starts ``kalm.ui.preload`` (the shipped grounded model, the
renderer, the goal embedder: background threads) and then Streamlit itself, in the same process,
exactly as ``streamlit run app.py ARGS`` would; ``app.py``'s own ``preload.start()`` is then a
no-op. ``scripts/app.sh`` runs it; ``$KALM_APP_PRELOAD=0`` turns the preload off.

    python scripts/serve.py [streamlit run options, e.g. --server.port 8599]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # as `streamlit run app.py` puts app.py's folder first

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def main(argv: list[str]) -> None:
    from kalm.ui import preload

    preload.start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
