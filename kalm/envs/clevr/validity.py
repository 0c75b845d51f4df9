"""CLEVR-Robot's validity checks of an imagined rollout (the rules are in ``kalm.imagine.validity``).

Every transition ``s_t -> s_{t+1}`` is re-simulated from the imagined ``s_t`` (CLEVR's simulator
can be set to any state vector), the generated states are checked against the workbench and for
overlapping balls, and the actions are replayed open loop from ``s_0``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kalm.envs.clevr.model import BALL_RADIUS, WORKBENCH
from kalm.envs.clevr.sim import N_BALLS, N_DIRECTIONS, OBS_DIM, ClevrRobotEnv
from kalm.envs.clevr.goals.parser import goals_equivalent, parse_goal_text
from kalm.envs.clevr.goals.spec import Goal, Move, describes
from kalm.imagine.validity import RolloutValidity

__all__ = [
    "REALISTIC_TOLERANCE",
    "WORKBENCH_MARGIN",
    "OVERLAP_MARGIN",
    "OVERLAP_DISTANCE",
    "ABSURD_COORD",
    "check_rollout",
    "implausible_transitions",
    "STILL_DISTANCE",
    "replay_rollout",
    "goal_met_at",
    "per_ball_errors",
]

# A transition is realistic when no ball lands farther than this from where the simulator puts
# it. A clean push moves a ball 0.14-0.15, so 0.05 (about a third of a push) accepts "the right
# ball pushed the right way, about the right distance" and rejects a missing push, a push of the
# wrong ball or a wrong direction, and balls that drift or teleport. The simulator reproduces its
# own recorded steps (float32 observations) to within about 0.001.
REALISTIC_TOLERANCE = 0.05
# The walls stop ball centres at the workbench edge; soft contacts let them pass it by about
# 0.005 in the simulator. Farther out than this margin, a state is not physically reachable.
WORKBENCH_MARGIN = 0.02
# Two balls (radius 0.13) touch at a centre distance of 0.26; soft contacts let the simulator
# squeeze them to about 0.256. Centres closer than 0.26 - 0.06 = 0.2 are balls inside each other.
OVERLAP_MARGIN = 0.06
OVERLAP_DISTANCE = 2 * BALL_RADIUS - OVERLAP_MARGIN
# The workbench spans about 1.2; a coordinate beyond this is no position at all.
ABSURD_COORD = 5.0


def per_ball_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance per ball between observations ``a`` and ``b``: ``(..., 5)``."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return np.linalg.norm(d.reshape(*d.shape[:-1], N_BALLS, 2), axis=-1)


def goal_met_at(goal: Goal, observations: np.ndarray, start_obs: np.ndarray) -> int | None:
    """First t >= 1 with the goal holding on ``observations[t]`` (judged against ``start_obs``),
    or None. A ``move`` goal is judged on ``observations[1]`` only."""
    last = min(1, len(observations) - 1) if isinstance(goal, Move) else len(observations) - 1
    for t in range(1, last + 1):
        s = observations[t]
        if np.all(np.isfinite(s)) and goal.holds(s, start_obs):
            return t
    return None


def _absurd(states: np.ndarray) -> np.ndarray:
    """(N,) bool: a coordinate is NaN, infinite or beyond ABSURD_COORD."""
    with np.errstate(invalid="ignore"):
        return ~np.all(np.isfinite(states) & (np.abs(states) <= ABSURD_COORD), axis=-1)


def _out_of_workbench(states: np.ndarray) -> np.ndarray:
    x0, x1, y0, y1 = WORKBENCH
    m = WORKBENCH_MARGIN
    xy = states.reshape(len(states), N_BALLS, 2)
    with np.errstate(invalid="ignore"):
        inside = (
            (xy[..., 0] >= x0 - m) & (xy[..., 0] <= x1 + m)
            & (xy[..., 1] >= y0 - m) & (xy[..., 1] <= y1 + m)
        )
    return ~np.all(inside, axis=-1)


def _overlapping(states: np.ndarray) -> np.ndarray:
    xy = states.reshape(len(states), N_BALLS, 2)
    i, j = np.triu_indices(N_BALLS, k=1)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.linalg.norm(xy[:, i] - xy[:, j], axis=-1)
        return np.any(d < OVERLAP_DISTANCE, axis=-1)


# A ball that moved less than this in a transition stayed where it was (a clean push moves the
# pushed ball 0.14-0.15; balls it does not touch stay within about 0.001).
STILL_DISTANCE = 0.03


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points ``p`` (..., 2) to the segments ``a -> b`` (..., 2)."""
    ab = b - a
    L2 = np.sum(ab * ab, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.clip(np.where(L2 > 1e-12, np.sum((p - a) * ab, axis=-1) / L2, 0.0), 0.0, 1.0)
    return np.linalg.norm(p - (a + u[..., None] * ab), axis=-1)


def implausible_transitions(obs: np.ndarray, next_obs: np.ndarray,
                            actions: np.ndarray) -> np.ndarray:
    """``(B,)`` bool: generated transitions that no push can make, from geometry alone: the next
    state is absurd, leaves the workbench or has balls inside each other, or the pushed ball went
    through a ball that stayed where it was (in the simulator that ball stops it or is pushed).
    No transition of the real data is flagged (``bench/physical_decoding.py`` measures it)."""
    s = np.asarray(obs, dtype=np.float64).reshape(-1, N_BALLS, 2)
    n = np.asarray(next_obs, dtype=np.float64).reshape(-1, N_BALLS, 2)
    flat = n.reshape(len(n), -1)
    bad = _absurd(flat)
    ok = ~bad
    bad[ok] = _out_of_workbench(flat[ok]) | _overlapping(flat[ok])
    ball = np.asarray(actions, dtype=np.int64).reshape(-1) // N_DIRECTIONS
    rows = np.arange(len(s))
    a, b = s[rows, ball], n[rows, ball]                           # the pushed ball's path
    with np.errstate(invalid="ignore"):
        still = np.linalg.norm(n - s, axis=-1) < STILL_DISTANCE  # (B, 5)
        d = _segment_distance(s, a[:, None], b[:, None])          # (B, 5)
        through = still & (d < OVERLAP_DISTANCE)
    through[rows, ball] = False
    return bad | np.any(through, axis=-1)


def replay_rollout(env: ClevrRobotEnv, start_obs: np.ndarray, actions: Sequence[int]) -> np.ndarray:
    """The real observations ``(T + 1, 10)`` of ``actions`` run open loop from ``start_obs``."""
    env.reset(options={"obs": np.asarray(start_obs, dtype=np.float64)})
    out = [env.get_obs()]
    for a in actions:
        env.push(int(a))
        out.append(env.get_obs())
    return np.stack(out)


def check_rollout(
    env: ClevrRobotEnv,
    observations: np.ndarray,
    actions: np.ndarray,
    goal: Goal,
    start_obs: np.ndarray | None = None,
    explanation: str | None = None,
) -> RolloutValidity:
    """Score one imagined rollout on every check (see the module docstring).

    ``env`` is a scratch simulator (its state is overwritten). ``start_obs`` defaults to
    ``observations[0]``. ``explanation``: the LM's goal text for this rollout, if computed.
    """
    obs = np.asarray(observations, dtype=np.float64)
    acts = np.asarray(actions, dtype=np.int64).reshape(-1)
    T = len(acts)
    if obs.ndim != 2 or obs.shape != (T + 1, OBS_DIM):
        raise ValueError(
            f"a rollout of {T} actions needs observations of shape ({T + 1}, {OBS_DIM}); "
            f"got {obs.shape}"
        )
    s0 = obs[0] if start_obs is None else np.asarray(start_obs, dtype=np.float64)
    if not np.all(np.isfinite(s0)):
        raise ValueError("the rollout's start state must be finite (it comes from a real reset)")

    absurd = _absurd(obs)
    generated = obs[1:]
    # -- dynamics consistency, one transition at a time from the imagined state
    step_errors: list[float | None] = []
    means: list[float] = []
    realistic = 0
    first_bad: int | None = None
    for t in range(T):
        err = None
        if not (absurd[t] or absurd[t + 1]):
            err = per_ball_errors(env.simulate(obs[t], int(acts[t])), obs[t + 1])
            if not np.all(np.isfinite(err)):  # the physics blew up (balls set inside walls)
                err = None
        if err is None:
            step_errors.append(None)
            ok = False
        else:
            step_errors.append(float(err.max()))
            means.append(float(err.mean()))
            ok = bool(err.max() <= REALISTIC_TOLERANCE)
        realistic += ok
        if not ok and first_bad is None:
            first_bad = t
    measured = [e for e in step_errors if e is not None]

    # -- open-loop replay in the real simulator
    replayed = replay_rollout(env, s0, acts)
    replay_ok = goal_met_at(goal, replayed, s0) is not None
    drift = None
    if T and not absurd[-1]:
        drift = float(per_ball_errors(replayed[-1], obs[-1]).mean())

    success_step = goal_met_at(goal, obs, s0)
    cycle = true_account = None
    if explanation is not None:
        explained = parse_goal_text(explanation)
        cycle = goals_equivalent(explained, goal)
        true_account = bool(explained is not None and T > 0 and not absurd[-1]
                            and describes(explained, s0, obs[-1]))
    return RolloutValidity(
        steps=T,
        goal_met=success_step is not None,
        success_step=success_step,
        transitions=T,
        realistic_transitions=int(realistic),
        first_unrealistic_step=first_bad,
        dynamics_error_mean=float(np.mean(means)) if means else None,
        dynamics_error_max=float(max(measured)) if measured else None,
        out_of_workbench_states=int(np.sum(_out_of_workbench(generated) & ~absurd[1:])),
        overlap_states=int(np.sum(_overlapping(generated) & ~absurd[1:])),
        absurd_states=int(np.sum(absurd[1:])),
        replay_success=bool(replay_ok),
        replay_final_error=drift,
        explanation=explanation,
        cycle_consistent=cycle,
        explanation_true=true_account,
        step_errors=step_errors,
    )


