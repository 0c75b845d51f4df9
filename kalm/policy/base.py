"""The policy interface every evaluated policy implements, and the random floor.

Both live with the environment interface (``kalm.envs.base``); ``RandomPolicy(seed)`` without an
action spec draws CLEVR-Robot's Discrete(40), ``env.random_policy(seed)`` any environment's.
"""

from __future__ import annotations

from kalm.envs.base import Policy, RandomPolicy

__all__ = ["Policy", "RandomPolicy"]
