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

Nothing is written to disk. Generation holds a lock, so two app sessions do not share the CPU
cores at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from kalm.envs import get_env
from kalm.goals.parser import goals_equivalent, parse_goal_text
from kalm.goals.spec import Goal, goal_from_dict
from kalm.goals.suites import DEFAULT_CATEGORY, GoalItem
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
    "validity_checks",
    "batch_rows",
    "per_ball_step_errors",
    "side_by_side_video",
]

MAX_TEXT_CHARS = 300
_LOCK = threading.Lock()
ENV = "clevr"
"""The environment the Imagine page's rollouts are imagined in (reached through the registry)."""


def _sim() -> Any:
    """A scratch simulator of :data:`ENV` (the caller closes it)."""
    return get_env(ENV).make()


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
    """float32 (T + 1, 10): s_0 from the reset, the rest written by the LM."""
    actions: np.ndarray
    replay: np.ndarray
    """float64 (T + 1, 10): the simulator running the same actions from s_0."""
    per_ball_errors: np.ndarray
    """(T, 5): each transition's per-ball error against the simulator (NaN: not measurable)."""
    validity: RolloutValidity | None
    explanation: str | None
    timings: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(len(self.actions))

    @property
    def explanation_goal(self) -> dict | None:
        """The goal the LM's explanation parses to (None: no explanation, or not understood)."""
        if not self.explanation:
            return None
        g = parse_goal_text(self.explanation)
        return g.to_dict() if g is not None else None


@dataclass(frozen=True)
class Check:
    """One line of the validity panel."""

    name: str
    value: str
    ok: bool | None
    """True: passed, False: failed, None: not computed / informative."""
    help: str


def check_goal_text(text: str) -> tuple[str, Goal | None]:
    """The cleaned text and the goal it parses to (None when it parses to nothing).

    Raises ``GoalTextProblem`` for an empty or overlong text (the LM cannot imagine from it).
    """
    if not isinstance(text, str) or not text.strip():
        raise GoalTextProblem("Type a goal first: the goal text is empty.")
    clean = " ".join(text.split())
    if len(clean) > MAX_TEXT_CHARS:
        raise GoalTextProblem(
            f"The goal text is {len(clean)} characters long; keep it under {MAX_TEXT_CHARS}."
        )
    return clean, parse_goal_text(clean)


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


def _finish(env: Any, text: str, category: str, goal: dict | None, reset_seed: int,
            obs: np.ndarray, acts: np.ndarray, validity: RolloutValidity | None,
            explanation: str | None, timings: dict) -> ImaginedRollout:
    t0 = time.perf_counter()
    obs = np.asarray(obs, dtype=np.float32)
    acts = np.asarray(acts, dtype=np.int64).reshape(-1)
    replay = replay_rollout(env, obs[0], acts)
    errors = per_ball_step_errors(env, obs, acts)
    timings = {**timings, "replay_s": round(time.perf_counter() - t0, 3)}
    return ImaginedRollout(text, category, goal, int(reset_seed), obs, acts, replay, errors,
                           validity, explanation, timings)


def _imagine_items(model, items: list[GoalItem], base_seeds: list[int], max_steps: int | None,
                   explain: bool) -> list[ImaginedRollout]:
    """The CLI's batch code (``kalm.imagine.generate``) on goal items, in memory."""
    from kalm.evaluate import initial_state
    from kalm.imagine.generate import ImagineConfig, _run_batch

    cfg = ImagineConfig(per_goal=1, seed=0, batch_size=max(1, len(items)), max_steps=max_steps,
                        explain=explain).validate()
    env = _sim()
    try:
        plan = []
        for i, (item, base) in enumerate(zip(items, base_seeds)):
            s0, reset_seed = initial_state(env, item.goal, int(base))
            plan.append({"index": i, "item_index": i, "k": 0, "item": item,
                         "base_seed": int(base), "reset_seed": reset_seed,
                         "s0": np.asarray(s0, dtype=np.float32)})
        episodes, times = _run_batch(model, get_env(ENV), env, plan, cfg)
        timings = {k: round(v, 3) for k, v in times.items()}
        out = []
        for item, ep in zip(items, episodes):
            v = RolloutValidity.from_dict(ep.info["validity"])
            out.append(_finish(env, item.text, item.category, item.goal.to_dict(), ep.seed,
                               ep.observations, ep.actions, v, v.explanation, timings))
        return out
    finally:
        env.close()


def _imagine_free_text(model, text: str, seed: int, max_steps: int | None,
                       explain: bool) -> ImaginedRollout:
    """A text with no goal spec: generated to ``max_steps`` (50 when None), no validity."""
    from kalm.llm.generate import explain_rollouts, generate_rollouts

    env = _sim()
    try:
        s0, _ = env.reset(seed=int(seed))
        t0 = time.perf_counter()
        r = generate_rollouts(model, [text], np.asarray(s0, dtype=np.float32)[None], [None],
                              max_steps=max_steps)[0]
        t1 = time.perf_counter()
        explanation = (explain_rollouts(model, [r.observations], [r.actions])[0]
                       if explain else None)
        t2 = time.perf_counter()
        timings = {"generate_s": round(t1 - t0, 3), "explain_s": round(t2 - t1, 3), "check_s": 0.0}
        return _finish(env, text, DEFAULT_CATEGORY, None, int(seed), r.observations, r.actions,
                       None, explanation, timings)
    finally:
        env.close()


def imagine_one(model, text: str, seed: int, goal: Goal | dict | None = None,
                max_steps: int | None = None, explain: bool = True,
                category: str = DEFAULT_CATEGORY) -> ImaginedRollout:
    """Imagine one rollout for ``text`` from the initial state of ``seed``.

    ``goal``: the goal spec (a Goal or its dict); when None it is parsed from the text, and a
    text that parses to nothing is imagined without validity. ``seed`` is the base reset seed:
    the first of ``seed, seed + 1, ...`` whose state does not already meet the goal is used.
    Raises ``GoalTextProblem`` for an empty or overlong text.
    """
    clean, parsed = check_goal_text(text)
    if isinstance(goal, dict):
        goal = goal_from_dict(goal)
    goal = goal if goal is not None else parsed
    with _LOCK:
        if goal is None:
            return _imagine_free_text(model, clean, seed, max_steps, explain)
        return _imagine_items(model, [GoalItem(clean, goal, category)], [int(seed)],
                              max_steps, explain)[0]


def throttled(draw: Callable[[int, np.ndarray, np.ndarray], None], every: float = 0.15
              ) -> Callable[[int, np.ndarray, np.ndarray, bool], None]:
    """An ``on_step`` for ``imagine_rollout`` that calls ``draw(t, observations, actions)`` on the
    first step, on the last one, and otherwise at most once every ``every`` seconds (a redraw that
    costs more than a generated step would slow generation down)."""
    last = [-float("inf")]

    def on_step(t: int, observations: np.ndarray, actions: np.ndarray, done: bool) -> None:
        now = time.perf_counter()
        if t == 0 or done or now - last[0] >= every:
            draw(t, observations, actions)
            last[0] = time.perf_counter()

    return on_step


def imagine_rollout(model, text: str, seed: int, goal: Goal | dict | None = None,
                    max_steps: int | None = None, category: str = DEFAULT_CATEGORY,
                    on_step: Callable[[int, np.ndarray, np.ndarray, bool], None] | None = None
                    ) -> ImaginedRollout:
    """``imagine_one`` without the explanation: the rollout and its checks, as soon as they exist.

    ``on_step(t, observations (t + 2, 10), actions (t + 1,), done)`` is called after each generated
    step (``kalm.llm.generate.generate_rollouts``'s callback, for this one rollout). The result's
    ``explanation`` is None and its validity has no cycle consistency: ``explain_rollout`` adds
    them. Raises ``GoalTextProblem`` for an empty or overlong text.
    """
    from kalm.evaluate import initial_state
    from kalm.imagine.validity import check_rollout, goal_met_at
    from kalm.llm.generate import generate_rollouts

    clean, parsed = check_goal_text(text)
    if isinstance(goal, dict):
        goal = goal_from_dict(goal)
    goal = goal if goal is not None else parsed
    cb = None
    if on_step is not None:
        def cb(t, observations, actions, done):
            on_step(int(t), observations[0], actions[0], bool(done[0]))
    with _LOCK:
        env = _sim()
        try:
            if goal is None:
                s0, reset_seed = env.reset(seed=int(seed))[0], int(seed)
            else:
                s0, reset_seed = initial_state(env, goal, int(seed))
            s0 = np.asarray(s0, dtype=np.float32)
            t0 = time.perf_counter()
            r = generate_rollouts(model, [clean], s0[None], [goal], max_steps=max_steps,
                                  on_step=cb)[0]
            t1 = time.perf_counter()
            obs, acts, validity = r.observations, r.actions, None
            if goal is not None:  # cut at the first success (generation already stops there)
                met = goal_met_at(goal, obs, s0)
                T = len(acts) if met is None else met
                obs, acts = obs[: T + 1], acts[:T]
                validity = check_rollout(env, obs, acts, goal, s0)
            timings = {"generate_s": round(t1 - t0, 3),
                       "check_s": round(time.perf_counter() - t1, 3)}
            return _finish(env, clean, category, None if goal is None else goal.to_dict(),
                           reset_seed, obs, acts, validity, None, timings)
        finally:
            env.close()


def explain_rollout(model, r: ImaginedRollout) -> ImaginedRollout:
    """``r`` with the LM's explanation of it and, for a rollout with a goal, its checks redone with
    that explanation (cycle consistency, explanation true of the rollout)."""
    from dataclasses import replace

    from kalm.imagine.validity import check_rollout
    from kalm.llm.generate import explain_rollouts

    with _LOCK:
        t0 = time.perf_counter()
        explanation = explain_rollouts(model, [r.observations], [r.actions])[0]
        t1 = time.perf_counter()
        validity = r.validity
        if r.goal is not None:
            env = _sim()
            try:
                validity = check_rollout(env, r.observations, r.actions, goal_from_dict(r.goal),
                                         r.observations[0], explanation=explanation)
            finally:
                env.close()
    timings = {**r.timings, "explain_s": round(t1 - t0, 3),
               "check_s": round(r.timings.get("check_s", 0) + time.perf_counter() - t1, 3)}
    return replace(r, validity=validity, explanation=explanation, timings=timings)


def imagine_batch(model, items: Sequence[GoalItem], seed: int, max_steps: int | None = None,
                  explain: bool = True, batch_size: int = 8,
                  progress: Callable[[int, int], None] | None = None) -> list[ImaginedRollout]:
    """One rollout per goal item, item ``i`` from ``rollout_base_seed(seed, i, 0)`` (as the CLI's
    ``--per-goal`` rollout 0), generated ``batch_size`` at a time."""
    from kalm.imagine.generate import rollout_base_seed

    items = list(items)
    out: list[ImaginedRollout] = []
    for start in range(0, len(items), max(1, batch_size)):
        chunk = items[start: start + batch_size]
        seeds = [rollout_base_seed(seed, start + j, 0) for j in range(len(chunk))]
        with _LOCK:
            out += _imagine_items(model, chunk, seeds, max_steps, explain)
        if progress is not None:
            progress(len(out), len(items))
    return out


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def validity_checks(v: RolloutValidity) -> list[Check]:
    """The validity panel of one rollout: each check, its value, and whether it passed."""
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
        row["explanation"] = r.explanation
        rows.append(row)
    return rows


def side_by_side_video(observations: np.ndarray, actions: Sequence[int],
                       fps: float | None = None) -> tuple[bytes, np.ndarray]:
    """The MP4 of the imagined rollout beside the simulator's replay (``kalm.imagine.render``),
    and the side-by-side frame at the start of every step (for a step slider).

    ``fps`` defaults to the video's own pace (``kalm.imagine.render.VIDEO_STEP_SECONDS`` a push).
    """
    from kalm.imagine.render import VIDEO_SUBSTEP_FRAMES, imagined_video

    mp4, frames = imagined_video(observations, actions, fps=fps)
    return mp4, np.stack(frames[::VIDEO_SUBSTEP_FRAMES])


def explanation_agrees(r: ImaginedRollout) -> bool | None:
    """Whether the explanation parses to the rollout's goal (None: nothing to compare)."""
    if r.goal is None or not r.explanation:
        return None
    return goals_equivalent(parse_goal_text(r.explanation), goal_from_dict(r.goal))
