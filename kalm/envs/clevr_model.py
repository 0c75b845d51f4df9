"""Compatibility alias: CLEVR-Robot's MJCF scene now lives in ``kalm.envs.clevr.model``.

This module *is* that one (the same module object), so every name and monkeypatch still works.
"""

import sys

from kalm.envs.clevr import model as _module

sys.modules[__name__] = _module
