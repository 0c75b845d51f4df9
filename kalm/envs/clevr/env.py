"""CLEVR-Robot behind the environment interface (``kalm.envs.base.Environment``)."""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from kalm.envs.base import ActionSpec, Environment, StateLayout
from kalm.envs.clevr.goals.spec import COLORS, MAX_EPISODE_STEPS

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
    codec_module = "kalm.envs.clevr.codec"
    # The state is five balls' (x, y), action a = ball * 8 + direction: the policy's pairwise
    # features and its role network (kalm.rl.encoder) are made for that.
    policy_defaults = {"state_features": "pairwise", "arch": "roles"}
    policy_entities = (5, 2, 8)
    imagined_substep_frames = 2  # frames a push in imagined-rollout videos (kalm.envs.clevr.imagined)

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
        from kalm.envs.clevr.goals.suites import suite_items

        return suite_items(suite, seed)

    def parse_goal(self, text: str) -> Any | None:
        from kalm.envs.clevr.goals.parser import parse_goal_text

        return parse_goal_text(text)

    def goal_from_dict(self, d: Mapping[str, Any]) -> Any:
        from kalm.envs.clevr.goals.spec import goal_from_dict

        return goal_from_dict(d)

    def item_from_dict(self, d: Mapping[str, Any]) -> Any:
        from kalm.envs.clevr.goals.suites import GoalItem

        return GoalItem.from_dict(d)

    def read_goals_file(self, path):
        from kalm.envs.clevr.goals.suites import read_goals_file

        return read_goals_file(path)

    def describe(self, goal: Any, style: str = "train", rng: np.random.Generator | None = None) -> str:
        from kalm.envs.clevr.goals.language import describe

        return describe(goal, rng, style=style)

    def sample_goal(self, rng: np.random.Generator, style: str = "train") -> tuple[Any, str]:
        from kalm.envs.clevr.goals.language import describe
        from kalm.envs.clevr.goals.suites import relation_configs

        configs = relation_configs()
        goal = configs[int(rng.integers(len(configs)))]
        return goal, describe(goal, rng, style=style)

    def goals_equivalent(self, a: Any, b: Any) -> bool:
        from kalm.envs.clevr.goals.parser import goals_equivalent

        return goals_equivalent(a, b)

    def goal_horizon(self, goal: Any) -> int:
        from kalm.envs.clevr.goals.spec import goal_horizon

        return goal_horizon(goal)

    def reward_labels(self, goal: Any, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from kalm.envs.clevr.goals.spec import goal_reward

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

    # ----------------------------------------------------------------- imagination checks
    def calibration_rollouts(self, rng: np.random.Generator, n: int, steps: int) -> list:
        """Relation goals between random balls in the training phrasing, states uniform over the
        workbench's middle, random pushes (the draws int8 calibration has always used)."""
        from kalm.envs.clevr.goals.language import describe
        from kalm.envs.clevr.goals.spec import Relation

        out = []
        for k in range(n):
            src, dst = rng.choice(len(COLORS), 2, replace=False)
            goal = Relation(COLORS[src], COLORS[dst], ("left", "right", "front", "behind")[k % 4])
            text = describe(goal, rng)
            obs = rng.uniform(-0.45, 0.45, (steps + 1, 10)).astype(np.float32)
            acts = rng.integers(0, self.action.size, steps)
            out.append((text, obs, acts))
        return out

    def imagine_start(self, goal: Any, seed: int) -> np.ndarray:
        from kalm.envs.clevr.sim import ClevrRobotEnv

        obs, _ = ClevrRobotEnv().reset(seed=int(seed))
        return np.asarray(obs, np.float32)

    def validity_tolerances(self) -> dict[str, float]:
        from kalm.envs.clevr import validity as v

        return {"realistic_tolerance": v.REALISTIC_TOLERANCE, "workbench_margin": v.WORKBENCH_MARGIN,
                "overlap_distance": v.OVERLAP_DISTANCE, "absurd_coord": v.ABSURD_COORD}

    def implausible_steps(self, observations: np.ndarray, next_observations: np.ndarray,
                          actions: np.ndarray) -> np.ndarray:
        """Off the workbench, balls inside each other, or the pushed ball through a still one
        (``kalm.envs.clevr.validity.implausible_transitions``)."""
        from kalm.envs.clevr.validity import implausible_transitions

        return implausible_transitions(observations, next_observations, actions)

    def goal_progress(self, goal: Any, obs: np.ndarray,
                      start_obs: np.ndarray | None = None) -> float:
        """``kalm.envs.clevr.goals.spec.goal_progress``: minus the distances the goal's rule
        still has to close, a large bonus once it holds."""
        from kalm.envs.clevr.goals.spec import goal_progress

        return goal_progress(goal, obs, start_obs)

    def explanation_candidates(self, observations: np.ndarray) -> list[str]:
        """Every relation false at ``s_0`` and true at ``s_T`` (``achieved_relations``), in both
        of its forms ("red left of blue", "blue right of red"), each in every training phrasing
        (the rephrase pool and the novel suites' wordings are never used)."""
        from kalm.envs.clevr.goals.language import all_phrasings
        from kalm.envs.clevr.goals.spec import Relation, achieved_relations

        obs = np.asarray(observations, np.float64)
        if len(obs) < 2 or not np.all(np.isfinite(obs[[0, -1]])):
            return []
        mirror = {"left": "right", "right": "left", "front": "behind", "behind": "front"}
        texts: list[str] = []
        for r in achieved_relations(obs[0], obs[-1]):
            for form in (r, Relation(r.dst, r.src, mirror[r.dir])):
                texts.extend(all_phrasings(form, "train"))
        return texts

    def relabel_episode(self, text: str, goal: Mapping[str, Any], observations: np.ndarray,
                        actions: np.ndarray, rng: np.random.Generator):
        """The episode with the balls' colours relabelled by a random permutation other than the
        identity (``kalm.envs.clevr.symmetry.recolour``): states, pushes, goal and the text's
        colour words alike. None where the text leaves a goal colour implicit."""
        from kalm.envs.clevr.symmetry import COLORS, recolour

        perm = rng.permutation(len(COLORS))
        while np.array_equal(perm, np.arange(len(COLORS))):
            perm = rng.permutation(len(COLORS))
        return recolour(text, dict(goal), observations, actions, perm)

    def goal_mentions(self, text: str) -> list[int]:
        """The balls ``text`` names by their colour words, in order (a ball named twice counts
        twice); a text that names none gives []."""
        from kalm.envs.clevr.symmetry import colour_mentions

        return colour_mentions(text)

    def check_rollout(self, goal: Any, observations: np.ndarray, actions: np.ndarray,
                      seed: int | None = None, sim: Any = None, explanation: str | None = None,
                      start_obs: np.ndarray | None = None) -> Any:
        """CLEVR's checks (``kalm.envs.clevr.validity.check_rollout``): each transition
        re-simulated from the imagined state, the replay from ``s_0`` (``seed`` is not needed)."""
        from kalm.envs.clevr.validity import check_rollout

        return check_rollout(sim if sim is not None else self.make(), observations, actions, goal,
                             start_obs=start_obs, explanation=explanation)

    # ---- app views
    # CLEVR-Robot's own figures (kalm/envs/clevr/plots.py) and its animated pushes.
    figure_notes = {
        "top": "Top view: ○ start, ● end, balls drawn to scale at the chosen step.",
        "actions": "The ball pushed at each step; the arrow points the way it was pushed, as seen "
                   "in the top view.",
    }

    def views(self) -> Any:
        from kalm.envs.clevr import plots

        return plots

    def action_label(self, action: Any) -> str:
        from kalm.envs.clevr.plots import action_label

        return action_label(int(action))

    def episode_figures(self, observations: np.ndarray, actions: np.ndarray | None = None,
                        step: int | None = None, *, compare: np.ndarray | None = None,
                        names: tuple[str, str] = ("", "simulator")) -> dict[str, Any]:
        """``"top"`` (the balls' paths seen from above, to scale at ``step``), ``"positions"``
        (x and y of each ball) and, with actions, ``"actions"`` (one push arrow per step)."""
        from kalm.envs.clevr import plots

        figs = {"top": plots.topview_figure(observations, step, compare=compare, names=names),
                "positions": plots.positions_figure(observations, step, compare=compare,
                                                    names=names)}
        if actions is not None and len(actions):
            figs["actions"] = plots.actions_figure(actions, step)
        return figs

    def topview_image(self, observations: np.ndarray, size: int = 420) -> np.ndarray:
        from kalm.envs.clevr.plots import topview_image

        return topview_image(observations, size)

    def step_errors_figure(self, errors: np.ndarray, tolerance: float, step: int | None = None,
                           title: str = "Per-ball error") -> Any:
        from kalm.envs.clevr.plots import step_errors_figure

        return step_errors_figure(errors, tolerance, step, title=title)

    def replay_video_frames(self, goal: Any, reset_seed: int, actions: Any, *, width: int = 320,
                            height: int = 240) -> list[np.ndarray]:
        """The episode's states replayed from its seeded reset, each push animated (the pusher
        moving the ball, four frames a push, as the Data page's physics replay)."""
        from kalm.envs.clevr.render import episode_frames

        if isinstance(goal, Mapping):
            goal = self.goal_from_dict(goal)
        sim = self.make()
        try:
            sim.reset(seed=int(reset_seed), options={"goal": goal})
            obs = [sim.get_obs().copy()]
            for a in actions:
                sim.step(int(a))
                obs.append(sim.get_obs().copy())
        finally:
            sim.close()
        return episode_frames(np.asarray(obs), np.asarray(actions, np.int64).reshape(-1),
                              width=width, height=height)

    def animated_frames(self, observations: np.ndarray, actions: Any, *, mode: str = "simulate",
                        substep_frames: int = 4, width: int = 320,
                        height: int = 240) -> list[np.ndarray]:
        """``kalm.envs.clevr.render.episode_frames``: the pusher's push of every step, run from
        the recorded state ("simulate") or interpolated between recorded states ("states")."""
        from kalm.envs.clevr.render import episode_frames

        return episode_frames(observations, actions, mode=mode, substep_frames=substep_frames,
                              width=width, height=height)

    def imagined_video_fps(self, substep_frames: int = 2) -> float:
        from kalm.envs.clevr.imagined import VIDEO_STEP_SECONDS

        return max(1, int(substep_frames)) / VIDEO_STEP_SECONDS

    def imagined_video_frames(self, goal: Any, reset_seed: int | None, observations: np.ndarray,
                              actions: Any, *, start_obs: np.ndarray | None = None,
                              substep_frames: int = 2, width: int = 320, height: int = 240,
                              side_by_side: bool = True, on_frame: Any = None,
                              renderer: Any = None) -> Any:
        """``kalm.envs.clevr.imagined.imagined_frames``: the imagined states beside the replay
        from ``start_obs`` (default: the imagined ``s_0``; ``goal`` and ``reset_seed`` are not
        needed, CLEVR-Robot can be set to a state), each push in ``substep_frames`` frames."""
        from kalm.envs.clevr.imagined import imagined_frames

        return imagined_frames(observations, actions, side_by_side, start_obs, width, height,
                               substep_frames=substep_frames, renderer=renderer,
                               on_frame=on_frame)
