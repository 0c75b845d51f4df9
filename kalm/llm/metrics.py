"""Compatibility alias: grounding metrics are an environment's own; CLEVR-Robot's (explanation
accuracy, match and replay, next-action accuracy, dynamics error) now live in
``kalm.envs.clevr.metrics``. This module *is* that one (the same module object), so every name
and monkeypatch still works. Meta-World's counterparts: ``bench/metaworld_grounding_bench.py``.
"""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("kalm.envs.clevr.metrics")
