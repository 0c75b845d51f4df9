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
    stages = ("collect", "evaluate", "ground", "imagine", "train", "reproduce")
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
        # One shared simulator, used by one thread at a time, its GL context released after
        # (the app renders from a new thread on every rerun).
        with _RENDER_LOCK, _released_gl():
            sim = _render_sim()
            sim.reset(seed=0, options={"goal": TaskGoal(task)})
            frames = []
            for s in o:
                sim.pose(s)
                frames.append(sim.render(width, height))
        return frames

    # ----------------------------------------------------------------- imagination checks
    def validity_tolerances(self) -> dict[str, float]:
        from kalm.envs.metaworld import validity as v

        return {"hand_step_max": v.HAND_STEP_MAX, "finger_step_max": v.FINGER_STEP_MAX,
                "lift_margin": v.LIFT_MARGIN, "hold_distance": v.HOLD_DIST,
                "absurd_coord": v.ABSURD_COORD, "hand_wall_clearance": v.HAND_WALL_CLEARANCE}

    def explanation_candidates(self, observations: np.ndarray) -> list[str]:
        """The training phrasings of every data task whose success rule is false at ``s_0`` and
        true at ``s_T`` (the novel tasks have no training phrasings: the LM never learned to
        name them)."""
        from kalm.envs.metaworld.language import TRAIN_PHRASES
        from kalm.envs.metaworld.success import task_success

        obs = np.asarray(observations, np.float64)
        if len(obs) < 2 or not np.all(np.isfinite(obs[[0, -1]])):
            return []
        return [text for task in DATA_TASKS
                if task_success(task, obs[-1]) and not task_success(task, obs[0])
                for text in TRAIN_PHRASES[task]]

    def implausible_steps(self, observations: np.ndarray, next_observations: np.ndarray,
                          actions: np.ndarray) -> np.ndarray:
        """A gripper jump, a state absurd or out of the workspace, or a free object rising or
        hanging unheld (``kalm.envs.metaworld.validity.implausible_transitions``)."""
        from kalm.envs.metaworld.validity import implausible_transitions

        return implausible_transitions(observations, next_observations)

    def obstacle_crossings(self, goal: Any, states: np.ndarray) -> bool | None:
        """A hand or object path through the wall of a wall task
        (``kalm.envs.metaworld.validity.through_wall``: lower than the wall's top, + 4.5 cm for
        the hand, whose fingers hang below it: ``HAND_WALL_CLEARANCE_DECODING``); False for a
        task without a wall."""
        from kalm.envs.metaworld.validity import HAND_WALL_CLEARANCE_DECODING, through_wall

        task = getattr(goal, "task", None)
        if task is None:
            return None
        return any(bool(v.any()) for v in through_wall(
            task, states, hand_clearance=HAND_WALL_CLEARANCE_DECODING).values())

    def goal_progress(self, goal: Any, obs: np.ndarray,
                      start_obs: np.ndarray | None = None) -> float:
        """``kalm.envs.metaworld.success.task_progress``: minus the distance the task's rule still
        has to close, in radii, a large bonus once it holds."""
        from kalm.envs.metaworld.success import task_progress

        return task_progress(goal.task, obs)

    def check_rollout(self, goal: Any, observations: np.ndarray, actions: np.ndarray,
                      seed: int | None = None, sim: Any = None, explanation: str | None = None,
                      start_obs: np.ndarray | None = None) -> Any:
        """Meta-World's checks (``kalm.envs.metaworld.validity.check``) as a ``RolloutValidity``.

        Meta-World cannot be set to an imagined state, so a transition is *realistic* when it is
        physically plausible (no gripper jump, no floating object, no entity appearing or
        vanishing, nothing absurd); ``dynamics_error_*`` / ``step_errors`` are the hand's
        distance to the open-loop replay of the same actions from the seeded reset ``seed``
        (which must be the reset ``s_0`` came from); out of workbench means out of the arm's
        workspace; overlap is not checked (0). The full check is kept in ``extra``.
        """
        from kalm.envs.metaworld.validity import UNTOUCHED_REACH, WALLS, check, present_entities
        from kalm.imagine.validity import RolloutValidity

        if seed is None:
            raise ValueError("Meta-World rollouts are replayed from their seeded reset: pass seed")
        c = check(goal.task, int(seed), observations, actions,
                  sim=sim if getattr(sim, "pose", None) else None)
        hand = c["hand_errors"][1:]
        cycle = true = None
        if explanation is not None:
            explained = self.parse_goal(explanation)
            cycle = explained is not None and explained == goal
            obs = np.asarray(observations, np.float64)
            true = bool(explained is not None and len(obs) > 1 and np.all(np.isfinite(obs[-1]))
                        and self.success(explained, obs[-1]) and not self.success(explained, obs[0]))
        measured = [e for e in hand if e is not None]
        extra = {k: c[k] for k in ("floating_steps", "floating_objects", "gripper_jump_steps",
                                   "moved_absent_steps", "out_of_workspace_steps",
                                   "replay_success_step", "object_error_mean",
                                   "object_error_max", "start_error", "invalid_actions")}
        if goal.task in WALLS:  # the wall variants: what passed through the wall, and when
            extra.update(through_wall_steps=c["through_wall_steps"],
                         through_wall_entities=c["through_wall_entities"])
        if set(present_entities(np.asarray(observations)[0])) & set(UNTOUCHED_REACH):
            extra["untouched_steps"] = c["untouched_steps"]  # a part moved with no hand near
        return RolloutValidity(
            steps=c["steps"], goal_met=c["goal_met"], success_step=c["success_step"],
            transitions=c["transitions"], realistic_transitions=c["realistic_transitions"],
            first_unrealistic_step=c["first_unrealistic_step"],
            dynamics_error_mean=c["hand_error_mean"], dynamics_error_max=c["hand_error_max"],
            out_of_workbench_states=len(c["out_of_workspace_steps"]), overlap_states=0,
            absurd_states=len([t for t in c["absurd_steps"] if t > 0]),
            replay_success=c["replay_success"],
            replay_final_error=measured[-1] if measured and hand[-1] is not None else None,
            explanation=explanation, cycle_consistent=cycle, explanation_true=true,
            step_errors=list(hand), extra=extra)

    # ---- app views
    # The interface's defaults (figures from the state and action names, replayed frames) serve
    # Meta-World as they are; only the positions figure gets a title that says what it shows.
    state_figure_title = "Positions of the gripper, target and objects"

    def imagined_video_frames(self, goal: Any, reset_seed: int | None, observations: np.ndarray,
                              actions: Any, *, start_obs: np.ndarray | None = None,
                              substep_frames: int = 1, width: int = 320, height: int = 240,
                              side_by_side: bool = True, on_frame: Any = None,
                              step_stride: int = 1) -> Any:
        """Left: the imagined states posed in the scene of ``goal``'s task as reset with
        ``reset_seed`` (``pose.py``: the arm driven to the imagined hand, objects placed, jointed
        parts turned; a non-finite number keeps the previous state's, coordinates are clipped to
        +-2 m). Right: the simulator running the same actions open loop from that seeded reset
        (as ``validity.replay``: clipped to [-1, 1], a non-finite action played as 0). One frame
        a step (held ``substep_frames`` frames), at :meth:`imagined_video_fps`; with
        ``step_stride`` n > 1, only every n-th state (and the last) is drawn, at an n-th of the
        frame rate (the same pace: rendering, not posing, is what takes the time)."""
        from kalm.video import VideoFrames, side_by_side as beside

        if isinstance(goal, Mapping):
            goal = self.goal_from_dict(goal)
        if not isinstance(goal, TaskGoal):
            raise ValueError("a Meta-World imagined video needs the task its s_0 was reset for")
        seed = int(reset_seed or 0)
        obs = _posable(self.check_obs(observations))
        acts = np.asarray(actions, dtype=np.float64).reshape(-1, self.action.size)
        acts = np.clip(np.where(np.isfinite(acts), acts, 0.0), -1.0, 1.0)
        k, n = max(1, int(substep_frames)), max(1, int(step_stride))
        shown = sorted(set(range(0, len(obs), n)) | {len(obs) - 1})
        out = VideoFrames(fps=self.imagined_video_fps(k) / n)
        with _RENDER_LOCK, _released_gl():
            sim = _video_sim()
            replayed = {}
            if side_by_side:
                sim.reset(seed=seed, options={"goal": goal})
                replayed[0] = sim.render(width, height)
                for t, a in enumerate(acts, start=1):
                    sim.step(a)
                    if t in shown or t == len(acts):
                        replayed[t] = sim.render(width, height)
            sim.reset(seed=seed, options={"goal": goal})
            for t in shown:
                sim.pose(obs[t])
                frame = sim.render(width, height)
                if side_by_side:
                    frame = beside([frame], [replayed[min(t, len(acts))]],
                                   labels=self.imagined_pane_labels)[0]
                for _ in range(k if t < len(obs) - 1 else 1):
                    out.append(frame)
                    if on_frame is not None:
                        on_frame(frame)
        return out


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


_RENDER_LOCK = __import__("threading").Lock()
"""Held while a video is drawn with the shared video simulator (app sessions share it)."""

_VIDEO_SIM = None


def _video_sim():
    """The simulator imagined-rollout videos are drawn with (one a process, apart from
    ``_render_sim``: its GL contexts are released after every video, see ``_released_gl``)."""
    global _VIDEO_SIM
    if _VIDEO_SIM is None:
        import atexit

        from kalm.envs.metaworld.sim import MetaWorldSim

        _VIDEO_SIM = MetaWorldSim()
        atexit.register(_VIDEO_SIM.close)
    return _VIDEO_SIM


class _released_gl:
    """Leaves no EGL context current in this thread on exit: a context current in one thread
    cannot be made current in another (EGL_BAD_ACCESS), and every Streamlit rerun runs in a new
    thread, so a renderer shared between reruns must not stay bound to a finished one."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        import os

        if os.environ.get("MUJOCO_GL", "").lower() != "egl":
            return
        try:
            from mujoco import egl
            from OpenGL import EGL

            if getattr(egl, "EGL_DISPLAY", None) is not None:
                EGL.eglMakeCurrent(egl.EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE,
                                   EGL.EGL_NO_CONTEXT)
        except Exception:  # no EGL here: nothing was bound
            pass


def _posable(obs: np.ndarray) -> np.ndarray:
    """Imagined states a scene can be posed in: a non-finite number takes the previous state's
    (``s_0`` is real), every coordinate clipped to +-2 m."""
    o = np.array(obs, dtype=np.float64, copy=True)
    for t in range(len(o)):
        bad = ~np.isfinite(o[t])
        if bad.any():
            o[t, bad] = o[t - 1, bad] if t else 0.0
    return np.clip(o, -2.0, 2.0)
