"""Compatibility alias: CLEVR-Robot's scripted expert now lives in ``kalm.envs.clevr.expert``.

This module *is* that one (the same module object), so every name and monkeypatch still works.
"""

import sys

from kalm.envs.clevr import expert as _module

sys.modules[__name__] = _module
