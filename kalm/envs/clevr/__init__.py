"""CLEVR-Robot: five balls, 40 discrete pushes (``ENVIRONMENT``, the interface's implementation).

``kalm.envs.clevr.ClevrRobotEnv`` and the simulator's constants are re-exported from ``sim`` so
the historical import path keeps working.
"""

from kalm.envs.clevr import sim as _sim
from kalm.envs.clevr.env import ClevrEnvironment
from kalm.envs.clevr.sim import *  # noqa: F401,F403

# The simulator's constants (PUSH_START_OFFSET, PUSH_SUBSTEPS, ...) too, not only its __all__.
globals().update({k: v for k, v in vars(_sim).items() if k.isupper() and not k.startswith("_")})

ENVIRONMENT = ClevrEnvironment()

__all__ = ["ENVIRONMENT", "ClevrEnvironment", *_sim.__all__]
