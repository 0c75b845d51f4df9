"""Test-wide settings: headless rendering, no downloads, and the repo root importable."""

import os
import sys
from pathlib import Path

# Set before anything imports mujoco / OpenGL / transformers.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Tests use tiny models: one thread avoids oversubscription on small shared CPUs.
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_app_preload(monkeypatch):
    """The app's background preload (``kalm.ui.preload``) would load the shipped grounded model
    whenever a test runs ``app.py``: off unless a test turns it on (with its own tiny model), and
    its registry forgotten after each test."""
    monkeypatch.setenv("KALM_APP_PRELOAD", "0")
    yield
    if "kalm.ui.preload" in sys.modules:
        sys.modules["kalm.ui.preload"].reset()
