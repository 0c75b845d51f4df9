"""Compatibility alias: CLEVR-Robot's goal language (specs and success rules, texts, parser,
suites) now lives in ``kalm.envs.clevr.goals``. ``kalm.goals`` and its submodules *are* those
modules (the same objects), so every name and monkeypatch still works; stages reach the goal
language through the environment interface (``Environment.parse_goal``, ``suite_items``, ...).
"""

import importlib
import sys

for _name in ("spec", "language", "parser", "suites"):
    sys.modules[f"{__name__}.{_name}"] = importlib.import_module(f"kalm.envs.clevr.goals.{_name}")
sys.modules[__name__] = importlib.import_module("kalm.envs.clevr.goals")
