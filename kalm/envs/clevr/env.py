"""CLEVR-Robot behind the environment interface (``kalm.envs.base.Environment``)."""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from kalm.envs.base import ActionSpec, Environment, StateLayout
from kalm.goals.spec import COLORS, MAX_EPISODE_STEPS

__all__ = ["ClevrEnvironment", "DIRECTION_LABELS"]

# Push direction labels in the order of kalm.envs.clevr.sim.PUSH_DIRECTIONS.
DIRECTION_LABELS = ("right", "behind", "left", "front", "right-behind", "left-behind",
                    "right-front", "left-front")


class ClevrEnvironment(Environment):
    """Five balls on a table, 40 discrete pushes (see ``kalm.envs.clevr.sim.ClevrRobotEnv``)."""

    name = "clevr"
    title = "CLEVR-Robot"
    horizon = MAX_EPISODE_STEPS
    can_set_state = True

    expert_modes = ("greedy", "direct", "aim")

    def __init__(self) -> None:
        self._lookahead = threading.local()
        self.state = StateLayout(
            names=tuple(f"{c} {ax}" for c in COLORS for ax in ("x", "y")),
            groups=tuple((f"{c} ball", 2 * i, 2 * i + 2) for i, c in enumerate(COLORS)),
        )
        self.action = ActionSpec(
            kind="discrete",
            size=len(COLORS) * len(DIRECTION_LABELS),
            names=tuple(f"push {c} {d}" for c in COLORS for d in DIRECTION_LABELS),
        )

    # ----------------------------------------------------------------- simulators
    def make(self, goal: Any = None, *, render_mode: str | None = None, width: int = 320,
             height: int = 240, reward_mode: str = "dense") -> Any:
        from kalm.envs.clevr.sim import ClevrRobotEnv

        return ClevrRobotEnv(goal=goal, reward_mode=reward_mode, render_mode=render_mode,
                             width=width, height=height)

    def simulate(self, sim: Any, obs: np.ndarray, action: Any) -> np.ndarray:
        return sim.simulate(obs, int(action))

    # ----------------------------------------------------------------- goals and language
    def suite_items(self, suite: str, seed: int = 0) -> list:
        from kalm.goals.suites import suite_items

        return suite_items(suite, seed)

    def parse_goal(self, text: str) -> Any | None:
        from kalm.goals.parser import parse_goal_text

        return parse_goal_text(text)

    def goal_from_dict(self, d: Mapping[str, Any]) -> Any:
        from kalm.goals.spec import goal_from_dict

        return goal_from_dict(d)

    def item_from_dict(self, d: Mapping[str, Any]) -> Any:
        from kalm.goals.suites import GoalItem

        return GoalItem.from_dict(d)

    def describe(self, goal: Any, style: str = "train", rng: np.random.Generator | None = None) -> str:
        from kalm.goals.language import describe

        return describe(goal, rng, style=style)

    def sample_goal(self, rng: np.random.Generator, style: str = "train") -> tuple[Any, str]:
        from kalm.goals.language import describe
        from kalm.goals.suites import relation_configs

        configs = relation_configs()
        goal = configs[int(rng.integers(len(configs)))]
        return goal, describe(goal, rng, style=style)

    def goals_equivalent(self, a: Any, b: Any) -> bool:
        from kalm.goals.parser import goals_equivalent

        return goals_equivalent(a, b)

    def goal_horizon(self, goal: Any) -> int:
        from kalm.goals.spec import goal_horizon

        return goal_horizon(goal)

    def reward_labels(self, goal: Any, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from kalm.goals.spec import goal_reward

        o = self.check_obs(observations)
        dense = [goal_reward(goal, o[t], o[t + 1], o[0], "dense") for t in range(len(o) - 1)]
        sparse = [goal_reward(goal, o[t], o[t + 1], o[0], "sparse") for t in range(len(o) - 1)]
        return np.asarray(dense, np.float32), np.asarray(sparse, np.float32)

    # ----------------------------------------------------------------- policies
    def expert(self, seed: int | None = None, noise: float | None = None, **options: Any) -> Any:
        """``ExpertPolicy``; ``mode`` one of :attr:`expert_modes`. Experts made in one thread share
        one lookahead simulator (building a MuJoCo model per episode would dominate collection)."""
        from kalm.envs.clevr.expert import ExpertPolicy

        if "env" not in options:
            sim = getattr(self._lookahead, "sim", None)
            if sim is None:
                sim = self._lookahead.sim = self.make()
            options["env"] = sim
        return ExpertPolicy(noise=self.default_noise if noise is None else noise, seed=seed,
                            **options)

    # ----------------------------------------------------------------- rendering
    def episode_frames(self, observations: np.ndarray, actions: np.ndarray | None = None, *,
                       width: int = 320, height: int = 240) -> list[np.ndarray]:
        from kalm.envs.clevr.render import episode_frames, shared_renderer

        o = self.check_obs(observations)
        if actions is None:  # the states alone, one frame each
            with shared_renderer(width, height, quality="full") as r:
                return [r.render_obs(s) for s in o]
        return list(episode_frames(o, np.asarray(actions, np.int64), width=width, height=height))
