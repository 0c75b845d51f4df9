"""Imagined rollouts in memory, for the Imagine page: one goal text, or a few, and their checks.

A goal with a spec goes through the same code as ``python -m kalm imagine``
(``kalm.imagine.generate``): a seeded initial state where the goal does not already hold, greedy
generation that stops when the goal holds, the cut at the first success, the LM's explanation and
``check_rollout``. Batch item ``i`` starts from ``rollout_base_seed(seed, i, 0)``, as rollout
``k = 0`` of item ``i`` of ``imagine --per-goal N --seed seed`` does. A text that parses to no
goal is still imagined (from the reset of ``seed``, run to ``max_steps``), but has no validity:
matching, replay success and cycle consistency need a goal spec.

For a page that shows a rollout while it is imagined, ``imagine_rollout`` generates one rollout
(calling ``on_step`` after each generated step, throttled by ``throttled``) and checks it without
the LM's explanation, and ``explain_rollout`` then asks the LM for its explanation and adds the
cycle-consistency checks; together they give what ``imagine_one`` gives in one call (the same
start state, the same greedy rollout and cut, the same ``check_rollout``).

Rollouts are imagined in the model's environment (``model.env_name``; CLEVR-Robot when it has
none): CLEVR-Robot's replay starts from ``s_0``; Meta-World's runs the actions open loop from the
seeded reset (``Environment.check_rollout`` with ``seed``), its goal texts are parsed by the
environment, and a text naming no task is imagined from the reset of a data task drawn from the
seed (``ImaginedRollout.scene_goal``).

Nothing is written to disk. Generation holds a lock, so two app sessions do not share the CPU
cores at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from kalm.envs import get_env
from kalm.envs.base import GoalItem
from kalm.imagine.validity import (
    ABSURD_COORD,
    OVERLAP_DISTANCE,
    REALISTIC_TOLERANCE,
    WORKBENCH_MARGIN,
    RolloutValidity,
    per_ball_errors,
    replay_rollout,
)

__all__ = [
    "MAX_TEXT_CHARS",
    "GoalTextProblem",
    "ImaginedRollout",
    "Check",
    "check_goal_text",
    "imagine_one",
    "imagine_rollout",
    "explain_rollout",
    "throttled",
    "imagine_batch",
    "guide_choices",
    "guide_horizon_choices",
    "obstacle_choice_available",
    "horizon_label",
    "explanation_choices",
    "explanation_label",
    "guide_label",
    "validity_checks",
    "batch_rows",
    "per_ball_step_errors",
    "entity_step_errors",
    "side_by_side_video",
    "model_env",
    "video_stride",
]

MAX_TEXT_CHARS = 300
_LOCK = threading.Lock()
ENV = "clevr"
"""The environment the Imagine page's rollouts are imagined in (reached through the registry)."""


def _sim(env: str = ENV) -> Any:
    """A scratch simulator of ``env`` (the caller closes it)."""
    return get_env(env).make()


def model_env(model: Any) -> str:
    """The environment a grounded model imagines in (its ``env_name``; CLEVR-Robot by default)."""
    return getattr(model, "env_name", None) or ENV


class GoalTextProblem(ValueError):
    """A goal text that cannot be imagined at all (empty, too long)."""


@dataclass
class ImaginedRollout:
    """One imagined rollout with what the app shows about it."""

    text: str
    category: str
    goal: dict | None
    """The goal spec (None: the text parses to no goal; then there is no validity)."""
    reset_seed: int
    observations: np.ndarray
    """float32 (T + 1, state dim): s_0 from the reset, the rest written by the LM."""
    actions: np.ndarray
    replay: np.ndarray
    """float64 (T + 1, state dim): the simulator running the same actions from s_0 (Meta-World:
    open loop from the seeded reset)."""
    per_ball_errors: np.ndarray
    """(T, groups): each transition's per-ball error against the simulator (NaN: not measurable;
    Meta-World: each entity's distance to the open-loop replay, ``entity_step_errors``)."""
    validity: RolloutValidity | None
    explanation: str | None
    timings: dict = field(default_factory=dict)
    env: str = ENV
    """The environment it was imagined in (its registry name)."""
    scene_goal: dict | None = None
    """The goal of the seeded reset ``s_0`` came from, where it is not ``goal`` (Meta-World: the
    task drawn for a text naming none); videos and replays start from it."""
    guide: int = 0
    """Goal-guided decoding's K (``kalm.llm.generate``); 0: greedy, as published."""
    guide_horizon: int = 1
    """Its look-ahead with continuous actions: candidates scored by the predicted state this many
    steps on (``generate_rollouts(guide_horizon=)``; 1: the next state)."""
    guide_obstacles: bool = False
    """The guide ruled out candidates whose predicted path crosses a wall of the goal's scene
    (``generate_rollouts(guide_obstacles=)``): the scene's geometry kept the path off the wall."""
    settle: int = 0
    """Steps the LM wrote on after its goal first held (``generate_rollouts(settle=)``); 0: it
    stopped there, as published."""
    explain_constrained: bool = False
    """The explanation was decoded among the goals the rollout made true (``explain_rollouts(...,
    constrained=True)``); False: free text, as published."""

    @property
    def steps(self) -> int:
        return int(len(self.actions))

    @property
    def reset_goal(self) -> dict | None:
        """The goal whose seeded reset gave ``s_0`` (``goal``, else ``scene_goal``)."""
        return self.goal if self.goal is not None else self.scene_goal

    @property
    def explanation_goal(self) -> dict | None:
        """The goal the LM's explanation parses to (None: no explanation, or not understood)."""
        if not self.explanation:
            return None
        g = get_env(self.env).parse_goal(self.explanation)
        return g.to_dict() if g is not None else None


@dataclass(frozen=True)
class Check:
    """One line of the validity panel."""

    name: str
    value: str
    ok: bool | None
    """True: passed, False: failed, None: not computed / informative."""
    help: str


def check_goal_text(text: str, env: str = ENV) -> tuple[str, Any | None]:
    """The cleaned text and the goal it parses to in ``env`` (None when it parses to nothing).

    Raises ``GoalTextProblem`` for an empty or overlong text (the LM cannot imagine from it).
    """
    if not isinstance(text, str) or not text.strip():
        raise GoalTextProblem("Type a goal first: the goal text is empty.")
    clean = " ".join(text.split())
    if len(clean) > MAX_TEXT_CHARS:
        raise GoalTextProblem(
            f"The goal text is {len(clean)} characters long; keep it under {MAX_TEXT_CHARS}."
        )
    return clean, get_env(env).parse_goal(clean)


def per_ball_step_errors(env: Any, observations: np.ndarray,
                         actions: Sequence[int]) -> np.ndarray:
    """(T, 5): per-ball error of each imagined transition against ``env.simulate`` from the
    imagined state (NaN where a state is non-finite or absurd, as ``check_rollout`` leaves out).
    ``env``: a simulator of :data:`ENV`."""
    obs = np.asarray(observations, dtype=np.float64)
    out = np.full((len(actions), len(get_env(ENV).state.groups)), np.nan)
    with np.errstate(invalid="ignore"):
        ok = np.all(np.isfinite(obs) & (np.abs(obs) <= ABSURD_COORD), axis=-1)
    for t, a in enumerate(actions):
        if ok[t] and ok[t + 1]:
            e = per_ball_errors(env.simulate(obs[t], int(a)), obs[t + 1])
            if np.all(np.isfinite(e)):
                out[t] = e
    return out


def entity_step_errors(env: str, observations: np.ndarray, replay: np.ndarray) -> np.ndarray:
    """(T, groups): how far each entity's imagined position (its first three numbers at most) is
    from the replayed one, at ``s_1 .. s_T`` (m). Used where a transition cannot be re-simulated
    from an imagined state (Meta-World): the replay runs open loop, so errors add up over steps.
    NaN for an entity absent from the replayed ``s_0`` (an all-zero slot) or a non-finite state."""
    groups = get_env(env).state.groups
    obs = np.asarray(observations, dtype=np.float64)
    rep = np.asarray(replay, dtype=np.float64)
    out = np.full((max(len(obs) - 1, 0), len(groups)), np.nan)
    for j, (_, a, b) in enumerate(groups):
        if not np.any(rep[0, a:b] != 0):
            continue
        w = min(3, b - a)
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.linalg.norm(obs[1:, a:a + w] - rep[1:, a:a + w], axis=-1)
        out[:, j] = np.where(np.isfinite(d), d, np.nan)
    return out


def _open_loop(sim: Any, goal: Any, reset_seed: int, actions: np.ndarray) -> np.ndarray:
    """The real states of ``actions`` run open loop from ``reset(seed=reset_seed)`` of ``goal``
    (a non-finite action played as 0, every number clipped to [-1, 1])."""
    acts = np.clip(np.where(np.isfinite(actions), actions, 0.0), -1.0, 1.0)
    obs, _ = sim.reset(seed=int(reset_seed), options={"goal": goal})
    out = [np.asarray(obs, dtype=np.float64)]
    for a in acts:
        out.append(np.asarray(sim.step(a)[0], dtype=np.float64))
    return np.stack(out)


def _finish(env: Any, text: str, category: str, goal: dict | None, reset_seed: int,
            obs: np.ndarray, acts: np.ndarray, validity: RolloutValidity | None,
            explanation: str | None, timings: dict, environment: Any = None,
            scene_goal: dict | None = None, guide: int = 0,
            guide_horizon: int = 1, guide_obstacles: bool = False,
            settle: int = 0) -> ImaginedRollout:
    t0 = time.perf_counter()
    environment = environment if environment is not None else get_env(ENV)
    obs = np.asarray(obs, dtype=np.float32)
    if environment.name == ENV:
        acts = np.asarray(acts, dtype=np.int64).reshape(-1)
        replay = replay_rollout(env, obs[0], acts)
        errors = per_ball_step_errors(env, obs, acts)
    else:
        acts = np.asarray(acts, dtype=np.float32).reshape(-1, environment.action.size)
        start = goal if goal is not None else scene_goal
        replay = _open_loop(env, None if start is None else environment.goal_from_dict(start),
                            reset_seed, acts)
        errors = entity_step_errors(environment.name, obs, replay)
    timings = {**timings, "replay_s": round(time.perf_counter() - t0, 3)}
    return ImaginedRollout(text, category, goal, int(reset_seed), obs, acts, replay, errors,
                           validity, explanation, timings, env=environment.name,
                           scene_goal=scene_goal, guide=guide,
                           guide_horizon=guide_horizon if guide else 1,
                           guide_obstacles=bool(guide and guide_obstacles),
                           settle=max(0, int(settle)))


GUIDE_CHOICES = (0, 4, 8, 16, 40)
CONTINUOUS_GUIDE_CHOICES = (0, 4, 8, 16)
GUIDE_HORIZON_CHOICES = (1, 5)
"""Look-aheads offered with continuous actions: the next state, or 5 steps on (the setting
measured on Meta-World, where an action shows mostly in the steps after it)."""


def guide_choices(env: str = ENV) -> tuple[int, ...]:
    """The goal-guided decoding settings the app offers for an environment: 0 (greedy, as
    published) and some K; just (0,) where the environment has no progress measure."""
    environment = get_env(env)
    if not environment.provides("goal_progress"):
        return (0,)
    if not environment.action.discrete:  # the LM's action and K - 1 perturbations of it
        return CONTINUOUS_GUIDE_CHOICES
    return tuple(k for k in GUIDE_CHOICES if k <= max(environment.action.size, 1))


def guide_horizon_choices(env: str = ENV) -> tuple[int, ...]:
    """The look-aheads of goal-guided decoding the app offers: (1,) (the next state) unless the
    environment's actions are continuous and it measures progress."""
    environment = get_env(env)
    if environment.action.discrete or not environment.provides("goal_progress"):
        return (1,)
    return GUIDE_HORIZON_CHOICES


def explanation_choices(env: str = ENV) -> tuple[bool, ...]:
    """The explanation decodings the app offers: free text (False, as published) and, where the
    environment names the goals a rollout made true, kept to them (True)."""
    return (False, True) if get_env(env).provides("explanation_candidates") else (False,)


def explanation_label(constrained: bool) -> str:
    return ("among the goals the rollout made true" if constrained
            else "free text (as published)")


def obstacle_choice_available(env: str = ENV) -> bool:
    """Whether the app offers goal-guided decoding that keeps predicted paths off the scene's
    walls: continuous actions and an environment that states its obstacles."""
    environment = get_env(env)
    return (not environment.action.discrete and environment.provides("goal_progress")
            and environment.provides("obstacle_crossings"))


def horizon_label(h: int) -> str:
    return "the next state" if h <= 1 else f"{h} predicted steps on"


def guide_label(k: int, env: str = ENV, horizon: int = 1) -> str:
    if not k:
        return "greedy (as published)"
    environment = get_env(env)
    if not environment.action.discrete:
        return (f"goal-guided: best of the LM's action and {k - 1} perturbations"
                + (f", scored {horizon} predicted steps on" if horizon > 1 else ""))
    if k >= environment.action.size:
        return f"goal-guided: every action ({k})"
    return f"goal-guided: best of the LM's {k} likeliest"


def _effective_guide(model, guide: int) -> int:
    """The ``guide`` generation applies for ``model`` (0 where it stays greedy)."""
    from kalm.llm.generate import guided_decoding_available

    return int(guide) if guide > 1 and guided_decoding_available(model) else 0


def _scene_goal(sim: Any) -> dict | None:
    """The goal a simulator drew on its last reset without one (Meta-World: a data task)."""
    g = getattr(sim, "goal", None)
    return g.to_dict() if hasattr(g, "to_dict") else None


def _imagine_items(model, items: list[GoalItem], base_seeds: list[int], max_steps: int | None,
                   explain: bool, guide: int = 0,
                   explain_constrained: bool = False,
                   guide_horizon: int = 1, guide_obstacles: bool = False,
                   settle: int = 0) -> list[ImaginedRollout]:
    """The CLI's batch code (``kalm.imagine.generate``) on goal items, in memory."""
    from kalm.evaluate import initial_state
    from kalm.imagine.generate import ImagineConfig, _run_batch

    cfg = ImagineConfig(per_goal=1, seed=0, batch_size=max(1, len(items)), max_steps=max_steps,
                        explain=explain, guide=guide, guide_horizon=max(1, int(guide_horizon)),
                        explain_constrained=bool(explain and explain_constrained),
                        guide_obstacles=bool(guide_obstacles and guide > 1),
                        settle=max(0, int(settle))).validate()
    environment = get_env(model_env(model))
    env = _sim(environment.name)
    try:
        plan = []
        for i, (item, base) in enumerate(zip(items, base_seeds)):
            s0, reset_seed = initial_state(env, item.goal, int(base))
            plan.append({"index": i, "item_index": i, "k": 0, "item": item,
                         "base_seed": int(base), "reset_seed": reset_seed,
                         "s0": np.asarray(s0, dtype=np.float32)})
        episodes, times = _run_batch(model, environment, env, plan, cfg)
        timings = {k: round(v, 3) for k, v in times.items() if isinstance(v, float)}
        out = []
        for item, ep in zip(items, episodes):
            v = RolloutValidity.from_dict(ep.info["validity"])
            r = _finish(env, item.text, item.category, item.goal.to_dict(), ep.seed,
                        ep.observations, ep.actions, v, v.explanation, timings,
                        environment, guide=_effective_guide(model, guide),
                        guide_horizon=cfg.guide_horizon, guide_obstacles=cfg.guide_obstacles,
                        settle=cfg.settle)
            out.append(replace(r, explain_constrained=cfg.explain_constrained))
        return out
    finally:
        env.close()


def _imagine_free_text(model, text: str, seed: int, max_steps: int | None,
                       explain: bool) -> ImaginedRollout:
    """A text with no goal spec: generated to ``max_steps`` (50 when None), no validity."""
    from kalm.llm.generate import explain_rollouts, generate_rollouts

    environment = get_env(model_env(model))
    env = _sim(environment.name)
    try:
        s0, _ = env.reset(seed=int(seed))
        scene = None if environment.name == ENV else _scene_goal(env)
        t0 = time.perf_counter()
        r = generate_rollouts(model, [text], np.asarray(s0, dtype=np.float32)[None], [None],
                              max_steps=max_steps)[0]
        t1 = time.perf_counter()
        explanation = (explain_rollouts(model, [r.observations], [r.actions])[0]
                       if explain else None)
        t2 = time.perf_counter()
        timings = {"generate_s": round(t1 - t0, 3), "explain_s": round(t2 - t1, 3), "check_s": 0.0}
        return _finish(env, text, "custom", None, int(seed), r.observations, r.actions,
                       None, explanation, timings, environment, scene)
    finally:
        env.close()


def imagine_one(model, text: str, seed: int, goal: Any | dict | None = None,
                max_steps: int | None = None, explain: bool = True,
                category: str = "custom") -> ImaginedRollout:
    """Imagine one rollout for ``text`` from the initial state of ``seed``.

    ``goal``: the goal spec (a Goal or its dict); when None it is parsed from the text, and a
    text that parses to nothing is imagined without validity. ``seed`` is the base reset seed:
    the first of ``seed, seed + 1, ...`` whose state does not already meet the goal is used.
    Raises ``GoalTextProblem`` for an empty or overlong text.
    """
    environment = get_env(model_env(model))
    clean, parsed = check_goal_text(text, environment.name)
    if isinstance(goal, dict):
        goal = environment.goal_from_dict(goal)
    goal = goal if goal is not None else parsed
    with _LOCK:
        if goal is None:
            return _imagine_free_text(model, clean, seed, max_steps, explain)
        return _imagine_items(model, [GoalItem(clean, goal, category)], [int(seed)],
                              max_steps, explain)[0]


def throttled(draw: Callable[[int, np.ndarray, np.ndarray], None], every: float = 0.15,
              final: bool = True) -> Callable[[int, np.ndarray, np.ndarray, bool], None]:
    """An ``on_step`` for ``imagine_rollout`` that calls ``draw(t, observations, actions)`` on the
    first step, on the last one (unless not ``final``: when the finished rollout replaces the
    drawing at once), and otherwise at most once every ``every`` seconds (a redraw that costs
    more than a generated step would slow generation down)."""
    last = [-float("inf")]

    def on_step(t: int, observations: np.ndarray, actions: np.ndarray, done: bool) -> None:
        now = time.perf_counter()
        if t == 0 or (done and final) or (not done and now - last[0] >= every):
            draw(t, observations, actions)
            last[0] = time.perf_counter()

    return on_step


def imagine_rollout(model, text: str, seed: int, goal: Any | dict | None = None,
                    max_steps: int | None = None, category: str = "custom",
                    on_step: Callable[[int, np.ndarray, np.ndarray, bool], None] | None = None,
                    guide: int = 0, guide_horizon: int = 1,
                    guide_obstacles: bool = False, settle: int = 0) -> ImaginedRollout:
    """``imagine_one`` without the explanation: the rollout and its checks, as soon as they exist.

    ``on_step(t, observations (t + 2, 10), actions (t + 1,), done)`` is called after each generated
    step (``kalm.llm.generate.generate_rollouts``'s callback, for this one rollout). The result's
    ``explanation`` is None and its validity has no cycle consistency: ``explain_rollout`` adds
    them. ``guide``: goal-guided decoding's K (``kalm.llm.generate``; a text without a goal
    spec stays greedy); ``guide_horizon``: its look-ahead with continuous actions (1: the next
    state); ``guide_obstacles``: candidates whose predicted path crosses a wall of the goal's
    scene ruled out; ``settle``: steps the LM writes on after its goal first holds (a text without
    a goal spec has none to settle on). Raises ``GoalTextProblem`` for an empty or overlong text.
    """
    from kalm.evaluate import initial_state
    from kalm.imagine.generate import rollout_end
    from kalm.llm.generate import generate_rollouts

    environment = get_env(model_env(model))
    clevr = environment.name == ENV
    clean, parsed = check_goal_text(text, environment.name)
    if isinstance(goal, dict):
        goal = environment.goal_from_dict(goal)
    goal = goal if goal is not None else parsed
    settle = max(0, int(settle)) if goal is not None else 0  # no goal: nothing to settle on
    cb = None
    if on_step is not None:
        def cb(t, observations, actions, done):
            on_step(int(t), observations[0], actions[0], bool(done[0]))
    with _LOCK:
        env = _sim(environment.name)
        try:
            scene = None
            if goal is None:
                s0, reset_seed = env.reset(seed=int(seed))[0], int(seed)
                scene = None if clevr else _scene_goal(env)
            else:
                s0, reset_seed = initial_state(env, goal, int(seed))
            s0 = np.asarray(s0, dtype=np.float32)
            t0 = time.perf_counter()
            guide = _effective_guide(model, guide) if goal is not None else 0
            r = generate_rollouts(model, [clean], s0[None], [goal], max_steps=max_steps,
                                  on_step=cb, guide=guide,
                                  guide_horizon=max(1, int(guide_horizon)),
                                  guide_obstacles=bool(guide_obstacles and guide > 1),
                                  settle=settle)[0]
            t1 = time.perf_counter()
            obs, acts, validity = r.observations, r.actions, None
            if goal is not None:  # cut at the first success, or ``settle`` steps past it
                # (generation already stops there)
                T = rollout_end(environment, goal, obs, s0, settle)
                obs, acts = obs[: T + 1], acts[:T]
                validity = environment.check_rollout(goal, obs, acts, seed=reset_seed, sim=env,
                                                     start_obs=s0)
            timings = {"generate_s": round(t1 - t0, 3),
                       "check_s": round(time.perf_counter() - t1, 3)}
            return _finish(env, clean, category, None if goal is None else goal.to_dict(),
                           reset_seed, obs, acts, validity, None, timings, environment, scene,
                           guide=guide, guide_horizon=max(1, int(guide_horizon)),
                           guide_obstacles=bool(guide_obstacles and guide > 1),
                           settle=settle)
        finally:
            env.close()


def explain_rollout(model, r: ImaginedRollout, constrained: bool = False) -> ImaginedRollout:
    """``r`` with the LM's explanation of it and, for a rollout with a goal, its checks redone with
    that explanation (cycle consistency, explanation true of the rollout). ``constrained``: the
    explanation is decoded among the goals the rollout made true (``explain_rollouts``)."""
    from kalm.llm.generate import explain_rollouts

    with _LOCK:
        t0 = time.perf_counter()
        explanation = explain_rollouts(model, [r.observations], [r.actions],
                                       constrained=constrained)[0]
        t1 = time.perf_counter()
        validity = r.validity
        if r.goal is not None:
            environment = get_env(r.env)
            env = _sim(r.env)
            try:
                validity = environment.check_rollout(
                    environment.goal_from_dict(r.goal), r.observations, r.actions,
                    seed=r.reset_seed, sim=env, explanation=explanation,
                    start_obs=r.observations[0])
            finally:
                env.close()
    timings = {**r.timings, "explain_s": round(t1 - t0, 3),
               "check_s": round(r.timings.get("check_s", 0) + time.perf_counter() - t1, 3)}
    return replace(r, validity=validity, explanation=explanation, timings=timings,
                   explain_constrained=bool(constrained))


def imagine_batch(model, items: Sequence[GoalItem], seed: int, max_steps: int | None = None,
                  explain: bool = True, batch_size: int = 8,
                  progress: Callable[[int, int], None] | None = None,
                  guide: int = 0, explain_constrained: bool = False,
                  guide_horizon: int = 1, guide_obstacles: bool = False,
                  settle: int = 0) -> list[ImaginedRollout]:
    """One rollout per goal item, item ``i`` from ``rollout_base_seed(seed, i, 0)`` (as the CLI's
    ``--per-goal`` rollout 0), generated ``batch_size`` at a time; ``guide``: goal-guided
    decoding's K (0: greedy); ``explain_constrained``: explanations among the goals each rollout
    made true; ``guide_horizon``: the guide's look-ahead with continuous actions;
    ``guide_obstacles``: the guide keeps predicted paths off the goal's walls; ``settle``: steps
    written on past each goal's first success."""
    from kalm.imagine.generate import rollout_base_seed

    items = list(items)
    out: list[ImaginedRollout] = []
    for start in range(0, len(items), max(1, batch_size)):
        chunk = items[start: start + batch_size]
        seeds = [rollout_base_seed(seed, start + j, 0) for j in range(len(chunk))]
        with _LOCK:
            out += _imagine_items(model, chunk, seeds, max_steps, explain, guide,
                                  explain_constrained, guide_horizon, guide_obstacles, settle)
        if progress is not None:
            progress(len(out), len(items))
    return out


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def validity_checks(v: RolloutValidity, env: str = ENV) -> list[Check]:
    """The validity panel of one rollout: each check, its value, and whether it passed.

    ``env``: the environment it was imagined in; one that cannot be set to an imagined state
    (Meta-World) gets its plausibility checks and the open-loop replay (:func:`replay_checks`)."""
    if env != ENV:
        return replay_checks(v, env)
    T = v.transitions
    return [
        Check("Goal met (match)",
              f"yes, at step {v.success_step}" if v.goal_met else "no",
              v.goal_met, "The goal holds on a state the LM wrote."),
        Check("Realistic transitions", f"{v.realistic_transitions} / {T}", v.realistic,
              f"Transitions whose largest per-ball error against the simulator is at most "
              f"{REALISTIC_TOLERANCE}."
              + (f" First unrealistic step: {v.first_unrealistic_step}."
                 if v.first_unrealistic_step is not None else "")),
        Check("Per-ball error (mean / max)",
              f"{_fmt(v.dynamics_error_mean)} / {_fmt(v.dynamics_error_max)}",
              None if v.dynamics_error_max is None else v.dynamics_error_max <= REALISTIC_TOLERANCE,
              "Euclidean distance between each imagined ball centre and where the simulator puts "
              "it, one transition at a time from the imagined state."),
        Check("Out of workbench", f"{v.out_of_workbench_states} states", not v.out_of_workbench,
              f"Generated states with a ball centre more than {WORKBENCH_MARGIN} outside the "
              "workbench."),
        Check("Overlap", f"{v.overlap_states} states", not v.overlap,
              f"Generated states with two ball centres closer than {OVERLAP_DISTANCE:.2f}."),
        Check("Absurd states", f"{v.absurd_states} states", not v.absurd,
              f"Generated states with a NaN, infinite or beyond-{ABSURD_COORD} coordinate."),
        Check("Replay success", "yes" if v.replay_success else "no", v.replay_success,
              "The imagined actions, run open loop in the simulator from s_0, meet the goal."),
        Check("Replay drift at the end", _fmt(v.replay_final_error), None,
              "Mean per-ball distance between the imagined final state and the replayed one."),
        Check("Cycle consistent",
              "not computed" if v.cycle_consistent is None
              else ("yes" if v.cycle_consistent else "no"),
              v.cycle_consistent,
              "The LM's own explanation of the rollout parses to the same goal."),
        Check("Explanation true of the rollout",
              "not computed" if v.explanation_true is None
              else ("yes" if v.explanation_true else "no"),
              None,
              "The explanation names a goal that the imagined rollout made true (false at s_0, "
              "true at the end), the intended one or another: a rollout often makes several "
              "relations true at once, and naming another one is ambiguity, not a misreading."),
    ]


def _steps_text(steps: Sequence[int] | None, what: str) -> str:
    steps = list(steps or [])
    if not steps:
        return f"0 {what}"
    shown = ", ".join(str(t) for t in steps[:6]) + (", …" if len(steps) > 6 else "")
    return f"{len(steps)} {what} ({shown})"


def replay_checks(v: RolloutValidity, env: str) -> list[Check]:
    """The validity panel of a rollout in an environment that cannot be set to an imagined state
    (Meta-World): matching, the open-loop replay from the seeded reset, the plausibility checks
    (``RolloutValidity.extra``: floating objects, gripper jumps, ...) and the hand's distance to
    the replay."""
    tol = get_env(env).validity_tolerances()
    x = v.extra or {}
    T = v.transitions
    floating = x.get("floating_steps") or []
    objects = ", ".join(sorted(x.get("floating_objects") or {}))
    jumps = x.get("gripper_jump_steps") or []
    absent = x.get("moved_absent_steps") or []
    replay_step = x.get("replay_success_step")
    walls = x.get("through_wall_steps") or []
    through = ", ".join(sorted(x.get("through_wall_entities") or {}))
    untouched = x.get("untouched_steps") or []
    return [
        Check("Goal met (match)",
              f"yes, at step {v.success_step}" if v.goal_met else "no",
              v.goal_met, "The task's success rule holds on a state the LM wrote."),
        Check("Replay success",
              (f"yes, at step {replay_step}" if replay_step is not None else "yes")
              if v.replay_success else "no", v.replay_success,
              "The imagined actions, run open loop in the simulator from the same seeded reset, "
              "complete the task."),
        Check("Realistic transitions", f"{v.realistic_transitions} / {T}", v.realistic,
              "Transitions that are physically plausible: no gripper jump, no floating object, no "
              "entity appearing, vanishing or moving while absent, nothing absurd. (This "
              "simulator cannot be set to an imagined state, so a transition is not re-simulated.)"
              + (f" First unrealistic step: {v.first_unrealistic_step}."
                 if v.first_unrealistic_step is not None else "")),
        Check("Floating objects", _steps_text(floating, "states"), not floating,
              "States with an object above the table that the gripper does not hold (lift "
              f"margin {tol.get('lift_margin', '–')} m, hold distance "
              f"{tol.get('hold_distance', '–')} m)" + (f": {objects}." if objects else ".")),
        Check("Gripper jumps", _steps_text(jumps, "steps"), not jumps,
              f"Transitions whose hand moves more than {tol.get('hand_step_max', '–')} m or whose "
              f"fingers open or close by more than {tol.get('finger_step_max', '–')} in one step."),
        *([Check("Through the wall", _steps_text(walls, "steps"), not walls,
                 "Steps whose hand or object passes through the wall: across its plane, within "
                 f"its width, lower than it can (the hand's point below the top plus "
                 f"{tol.get('hand_wall_clearance', '–')} m, its fingers hanging below it; an "
                 "object below the top)" + (f": {through}." if through else "."))]
          if "through_wall_steps" in x else []),
        *([Check("Moved untouched", _steps_text(untouched, "steps"), not untouched,
                 "Steps where a button, handle or lock moves with the hand's point farther from "
                 "it than any real episode shows (8-24 cm by part, + 3 cm): pressed or turned by "
                 "nothing. Reported apart from the realistic count, which follows the paper's "
                 "measures.")]
          if "untouched_steps" in x else []),
        Check("Out of workspace", f"{v.out_of_workbench_states} states", not v.out_of_workbench,
              "Generated states with the hand outside the arm's reach (the mocap limits) or an "
              "object off the table."),
        Check("Absurd states", f"{v.absurd_states} states", not v.absurd,
              f"Generated states with a NaN, infinite or beyond-{tol.get('absurd_coord', '–')} "
              "number." + (f" Entities moved while absent: {len(absent)} states." if absent else "")),
        Check("Hand error vs replay (mean / max)",
              f"{_fmt(v.dynamics_error_mean)} / {_fmt(v.dynamics_error_max)}", None,
              "Distance (m) between the imagined hand and the replayed one over the generated "
              "states; open loop, so it adds up over the steps."),
        Check("Replay drift at the end", _fmt(v.replay_final_error), None,
              "The hand's distance (m) between the imagined final state and the replayed one."),
        Check("Cycle consistent",
              "not computed" if v.cycle_consistent is None
              else ("yes" if v.cycle_consistent else "no"),
              v.cycle_consistent,
              "The LM's own explanation of the rollout parses to the same task."),
        Check("Explanation true of the rollout",
              "not computed" if v.explanation_true is None
              else ("yes" if v.explanation_true else "no"),
              None,
              "The explanation names a task whose success rule the imagined rollout made true "
              "(false at s_0, true at the end)."),
    ]


def batch_rows(rollouts: Sequence[ImaginedRollout]) -> list[dict]:
    """One table row per rollout: its goal and every validity figure."""
    rows = []
    for i, r in enumerate(rollouts):
        v = r.validity
        row = {"#": i, "category": r.category, "text": r.text, "steps": r.steps}
        if v is None:
            row.update(match=None, realistic=None, dynamics_error_max=None)
        else:
            row.update(
                match=v.goal_met, realistic=f"{v.realistic_transitions}/{v.transitions}",
                dynamics_error_mean=v.dynamics_error_mean, dynamics_error_max=v.dynamics_error_max,
                out_of_workbench=v.out_of_workbench_states, overlap=v.overlap_states,
                replay_success=v.replay_success, cycle_consistent=v.cycle_consistent,
                explanation_true=v.explanation_true,
                failures=", ".join(v.failure_types()) or "none",
            )
            if r.env != ENV:  # no overlap check; the plausibility checks instead
                x = v.extra or {}
                row.pop("overlap")
                row.update(floating=len(x.get("floating_steps") or []),
                           gripper_jumps=len(x.get("gripper_jump_steps") or []))
                if "through_wall_steps" in x:
                    row["through_wall"] = len(x["through_wall_steps"])
                if "untouched_steps" in x:
                    row["moved_untouched"] = len(x["untouched_steps"])
        row["explanation"] = r.explanation
        rows.append(row)
    return rows


VIDEO_MAX_STEPS = 25
"""Meta-World videos in the app draw at most about this many steps a side (``video_stride``):
each drawn state is a MuJoCo render (~0.1-0.4 s on a CPU)."""


def video_stride(steps: int, env: str = ENV, most: int = VIDEO_MAX_STEPS) -> int:
    """Every how many steps the app's video of a rollout of ``steps`` steps draws a state (1 for
    CLEVR-Robot, whose videos draw every push)."""
    if env == ENV:
        return 1
    return max(1, -(-int(steps) // max(1, int(most))))


def side_by_side_video(observations: np.ndarray, actions: Sequence[int],
                       fps: float | None = None, *, env: str = ENV, goal: dict | None = None,
                       seed: int | None = None, step_stride: int = 1) -> tuple[bytes, np.ndarray]:
    """The MP4 of the imagined rollout beside the simulator's replay (``kalm.imagine.render``),
    and the side-by-side frame at the start of every drawn step (for a step slider).

    ``fps`` defaults to the video's own pace (``kalm.imagine.render.VIDEO_STEP_SECONDS`` a push).
    ``env``, ``goal``, ``seed``: the rollout's environment, and the goal and reset seed of its
    ``s_0`` (Meta-World replays from there); ``step_stride`` (Meta-World): draw every n-th step
    and the last (frame ``i`` shows step ``min(i * n, T)``).
    """
    from kalm.imagine.render import VIDEO_SUBSTEP_FRAMES, imagined_video

    if env == ENV:
        mp4, frames = imagined_video(observations, actions, fps=fps)
        return mp4, np.stack(frames[::VIDEO_SUBSTEP_FRAMES])
    mp4, frames = imagined_video(observations, actions, fps=fps, env=env, goal=goal, seed=seed,
                                 substep_frames=1, step_stride=step_stride)
    return mp4, np.stack(frames)


def explanation_agrees(r: ImaginedRollout) -> bool | None:
    """Whether the explanation parses to the rollout's goal (None: nothing to compare)."""
    if r.goal is None or not r.explanation:
        return None
    environment = get_env(r.env)
    return environment.goals_equivalent(environment.parse_goal(r.explanation),
                                        environment.goal_from_dict(r.goal))


def folder_env(folder: Any) -> str:
    """The environment a grounded model folder was grounded on (its ``grounded.json``'s "env";
    CLEVR-Robot when it names none or cannot be read), without loading the model."""
    import json
    from pathlib import Path

    try:
        meta = json.loads((Path(folder) / "grounded.json").read_text())
    except (OSError, ValueError):
        return ENV
    env = meta.get("env") if isinstance(meta, dict) else None
    return env if isinstance(env, str) and env else ENV


def rollout_figures(r: ImaginedRollout, step: int | None = None) -> list[tuple[str, Any, str]]:
    """(name, plotly figure, caption) of an imagined rollout in an environment of the generic
    views (Meta-World): its ``episode_figures`` (the imagined states solid, the simulator's
    open-loop replay dotted; the actions' channels) and each present entity's distance to that
    replay."""
    from kalm.ui.plots import entity_errors_figure

    environment = get_env(r.env)
    figs = environment.episode_figures(r.observations, r.actions, step, compare=r.replay,
                                       names=("imagined", "simulator"))
    out = [(name, fig, environment.figure_notes.get(name, "")) for name, fig in figs.items()]
    err = np.asarray(r.per_ball_errors, dtype=np.float64)
    present = [j for j in range(err.shape[1] if err.ndim == 2 else 0)
               if np.isfinite(err[:, j]).any()]
    if r.steps and present:
        names = [environment.state.groups[j][0] for j in present]
        out.append(("errors", entity_errors_figure(
            err[:, present], names, None, step, title="Distance to the simulator's replay (m)"),
            "Each entity's imagined position against the simulator running the same actions open "
            "loop from the same seeded reset (the errors add up over the steps)."))
    met = getattr(r.validity, "success_step", None) if r.validity is not None else None
    if r.settle and met is not None and met < r.steps:  # written on past the goal: say where
        from kalm.ui.plots import goal_met_marker

        out = [(name, goal_met_marker(fig, met), note) for name, fig, note in out]
    return out
