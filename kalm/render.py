"""Compatibility alias: CLEVR-Robot's scene renderer now lives in ``kalm.envs.clevr.render``.

This module *is* that one (the same module object), so every name and monkeypatch still works.
"""

import sys

from kalm.envs.clevr import render as _module

sys.modules[__name__] = _module
