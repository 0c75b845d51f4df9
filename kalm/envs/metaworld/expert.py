"""Meta-World's scripted experts (``metaworld.policies``), reading the 91-d state.

Each task's v3 policy reads the raw 39-d observation; ``sim.raw_obs`` rebuilds it from the state
(the previous-frame half is the current frame again: the scripted policies do not read it). The
composite tasks chain the two sub-tasks' policies, switching when the first sub-goal holds in
the current state. ``noise`` is the std of Gaussian action noise (clipped to [-1, 1]), as the
paper's data collection used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kalm.envs.metaworld.state import entity
from kalm.envs.metaworld.tasks import ALL_TASKS, TaskGoal

__all__ = ["MetaWorldExpert"]


def _policy(task: str) -> Any:
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[f"{task}-v3"]()


class MetaWorldExpert:
    """The scripted expert of whatever task the episode's goal names."""

    name = "expert"

    def __init__(self, noise: float = 0.1, seed: int | None = None) -> None:
        if noise < 0:
            raise ValueError("noise must be >= 0")
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self._policies: dict[str, Any] = {}
        self.task: str | None = None

    def _get(self, task: str) -> Any:
        if task not in self._policies:
            self._policies[task] = _policy(task)
        return self._policies[task]

    def reset(self, goal: Any, obs: np.ndarray, text: str = "") -> None:
        task = goal.task if isinstance(goal, TaskGoal) else str(goal)
        if task not in ALL_TASKS:
            raise ValueError(f"no expert for {task!r}")
        self.task = task
        self._approached = False

    def _clean_action(self, s: np.ndarray) -> np.ndarray:
        from kalm.envs.metaworld.sim import raw_obs

        task = self.task
        if task == "make-coffee":
            from kalm.envs.metaworld.composite import BUTTON_TARGET, MUG_SPOT
            from kalm.envs.metaworld.success import RULES

            machine = entity(s, "coffee machine")
            mug_dist, radius = RULES["coffee-push"]
            under = s.copy()
            under[4:7] = machine + MUG_SPOT
            if mug_dist(under) > radius:  # first the mug under the machine
                return self._get("coffee-push").get_action(raw_obs("coffee-push", under, ("mug",)))
            goal = machine + BUTTON_TARGET
            return self._get("coffee-button").get_action(
                raw_obs("coffee-button", s, ("coffee button",), goal=goal))
        if task == "locked-door-open":
            from kalm.envs.metaworld.composite import LOCK_OPEN_RAD, lock_angle

            if lock_angle(s) > 0.5 * LOCK_OPEN_RAD:  # first unlock
                return self._get("door-unlock").get_action(raw_obs("door-unlock", s, ("lock",)))
            if not self._approached:  # from the lock, come at the handle from above first,
                # as door-open's policy does when it starts far from the handle
                above = entity(s, "door handle") + np.array([0.01, 0.02, 0.2])
                if np.linalg.norm(s[0:3] - above) < 0.03:
                    self._approached = True
                else:
                    return np.r_[np.clip(25.0 * (above - s[0:3]), -1, 1), 1.0]
            return self._get("door-open").get_action(raw_obs("door-open", s, ("door handle",)))
        return self._get(task).get_action(raw_obs(task, s))

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.task is None:
            raise RuntimeError("call reset(goal, obs) first")
        a = np.asarray(self._clean_action(np.asarray(obs, dtype=np.float64)), dtype=np.float64)
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, size=a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)
