"""The policy interface every evaluated policy implements, and the random floor."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from kalm.envs.clevr import N_ACTIONS
from kalm.goals.spec import Goal

__all__ = ["Policy", "RandomPolicy"]


@runtime_checkable
class Policy(Protocol):
    """A goal-conditioned CLEVR-Robot policy.

    ``reset(goal, obs, text)`` starts an episode (policies that read language use ``text``,
    oracles use ``goal``); ``act(obs)`` returns a Discrete(40) action.
    """

    name: str

    def reset(self, goal: Goal, obs: np.ndarray, text: str = "") -> None: ...

    def act(self, obs: np.ndarray) -> int: ...


class RandomPolicy:
    """Uniformly random pushes: the floor every learned policy must beat."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, goal: Goal, obs: np.ndarray, text: str = "") -> None:
        pass

    def act(self, obs: np.ndarray) -> int:
        return int(self.rng.integers(N_ACTIONS))
