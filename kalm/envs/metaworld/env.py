"""Meta-World behind the environment interface (``kalm.envs.base.Environment``)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from kalm.envs.base import ActionSpec, Environment, GoalItem, read_goal_items
from kalm.envs.metaworld.state import LAYOUT
from kalm.envs.metaworld.tasks import DATA_TASKS, TaskGoal

__all__ = ["MetaWorldEnvironment"]


class MetaWorldEnvironment(Environment):
    """A Sawyer arm, 22 tasks (10 with data, 8 easy and 4 hard unseen), 4-d continuous actions."""

    name = "metaworld"
    title = "Meta-World"
    horizon = 100
    can_set_state = False  # the arm is mocap-driven; imagined states are posed for rendering
    default_noise = 0.1
    stages = ("collect", "evaluate", "ground", "imagine", "train")
    render_fps = 10
    codec_module = "kalm.envs.metaworld.codec"
    # Episodes are 100-200 steps: grounding trains on windows of 10 steps from anywhere in an
    # episode, imagination writes long rollouts window by window; CLEVR's ball-specific heads
    # and explanation summary do not apply.
    grounding_defaults = {"rollout_windows": True, "max_steps_per_episode": 10, "action_head": "mlp",
                          "dynamics_head": "mlp", "explain_balls": False}

    def __init__(self) -> None:
        self.state = LAYOUT
        self.action = ActionSpec(kind="continuous", size=4, names=("dx", "dy", "dz", "grip"))

    # ----------------------------------------------------------------- simulators
    def make(self, goal: Any = None, *, render_mode: str | None = None, width: int = 320,
             height: int = 240, reward_mode: str = "dense") -> Any:
        from kalm.envs.metaworld.sim import MetaWorldSim

        return MetaWorldSim(goal, render_mode=render_mode, width=width, height=height,
                            reward_mode=reward_mode)

    def simulate(self, sim: Any, obs: np.ndarray, action: Any) -> np.ndarray:
        raise NotImplementedError("Meta-World cannot be set to a state vector; replay actions "
                                  "open-loop from the same seeded reset instead")

    # ----------------------------------------------------------------- goals and language
    def suite_items(self, suite: str, seed: int = 0) -> list:
        from kalm.envs.metaworld.language import suite_items

        return suite_items(suite, seed)

    def parse_goal(self, text: str) -> Any | None:
        from kalm.envs.metaworld.language import parse_goal

        return parse_goal(text)

    def goal_from_dict(self, d: Mapping[str, Any]) -> Any:
        return TaskGoal.from_dict(d)

    def item_from_dict(self, d: Mapping[str, Any]) -> Any:
        if not isinstance(d, Mapping) or not isinstance(d.get("text"), str) or not d["text"].strip():
            raise ValueError('each goal needs a non-empty "text"')
        text = d["text"]
        if d.get("goal") is not None:
            goal = TaskGoal.from_dict(d["goal"])
        else:
            goal = self.parse_goal(text)
            if goal is None:
                raise ValueError(f'cannot tell which task {text!r} means; add "goal": '
                                 '{"kind": "task", "task": NAME}')
        return GoalItem(text, goal, str(d.get("category", "custom")))

    def read_goals_file(self, path):
        return read_goal_items(path, self.item_from_dict, '{"kind": "task", "task": "door-open"}')

    def describe(self, goal: Any, style: str = "train", rng: np.random.Generator | None = None) -> str:
        from kalm.envs.metaworld.language import describe

        return describe(goal.task if isinstance(goal, TaskGoal) else str(goal), style, rng)

    def sample_goal(self, rng: np.random.Generator, style: str = "train") -> tuple[Any, str]:
        goal = TaskGoal(DATA_TASKS[int(rng.integers(len(DATA_TASKS)))])
        return goal, self.describe(goal, style, rng)

    def goal_horizon(self, goal: Any) -> int:
        from kalm.envs.metaworld.sim import task_horizon

        return task_horizon(goal.task)

    def success(self, goal: Any, obs: np.ndarray, start_obs: np.ndarray | None = None) -> bool:
        from kalm.envs.metaworld.success import task_success

        return task_success(goal.task, obs)

    def reward_labels(self, goal: Any, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from kalm.envs.metaworld.success import task_reward

        return task_reward(goal.task, self.check_obs(observations))

    # ----------------------------------------------------------------- policies
    def expert(self, seed: int | None = None, noise: float | None = None, **options: Any) -> Any:
        from kalm.envs.metaworld.expert import MetaWorldExpert

        if options:
            raise ValueError(f"the Meta-World expert takes no options; got {sorted(options)}")
        return MetaWorldExpert(noise=self.default_noise if noise is None else noise, seed=seed)

    # ----------------------------------------------------------------- rendering
    def episode_frames(self, observations: np.ndarray, actions: np.ndarray | None = None, *,
                       width: int = 320, height: int = 240, task: str | None = None) -> list[np.ndarray]:
        """One frame per state, the scene of ``task`` posed in each (see ``pose.py``).

        Without ``task``, the scene is guessed from which entity slots are filled."""
        o = self.check_obs(observations)
        task = task or _guess_task(o[0])
        sim = _render_sim()
        sim.reset(seed=0, options={"goal": TaskGoal(task)})
        frames = []
        for s in o:
            sim.pose(s)
            frames.append(sim.render(width, height))
        return frames

    # ---- app views
    # The interface's defaults (figures from the state and action names, replayed frames) serve
    # Meta-World as they are; only the positions figure gets a title that says what it shows.
    state_figure_title = "Positions of the gripper, target and objects"


def _guess_task(s: np.ndarray) -> str:
    from kalm.envs.metaworld.sim import TASK_ENTITIES
    from kalm.envs.metaworld.state import present

    for task, ents in TASK_ENTITIES.items():
        if all(present(s, e) for e in ents) and task in DATA_TASKS + ("hammer", "soccer"):
            return task
    return "reach"


_SIM = None


def _render_sim():
    global _SIM
    if _SIM is None:
        from kalm.envs.metaworld.sim import MetaWorldSim

        import atexit

        _SIM = MetaWorldSim()
        atexit.register(_SIM.close)  # free the GL contexts before EGL itself goes away
    return _SIM
