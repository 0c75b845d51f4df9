"""Compatibility alias: the CLEVR-Robot scene now lives in ``kalm.envs.clevr.model``."""

from kalm.envs.clevr.model import *  # noqa: F401,F403
from kalm.envs.clevr.model import __all__  # noqa: F401
