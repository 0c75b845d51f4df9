"""The environment interface: what every stage of KALM needs from an environment, and no more.

An *environment* here is a whole task family with its language, not one simulator instance: it
says what a state and an action look like (with names, for plots and the UI), makes simulators
(gymnasium envs), judges goals from states, labels rewards, supplies the expert and the goal
language (templates, parser, the four suites), and renders real and imagined states.

Stages (data collection, grounding, imagination, validity checks, offline RL, evaluation, the
app) talk only to this interface; each concrete environment lives in its own package under
``kalm/envs/<name>/`` and registers itself by exposing ``ENVIRONMENT`` (an :class:`Environment`
instance) there. ``kalm.envs.get_env(name)`` finds it; nothing outside the package imports it.

## The simulator a :meth:`Environment.make` returns
A ``gymnasium.Env`` with:

- ``reset(seed=..., options={"goal": goal})`` -> ``(obs, info)``; ``info["success"]`` says whether
  the goal already holds. ``options={"state": obs}`` (where :attr:`Environment.can_set_state`)
  starts from a given state vector instead of a seeded draw.
- ``step(action)`` -> ``(obs, reward, terminated, truncated, info)``; ``info["success"]`` each
  step, ``info["reward_dense"]`` / ``info["reward_sparse"]`` both reward labels of the step
  (whatever ``reward`` returns), ``terminated`` when the goal holds, ``truncated`` at the goal's
  horizon.
- ``get_obs()`` -> the current state vector, float64, laid out as :attr:`Environment.state`.
- ``render()`` -> an RGB frame (``render_mode="rgb_array"``).
- ``env_name``: the environment's registry name (episodes played in it are labelled with it).

Observations are the environment's *state vector* (the LM reads and writes these), not
necessarily the raw simulator observation.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "SUITES",
    "ActionSpec",
    "Environment",
    "EnvGoal",
    "GoalItem",
    "GoalsFileError",
    "Policy",
    "RandomPolicy",
    "StateLayout",
    "read_goal_items",
    "write_goal_items",
]

SUITES = ("train", "rephrase", "easy", "hard")
"""The evaluation suites every environment defines (KALM's protocol): the training goals in the
training wordings, the same goals reworded, unseen easy goals and unseen hard goals."""


@dataclass(frozen=True)
class StateLayout:
    """Names for the parts of a state vector.

    ``names`` has one entry per dimension ("red x", "hand z", ...). ``groups`` maps an entity
    ("red ball", "gripper", "mug") to the (start, stop) slice of its dimensions, in order; plots
    and the UI draw one trace group per entity.
    """

    names: tuple[str, ...]
    groups: tuple[tuple[str, int, int], ...] = ()

    @property
    def dim(self) -> int:
        return len(self.names)

    def group(self, name: str) -> slice:
        for g, a, b in self.groups:
            if g == name:
                return slice(a, b)
        raise KeyError(f"no state group {name!r}; groups: {[g for g, _, _ in self.groups]}")


@dataclass(frozen=True)
class ActionSpec:
    """The action space in the terms stages need.

    ``kind`` "discrete": actions are ints in ``[0, size)``, ``names[a]`` labels action ``a``.
    ``kind`` "continuous": actions are float vectors of length ``size`` in ``[low, high]``,
    ``names[i]`` labels channel ``i``.
    """

    kind: str
    size: int
    names: tuple[str, ...]
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("discrete", "continuous"):
            raise ValueError(f"action kind must be 'discrete' or 'continuous'; got {self.kind!r}")
        if len(self.names) != self.size:
            raise ValueError(f"{self.size} actions/channels need {self.size} names")

    @property
    def discrete(self) -> bool:
        return self.kind == "discrete"

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one action in a dataset: () for discrete, (size,) for continuous."""
        return () if self.discrete else (self.size,)

    def check(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` (T,) or (T, size) validated and cast (int64 / float32); raises ValueError."""
        a = np.asarray(actions)
        if self.discrete:
            a = a.astype(np.int64).reshape(-1)
            if a.size and ((a < 0) | (a >= self.size)).any():
                raise ValueError(f"actions must lie in [0, {self.size})")
            return a
        a = a.astype(np.float32).reshape(-1, self.size) if a.size else np.zeros((0, self.size), np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError("actions must be finite")
        return a

    def sample(self, rng: np.random.Generator) -> int | np.ndarray:
        if self.discrete:
            return int(rng.integers(self.size))
        return rng.uniform(self.low, self.high, size=self.size).astype(np.float32)


@runtime_checkable
class EnvGoal(Protocol):
    """A goal object: judged from states, with a JSON form."""

    kind: str

    def holds(self, obs: np.ndarray, start_obs: np.ndarray | None = None) -> bool: ...

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class GoalItem:
    """An instruction text, the goal it means, and its category (a suite name or "custom").

    Environments may use their own item class with the same fields (CLEVR's validates goals).
    """

    text: str
    goal: Any
    category: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "goal": self.goal.to_dict(), "category": self.category}


class GoalsFileError(ValueError):
    """A goals file that cannot be used; the message names the file, the line and the problem."""


def read_goal_items(
    path: str | Path, item_from_dict: Callable[[Any], Any], example: str = "{...}"
) -> list:
    """Read a JSON Lines goals file, checking every line before returning anything.

    Raises GoalsFileError naming the file, each bad line's number and what is wrong with it.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise GoalsFileError(f"{path}: no such goals file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GoalsFileError(f"{path}: cannot read the goals file ({e})") from None
    items: list = []
    errors: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"line {number}: not valid JSON ({e.msg} at column {e.colno})")
            continue
        try:
            items.append(item_from_dict(record))
        except ValueError as e:
            errors.append(f"line {number}: {e}")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise GoalsFileError(
            f"{path}: {len(errors)} bad line(s); nothing was run. Each line must be a JSON object "
            f'like {{"text": "...", "goal": {example}, "category": "custom"}}\n  '
            + "\n  ".join(shown)
        )
    if not items:
        raise GoalsFileError(f"{path}: the goals file holds no goals (every line is blank)")
    return items



def write_goal_items(path: str | Path, items) -> Path:
    """Write goal items (anything with ``to_dict()``) as JSON Lines, parent folders created;
    ``read_goal_items`` reads them back. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
    return path


@runtime_checkable
class Policy(Protocol):
    """A goal-conditioned policy.

    ``reset(goal, obs, text)`` starts an episode (policies that read language use ``text``,
    oracles use ``goal``); ``act(obs)`` returns an action of the environment's
    :class:`ActionSpec` (an int for discrete actions, a float vector for continuous ones).
    """

    name: str

    def reset(self, goal: Any, obs: np.ndarray, text: str = "") -> None: ...

    def act(self, obs: np.ndarray) -> int | np.ndarray: ...


class RandomPolicy:
    """Uniformly random actions: the floor every learned policy must beat."""

    name = "random"

    def __init__(self, seed: int | None = None, action: ActionSpec | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.action = action

    def reset(self, goal: Any, obs: np.ndarray, text: str = "") -> None:
        pass

    def act(self, obs: np.ndarray) -> int | np.ndarray:
        if self.action is None:  # CLEVR-Robot's Discrete(40), the historical default
            return int(self.rng.integers(40))
        return self.action.sample(self.rng)


class Environment(ABC):
    """One environment family: spaces, simulators, goals and their language, expert, rendering.

    Subclasses set the class attributes and implement the abstract methods; the defaults of the
    others follow from those.
    """

    name: ClassVar[str]
    """Registry key and ``--env`` value ("clevr", "metaworld")."""
    title: ClassVar[str]
    """Human name ("CLEVR-Robot")."""
    state: StateLayout
    """The state vector the LM reads and writes."""
    action: ActionSpec
    horizon: int
    """Default (largest) episode length."""
    can_set_state: bool = True
    """Whether a simulator can be put into an arbitrary state vector (validity replay needs it)."""
    suites: tuple[str, ...] = SUITES
    styles: tuple[str, ...] = ("train", "rephrase")
    """The wordings of the goal language: training phrasings and the held-out rephrasings."""
    default_noise: float = 0.1
    """The expert's default action noise in data collection."""
    stages: tuple[str, ...] = ("collect", "evaluate", "ground", "imagine", "train", "reproduce")
    """The pipeline stages built for this environment (the CLI and the app say so for others)."""
    expert_modes: tuple[str, ...] = ()
    """Named expert behaviours (``expert(mode=...)``); the first is the default. Empty: one."""
    render_fps: int = 10

    # ----------------------------------------------------------------- simulators
    @abstractmethod
    def make(
        self,
        goal: Any = None,
        *,
        render_mode: str | None = None,
        width: int = 320,
        height: int = 240,
        reward_mode: str = "dense",
    ) -> Any:
        """A simulator (gymnasium env, see the module doc) for ``goal``."""

    def set_state(self, sim: Any, obs: np.ndarray) -> None:
        """Put ``sim`` into the state vector ``obs`` (as far as the environment allows)."""
        if not self.can_set_state:
            raise NotImplementedError(f"{self.title} cannot be set to a state vector")
        sim.set_obs(obs)

    def simulate(self, sim: Any, obs: np.ndarray, action: Any) -> np.ndarray:
        """The next state after ``action`` from state ``obs`` (for validity replay)."""
        self.set_state(sim, obs)
        sim.step(action)
        return sim.get_obs()

    # ----------------------------------------------------------------- goals and language
    @abstractmethod
    def suite_items(self, suite: str, seed: int = 0) -> list:
        """The goal items (``text``, ``goal``, ``category``) of a suite."""

    @abstractmethod
    def parse_goal(self, text: str) -> Any | None:
        """The goal a text means, or None when the rule-based parser cannot tell."""

    @abstractmethod
    def goal_from_dict(self, d: Mapping[str, Any]) -> Any:
        """A goal from its JSON form; raises ValueError on a bad one."""

    @abstractmethod
    def item_from_dict(self, d: Mapping[str, Any]) -> Any:
        """A goal item from its JSON form (``goal`` may be missing: then parsed from ``text``)."""

    @abstractmethod
    def describe(self, goal: Any, style: str = "train", rng: np.random.Generator | None = None) -> str:
        """One text for ``goal`` in a suite's wording ("train" or "rephrase")."""

    @abstractmethod
    def sample_goal(self, rng: np.random.Generator, style: str = "train") -> tuple[Any, str]:
        """A training goal and one of its ``style`` texts, drawn with ``rng`` (data collection's
        default goal distribution)."""

    def read_goals_file(self, path: str | Path) -> list:
        """The items of a JSON Lines goals file (every line checked; GoalsFileError says which)."""
        return read_goal_items(path, self.item_from_dict)

    def goals_equivalent(self, a: Any, b: Any) -> bool:
        return a is not None and b is not None and a == b

    def goal_horizon(self, goal: Any) -> int:
        return self.horizon

    def success(self, goal: Any, obs: np.ndarray, start_obs: np.ndarray | None = None) -> bool:
        """Whether ``goal`` holds in state ``obs`` (from the state alone: imagined states too)."""
        return bool(goal.holds(np.asarray(obs, dtype=np.float64), start_obs))

    @abstractmethod
    def reward_labels(self, goal: Any, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dense, sparse) reward of each of the ``T`` transitions of a state sequence ``(T+1, d)``,
        computed from the states alone (real and imagined rollouts are labelled alike)."""

    # ----------------------------------------------------------------- policies
    @abstractmethod
    def expert(self, seed: int | None = None, noise: float | None = None, **options: Any) -> Policy:
        """The scripted expert (with its default action noise unless ``noise`` is given);
        ``options`` are the environment's own (CLEVR's ``mode``)."""

    def random_policy(self, seed: int | None = None) -> Policy:
        return RandomPolicy(seed, self.action)

    # ----------------------------------------------------------------- rendering
    @abstractmethod
    def episode_frames(
        self,
        observations: np.ndarray,
        actions: np.ndarray | None = None,
        *,
        width: int = 320,
        height: int = 240,
    ) -> list[np.ndarray]:
        """Frames showing a sequence of state vectors (real or imagined)."""

    def render_state(self, obs: np.ndarray, *, width: int = 320, height: int = 240) -> np.ndarray:
        return self.episode_frames(np.asarray(obs)[None], None, width=width, height=height)[0]

    # ----------------------------------------------------------------- grounding and imagination
    policy_defaults: Mapping[str, Any] = {}
    """Offline-RL config values this environment picks for TrainConfig's ``auto`` options
    (``state_features``, ``arch``)."""
    policy_entities: tuple[int, int, int] | None = None
    """``(n, e, k)`` when the state starts with n like entities of e coordinates each and action
    ``a = i * k + j`` acts on entity i (what the ``roles`` policy network needs); else None."""

    codec_module: str = ""
    """The module holding this environment's codec (``make_codec``; see ``kalm.llm.codec``)."""
    grounding_defaults: Mapping[str, Any] = {}
    """Grounding-config values this environment sets unless the user does (``GroundConfig``)."""

    def make_codec(self, lm: Any, tokenizer: Any, cfg: Any) -> Any:
        """The numeric codec (projections in, heads out; ``kalm.llm.codec``) for grounding
        ``lm`` with config ``cfg``. Default: ``codec_module``'s ``make_codec``."""
        import importlib

        if not self.codec_module:
            raise NotImplementedError(f"grounding is not built for {self.title}")
        return importlib.import_module(self.codec_module).make_codec(lm, tokenizer, cfg)

    def calibration_rollouts(self, rng: np.random.Generator, n: int, steps: int) -> list:
        """``n`` made-up (text, states or None, actions) rollouts of ``steps`` steps, typical of
        what the LM reads (int8 decoding's smoothing statistics): training-phrased goal texts
        (never a suite's), random actions; states None: drawn around the data's statistics."""
        out = []
        for _ in range(n):
            _, text = self.sample_goal(rng)
            out.append((text, None, [self.action.sample(rng) for _ in range(steps)]))
        return out

    def imagine_start(self, goal: Any, seed: int) -> np.ndarray:
        """The real initial state an imagined rollout for ``goal`` starts from (a seeded reset)."""
        sim = self.make(goal)
        try:
            obs, _ = sim.reset(seed=int(seed), options={"goal": goal})
        finally:
            close = getattr(sim, "close", None)
            if close is not None:
                close()
        return np.asarray(obs, np.float32)

    def check_rollout(self, goal: Any, observations: np.ndarray, actions: np.ndarray,
                      seed: int | None = None, sim: Any = None) -> Any:
        """Every validity check of one imagined rollout (``kalm.imagine.validity.RolloutValidity``):
        match on the generated states, physical plausibility, and the open-loop replay of its
        actions in the simulator (from ``s_0`` where states can be set, else from the seeded
        reset ``seed``). Imagination never calls this; it judges what was imagined."""
        raise NotImplementedError(f"validity checks are not built for {self.title}")

    def validity_tolerances(self) -> dict[str, float]:
        """The thresholds ``check_rollout`` uses, by name (recorded beside imagination results)."""
        return {}

    def implausible_steps(self, observations: np.ndarray, next_observations: np.ndarray,
                          actions: np.ndarray) -> np.ndarray | None:
        """``(B,)`` bool: which generated transitions ``s -> s'`` (under ``actions``) break a
        rule of this world that the states alone show (leaving the workspace, bodies inside each
        other, a body passing through another), for decoding that keeps imagined rollouts
        physical. Geometry only: never the simulator. None: this environment states no such
        rule (decoding then never re-plans)."""
        return None

    def obstacle_crossings(self, goal: Any, states: np.ndarray) -> bool | None:
        """Whether the path ``states`` (``(T + 1, d)``) carries the hand or an object through a
        fixed obstacle of ``goal``'s scene (a wall the goal's task puts in the way), for
        goal-guided decoding that keeps to the scene's geometry (``guide_obstacles``). Geometry
        of the scene only: never the simulator. None: this environment states no obstacles."""
        return None

    def goal_progress(self, goal: Any, obs: np.ndarray,
                      start_obs: np.ndarray | None = None) -> float | None:
        """How close state ``obs`` is to meeting ``goal`` (higher is closer; any scale), from the
        state alone, for goal-guided decoding (``kalm.llm.generate``, ``guide``), which ranks the
        LM's likeliest actions by this measure of the state the LM itself predicts after each.
        None: this environment states no such measure (decoding then stays greedy)."""
        return None

    def explanation_candidates(self, observations: np.ndarray) -> list[str] | None:
        """Texts of the goals that the rollout ``observations`` (s_0 ... s_T) made true, in the
        goal language's *training* phrasings only, for explanations kept to true accounts
        (``kalm.llm.generate.explain_rollouts(..., constrained=True)``): the LM's decoding is
        restricted to these texts. From the states alone, never the simulator. An empty list:
        the rollout made no goal true. None: this environment names no candidates (explanations
        are then decoded freely)."""
        return None

    def relabel_episode(self, text: str, goal: Mapping[str, Any], observations: np.ndarray,
                        actions: np.ndarray, rng: np.random.Generator
                        ) -> tuple[str, dict, np.ndarray, np.ndarray] | None:
        """An equivalent episode under a random symmetry of this environment, for data
        augmentation of offline RL (``kalm.rl``, ``--augment K``): ``(text, goal dict,
        observations, actions)``, the same rewards holding. From the episode alone, never the
        simulator or an expert. None: no symmetry applies to this episode (or this environment
        states none)."""
        return None

    def goal_mentions(self, text: str) -> list[int] | None:
        """The entities a goal text names, in the order it names them, as indices into
        ``policy_entities`` (CLEVR: the balls, named by colour): what ``--mentions M`` hands each
        entity of the ``roles`` policy network (which of the text's first M mentions name it).
        Only the names are looked up: no relation, direction or goal kind is read. None: this
        environment states no names for its entities."""
        return None

    # ----------------------------------------------------------------- helpers
    def provides(self, hook: str) -> bool:
        """Whether this environment implements the optional hook ``hook`` (e.g. "goal_progress",
        "implausible_steps", "explanation_candidates") rather than inheriting the interface's
        None-returning default."""
        return getattr(type(self), hook) is not getattr(Environment, hook)

    def require_stage(self, stage: str) -> None:
        """Raise ValueError saying that ``stage`` is not built for this environment yet."""
        if stage not in self.stages:
            raise ValueError(
                f"{stage} is not built for {self.title} yet (built: {', '.join(self.stages)}); "
                f"use --env {'clevr' if self.name != 'clevr' else self.name}"
            )

    def check_obs(self, observations: np.ndarray) -> np.ndarray:
        """``(T, d)`` float array of state vectors; raises ValueError on a wrong width."""
        o = np.asarray(observations, dtype=np.float64)
        if o.ndim == 1:
            o = o[None]
        if o.ndim != 2 or o.shape[1] != self.state.dim:
            raise ValueError(f"{self.title} states have {self.state.dim} numbers; got shape {o.shape}")
        return o

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: state {self.state.dim}, {self.action.kind} {self.action.size}>"

    # ---- app views
    # What the app (kalm.ui and the pages) shows of this environment's episodes. Every hook has a
    # default built from the state and action names (kalm.ui.plots' generic figures) and from the
    # simulator, so a new environment gets sensible views without code of its own; an environment
    # with views of its own (CLEVR-Robot's top view and push arrows) overrides them.
    state_figure_title: ClassVar[str] = "State"
    """The title of the default positions figure (``episode_figures``' ``"positions"``)."""
    figure_notes: ClassVar[Mapping[str, str]] = {}
    """A caption a page shows under each of ``episode_figures``' figures, by name (none: none)."""

    def views(self) -> Any | None:
        """The module of this environment's own app figures (CLEVR-Robot: its top view, ball
        positions, push arrows, ``BALL_HEX``), or None when the defaults are all it has."""
        return None

    def action_label(self, action: Any) -> str:
        """A short text for one action: its name (discrete), or each channel with its value
        (continuous: ``"dx +0.10, dy -0.20, dz +0.00, grip +1.00"``)."""
        if self.action.discrete:
            return self.action.names[int(action)]
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        return ", ".join(f"{n} {v:+.2f}" for n, v in zip(self.action.names, a))

    def episode_figures(
        self,
        observations: np.ndarray,
        actions: np.ndarray | None = None,
        step: int | None = None,
        *,
        compare: np.ndarray | None = None,
        names: tuple[str, str] = ("", "simulator"),
    ) -> dict[str, Any]:
        """Plotly figures of an episode, by name, in the order a page shows them.

        ``step`` marks one step on every figure (a page's step slider); ``compare`` is a second
        state sequence (the simulator's replay of an imagined rollout) drawn dotted beside the
        first, the two labelled with ``names``. Default: ``"positions"`` (every present entity of
        :attr:`state` over the steps) and, when there are actions, ``"actions"`` (each channel
        over the steps, or the discrete action taken at each step)."""
        from kalm.ui import plots

        figs: dict[str, Any] = {"positions": plots.state_figure(
            observations, self.state, step, title=self.state_figure_title, compare=compare,
            names=names)}
        if actions is not None and len(actions):
            figs["actions"] = (
                plots.discrete_actions_figure(actions, self.action.names, step)
                if self.action.discrete else plots.channels_figure(actions, self.action.names, step))
        return figs

    def topview_image(self, observations: np.ndarray, size: int = 420) -> np.ndarray:
        """A cheap RGB picture of a state sequence so far (no plotly, no renderer), for a view
        redrawn at every generated step. Default: each present entity's x-y path from above."""
        from kalm.ui.plots import paths_image

        return paths_image(observations, self.state, size)

    def step_errors_figure(self, errors: np.ndarray, tolerance: float, step: int | None = None,
                           title: str = "Per-entity error") -> Any:
        """A bar figure of each imagined transition's error per entity ``(T, groups)`` against
        the simulator's, with the realistic-transition ``tolerance`` as a line."""
        from kalm.ui.plots import entity_errors_figure

        return entity_errors_figure(errors, [g for g, _, _ in self.state.groups], tolerance, step,
                                    title=title)

    def replay_frames(self, goal: Any, reset_seed: int, actions: Any, *, width: int = 320,
                      height: int = 240) -> list[np.ndarray]:
        """Frames of ``actions`` replayed in a simulator from the seeded reset of ``goal`` (a goal
        or its JSON form), one frame per state."""
        if isinstance(goal, Mapping):
            goal = self.goal_from_dict(goal)
        sim = self.make(width=width, height=height)
        try:
            sim.reset(seed=int(reset_seed), options={"goal": goal})
            frames = [sim.render(width, height)]
            for a in actions:
                sim.step(a)
                frames.append(sim.render(width, height))
        finally:
            sim.close()
        return frames

    def replay_video_frames(self, goal: Any, reset_seed: int, actions: Any, *, width: int = 320,
                            height: int = 240) -> list[np.ndarray]:
        """The frames a video of a replayed episode shows (the Compare page's side-by-side
        videos). Default: :meth:`replay_frames`."""
        return self.replay_frames(goal, reset_seed, actions, width=width, height=height)

    def animated_frames(self, observations: np.ndarray, actions: Any, *, mode: str = "simulate",
                        substep_frames: int = 4, width: int = 320,
                        height: int = 240) -> list[np.ndarray]:
        """Frames of a recorded episode with ``substep_frames`` frames per step and one last frame
        (so ``frames[::substep_frames]`` is the scene at the start of every step): ``mode``
        "simulate" runs each action from its recorded state, "states" draws the recorded states.
        Default: each state's frame (:meth:`episode_frames`) held for its step."""
        frames = self.episode_frames(observations, None, width=width, height=height)
        k = max(1, int(substep_frames))
        return [f for f in frames[:-1] for _ in range(k)] + frames[-1:]

    imagined_pane_labels: ClassVar[tuple[str, str]] = ("imagined", "simulator")
    """The labels of an imagined-rollout video's two panes (:meth:`imagined_video_frames`)."""

    def imagined_video_fps(self, substep_frames: int = 1) -> float:
        """The frame rate of :meth:`imagined_video_frames` with ``substep_frames`` frames a step.
        Default: :attr:`render_fps` steps a second."""
        return float(self.render_fps * max(1, int(substep_frames)))

    def imagined_video_frames(self, goal: Any, reset_seed: int | None, observations: np.ndarray,
                              actions: Any, *, start_obs: np.ndarray | None = None,
                              substep_frames: int = 1, width: int = 320, height: int = 240,
                              side_by_side: bool = True,
                              on_frame: Callable[[np.ndarray], None] | None = None,
                              step_stride: int = 1) -> Any:
        """The frames (``kalm.video.VideoFrames``, at :meth:`imagined_video_fps`) of a video of an
        imagined rollout: the imagined states on the left, the simulator's replay of the same
        actions from the seeded reset ``reset_seed`` of ``goal`` (a goal or its JSON form) on the
        right, labelled :attr:`imagined_pane_labels`; only the imagined states when not
        ``side_by_side``. ``on_frame`` gets each frame as soon as it is made (an encoder).
        ``step_stride`` n > 1: every n-th state (and the last) only, at an n-th of the rate.
        Default: each imagined state's frame (:meth:`episode_frames`) and each replayed state's
        (:meth:`replay_frames`), held ``substep_frames`` frames a step."""
        from kalm.video import VideoFrames, side_by_side as beside

        k, n = max(1, int(substep_frames)), max(1, int(step_stride))

        def held(frames: list) -> list:
            frames = [frames[t] for t in sorted(set(range(0, len(frames), n)) | {len(frames) - 1})]
            return [f for f in frames[:-1] for _ in range(k)] + frames[-1:]

        left = held(self.episode_frames(observations, None, width=width, height=height))
        if side_by_side:
            acts = [a for a in np.asarray(actions)]
            left = beside(left, held(self.replay_frames(goal, int(reset_seed or 0), acts,
                                                        width=width, height=height)),
                          labels=self.imagined_pane_labels)
        out = VideoFrames(fps=self.imagined_video_fps(k) / n)
        for f in left:
            out.append(f)
            if on_frame is not None:
                on_frame(f)
        return out
