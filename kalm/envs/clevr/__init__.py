"""CLEVR-Robot: five balls, 40 discrete pushes (``ENVIRONMENT``, the interface's implementation).

``kalm.envs.clevr.ClevrRobotEnv`` and the simulator's constants (``N_BALLS``, ``PUSH_DIRECTIONS``,
...) are served from ``sim`` on first use, so the historical import path keeps working while
``ENVIRONMENT`` imports without the physics engine.
"""

from typing import Any

from kalm.envs.clevr.env import ClevrEnvironment

ENVIRONMENT = ClevrEnvironment()

__all__ = ["ENVIRONMENT", "ClevrEnvironment"]


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    import importlib

    sim = importlib.import_module("kalm.envs.clevr.sim")
    try:
        return getattr(sim, name)
    except AttributeError:
        raise AttributeError(f"module 'kalm.envs.clevr' has no attribute {name!r}") from None
