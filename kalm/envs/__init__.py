"""Environments behind one interface (``kalm.envs.base.Environment``).

Each environment is a package ``kalm/envs/<name>/`` that exposes ``ENVIRONMENT``; ``get_env``
finds it by name, so adding an environment touches nothing outside its own folder.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from pathlib import Path

from kalm.envs.base import SUITES, ActionSpec, Environment, GoalItem, Policy, RandomPolicy, StateLayout

__all__ = [
    "DEFAULT_ENV",
    "SUITES",
    "ActionSpec",
    "Environment",
    "GoalItem",
    "Policy",
    "RandomPolicy",
    "StateLayout",
    "env_names",
    "get_env",
]

DEFAULT_ENV = "clevr"


def env_names() -> list[str]:
    """The registered environments: the packages under ``kalm/envs/`` (default first)."""
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.ispkg)
    return sorted(names, key=lambda n: n != DEFAULT_ENV)


@lru_cache(maxsize=None)
def get_env(name: str | Environment | None = None) -> Environment:
    """The environment registered as ``name`` (default ``clevr``); raises ValueError if unknown."""
    if isinstance(name, Environment):
        return name
    name = name or DEFAULT_ENV
    if name not in env_names():
        raise ValueError(f"unknown environment {name!r}; choose one of: {', '.join(env_names())}")
    module = importlib.import_module(f"kalm.envs.{name}")
    env = getattr(module, "ENVIRONMENT", None)
    if not isinstance(env, Environment):
        raise TypeError(f"kalm.envs.{name} must define ENVIRONMENT, an Environment instance")
    return env
