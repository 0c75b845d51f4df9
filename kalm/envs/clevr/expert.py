"""A scripted expert for every goal kind: one-step lookahead in the simulator on a goal cost.

At each step the expert simulates candidate pushes from the current state (the environment's
state is its observation, so this is exact) and takes the push whose outcome has the lowest
goal-specific cost; a push that meets the goal wins outright. The costs are shaped so that greedy
descent works:

- ``relation``: the path length for src to reach a target point beside dst, going around dst (a
  disk it cannot cross) rather than through it; targets that lie outside the walls are replaced
  by a penalty on dst's distance from the wall, so the expert pushes dst away from it first.
- ``move``: the three pushes of the ball toward dir; the one that moves it furthest along dir.
- ``line``: each ball's distance to its slot on a horizontal line, in the asked order.
- ``gather``: each other ball's distance beyond a ring around the centre ball.
- ``all``: the sum of the relation costs, with a bonus per relation that holds.

When no push lowers the cost (a local minimum), the expert takes a two-step lookahead over the
goal's balls, and, failing that, a random push of one of them. ``noise`` (epsilon) replaces the
chosen push with a uniformly random one, for data collection with varied actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import permutations

import numpy as np

from kalm.envs.clevr import N_ACTIONS, N_DIRECTIONS, PUSH_DIRECTIONS, ClevrRobotEnv
from kalm.envs.clevr.model import WORKBENCH
from kalm.envs.clevr.goals.spec import (
    COLORS,
    DIRECTION_VECTORS,
    All,
    Gather,
    Goal,
    Line,
    Move,
    Relation,
    ball_xy,
)

__all__ = ["EXPERT_MODES", "ExpertPolicy", "goal_cost"]

EXPERT_MODES = ("greedy", "direct", "aim")

# relation: dst is an obstacle disk for src of this radius (ball contact 0.26 plus a margin).
OBSTACLE_RADIUS = 0.28
# Target points beside dst: distance from dst and angles off the goal direction. 0.31 sits inside
# the success annulus (0.26 contact .. 0.39 success distance).
RELATION_TARGET_RADIUS = 0.31
RELATION_TARGET_ANGLES_DEG = (0.0, -25.0, 25.0)
# Targets must keep this margin inside the workbench.
WALL_MARGIN = 0.03
# A target outside the walls costs this much per unit of distance beyond them.
WALL_PENALTY = 3.0
# line: slot spacing along x (balls touch at 0.26) and the band for the line's height.
LINE_SPACING = 0.28
LINE_Y_RANGE = (-0.15, 0.55)
# gather: aim for this distance from the centre (success needs <= 0.325).
GATHER_RING = 0.29
# all: cost credited to a relation that already holds, so the expert keeps it.
ALL_HOLD_BONUS = 0.3
# A push must lower the cost by this much to count as progress.
MIN_PROGRESS = 1e-3


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _inside(p: np.ndarray, margin: float = WALL_MARGIN) -> bool:
    x0, x1, y0, y1 = WORKBENCH
    return x0 + margin <= p[0] <= x1 - margin and y0 + margin <= p[1] <= y1 - margin


def _outside_distance(p: np.ndarray, margin: float = WALL_MARGIN) -> float:
    x0, x1, y0, y1 = WORKBENCH
    dx = max(x0 + margin - p[0], 0.0, p[0] - (x1 - margin))
    dy = max(y0 + margin - p[1], 0.0, p[1] - (y1 - margin))
    return math.hypot(dx, dy)


def _geodesic(p: np.ndarray, t: np.ndarray, c: np.ndarray, r: float) -> float:
    """Shortest path length from p to t that does not cross the disk (c, r)."""
    d = t - p
    L2 = float(d @ d)
    if L2 < 1e-12:
        return 0.0
    u = float(np.clip((c - p) @ d / L2, 0.0, 1.0))
    if np.linalg.norm(p + u * d - c) >= r:
        return math.sqrt(L2)
    dp = max(float(np.linalg.norm(p - c)), r + 1e-6)
    dt = max(float(np.linalg.norm(t - c)), r + 1e-6)
    tp = math.sqrt(dp * dp - r * r)
    tt = math.sqrt(dt * dt - r * r)
    ang = math.acos(float(np.clip((p - c) @ (t - c) / (dp * dt), -1.0, 1.0)))
    arc = ang - math.acos(min(1.0, r / dp)) - math.acos(min(1.0, r / dt))
    return tp + tt + r * max(arc, 0.0)


def _nearest_target_path(g: Relation, obs: np.ndarray) -> float:
    """Path length from src to its nearest target point beside dst inside the walls (inf if none)."""
    p, c = ball_xy(obs, g.src), ball_xy(obs, g.dst)
    v = DIRECTION_VECTORS[g.dir]
    best = math.inf
    for ang in RELATION_TARGET_ANGLES_DEG:
        t = c + RELATION_TARGET_RADIUS * _rot(v, ang)
        if _inside(t):
            best = min(best, _geodesic(p, t, c, OBSTACLE_RADIUS))
    return best


def _relation_cost(g: Relation, obs: np.ndarray) -> float:
    if g.holds(obs):
        return 0.0
    best = _nearest_target_path(g, obs)
    if best < math.inf:
        return best
    c, v = ball_xy(obs, g.dst), DIRECTION_VECTORS[g.dir]
    p = ball_xy(obs, g.src)
    t = c + RELATION_TARGET_RADIUS * v
    x0, x1, y0, y1 = WORKBENCH
    clipped = np.array([np.clip(t[0], x0, x1), np.clip(t[1], y0, y1)])
    return _geodesic(p, clipped, c, OBSTACLE_RADIUS) + WALL_PENALTY * _outside_distance(t)


def _relation_aim(g: Relation, obs: np.ndarray) -> float:
    """Path length from src to its nearest target point beside dst, whether or not the goal holds.

    Unlike ``_relation_cost`` this does not drop to 0 once the relation holds, so among several
    pushes that complete the goal it prefers the one that lands src closest to a target point.
    """
    best = _nearest_target_path(g, obs)
    return best if best < math.inf else _relation_cost(g, obs)


def _line_slots(g: Line, obs: np.ndarray) -> np.ndarray:
    n = len(g.order)
    ys = [ball_xy(obs, b)[1] for b in g.order]
    y = float(np.clip(np.median(ys), *LINE_Y_RANGE))
    xs = [ball_xy(obs, b)[0] for b in g.order]
    half = LINE_SPACING * (n - 1) / 2
    x0, x1 = WORKBENCH[0] + half, WORKBENCH[1] - half
    xc = float(np.clip(np.mean(xs), min(x0, 0.0), max(x1, 0.0)))
    return np.array([[xc + (i - (n - 1) / 2) * LINE_SPACING, y] for i in range(n)])


def _line_cost(g: Line, obs: np.ndarray, slots: np.ndarray) -> float:
    if g.holds(obs):
        return 0.0
    return sum(float(np.linalg.norm(ball_xy(obs, b) - s)) for b, s in zip(g.order, slots))


def _gather_cost(g: Gather, obs: np.ndarray) -> float:
    if g.holds(obs):
        return 0.0
    return sum(max(0.0, d - GATHER_RING) for d in g.distances(obs))


def _all_cost(g: All, obs: np.ndarray) -> float:
    return sum(_relation_cost(r, obs) - (ALL_HOLD_BONUS if r.holds(obs) else 0.0) for r in g.goals)


def goal_cost(goal: Goal, obs: np.ndarray, start_obs: np.ndarray | None = None,
              plan: dict | None = None) -> float:
    """The expert's cost of ``obs`` for ``goal`` (lower is better; 0 or below when it holds)."""
    if isinstance(goal, Relation):
        return _relation_cost(goal, obs)
    if isinstance(goal, Line):
        slots = (plan or {}).get("slots")
        return _line_cost(goal, obs, _line_slots(goal, obs) if slots is None else slots)
    if isinstance(goal, Gather):
        return _gather_cost(goal, obs)
    if isinstance(goal, All):
        return _all_cost(goal, obs)
    if isinstance(goal, Move):
        if start_obs is None:
            start_obs = obs
        disp = ball_xy(obs, goal.ball) - ball_xy(start_obs, goal.ball)
        return -float(disp @ DIRECTION_VECTORS[goal.dir])
    raise TypeError(f"no expert cost for goal {goal!r}")


def _goal_balls(goal: Goal) -> list[int]:
    if isinstance(goal, Relation):
        return [COLORS.index(goal.src), COLORS.index(goal.dst)]
    if isinstance(goal, Move):
        return [COLORS.index(goal.ball)]
    if isinstance(goal, All):
        return sorted({COLORS.index(c) for r in goal.goals for c in (r.src, r.dst)})
    if isinstance(goal, Line):
        return [COLORS.index(c) for c in goal.order]
    return list(range(len(COLORS)))


def _move_actions(goal: Move) -> list[int]:
    """The straight push toward dir and the two diagonal pushes that lean toward it."""
    v = DIRECTION_VECTORS[goal.dir]
    b = COLORS.index(goal.ball)
    return [
        b * N_DIRECTIONS + d
        for d in range(N_DIRECTIONS)
        if PUSH_DIRECTIONS[d] @ v > 0.5
    ]


@dataclass
class ExpertPolicy:
    """The scripted expert (oracle): it reads the goal spec, not the text.

    ``act(obs)`` after ``reset(goal, obs)``.

    ``noise``: probability of a uniformly random push instead of the expert's (epsilon-noise).
    ``seed``: for the noise and the tie-breaking random pushes.
    ``mode``: ``"greedy"`` takes the best push of any goal ball; ``"direct"`` (relation goals)
    pushes only the source ball while a push of it makes progress, and falls back to greedy when
    none does (e.g. dst against a wall); ``"aim"`` (relation goals) pushes the source ball in the
    direction that brings it closest to a target point beside dst, completing or not (no
    first-listed-push shortcut), so its choice is a function of the two balls' geometry alone.
    Direct and aim rollouts are a simpler function of the state (the
    named ball, pushed toward its target), which is what a small LM can learn to imitate.
    """

    noise: float = 0.0
    seed: int | None = None
    mode: str = "greedy"
    env: ClevrRobotEnv = field(default_factory=ClevrRobotEnv, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1]; got {self.noise}")
        if self.mode not in EXPERT_MODES:
            raise ValueError(f"mode must be one of {', '.join(EXPERT_MODES)}; got {self.mode!r}")
        self.rng = np.random.default_rng(self.seed)
        self.goal: Goal | None = None
        self.start_obs: np.ndarray | None = None
        self.plan: dict = {}
        self.stuck_steps = 0

    name = "expert"

    def reset(self, goal: Goal, obs: np.ndarray, text: str = "") -> None:
        self.goal = goal
        self.start_obs = np.asarray(obs, dtype=np.float64).copy()
        self.plan = {}
        if isinstance(goal, Line):
            self.plan["slots"] = _line_slots(goal, self.start_obs)
        self.stuck_steps = 0

    def _cost(self, obs: np.ndarray) -> float:
        assert self.goal is not None
        return goal_cost(self.goal, obs, self.start_obs, self.plan)

    def _candidates(self) -> list[int]:
        assert self.goal is not None
        if isinstance(self.goal, Move):
            return _move_actions(self.goal)
        if isinstance(self.goal, Relation):
            return [b * N_DIRECTIONS + d for b in _goal_balls(self.goal) for d in range(N_DIRECTIONS)]
        return list(range(N_ACTIONS))

    def _outcomes(self, obs: np.ndarray, actions: list[int]) -> list[tuple[float, bool, int, np.ndarray]]:
        out = []
        for a in actions:
            nxt = self.env.simulate(obs, a)
            ok = self.goal.holds(nxt, self.start_obs)  # type: ignore[union-attr]
            out.append((self._cost(nxt), ok, a, nxt))
        return out

    def act(self, obs: np.ndarray) -> int:
        if self.goal is None:
            raise RuntimeError("call reset(goal, obs) before act(obs)")
        obs = np.asarray(obs, dtype=np.float64)
        if self.noise > 0 and self.rng.random() < self.noise:
            return int(self.rng.integers(N_ACTIONS))
        now = self._cost(obs)
        if self.mode == "direct" and isinstance(self.goal, Relation):
            b = COLORS.index(self.goal.src)
            direct = self._outcomes(obs, [b * N_DIRECTIONS + d for d in range(N_DIRECTIONS)])
            for cost, ok, a, _ in direct:
                if ok:
                    return a
            best_cost, _, best_a, _ = min(direct, key=lambda o: o[0])
            if best_cost < now - MIN_PROGRESS:
                return best_a
        if self.mode == "aim" and isinstance(self.goal, Relation):
            b = COLORS.index(self.goal.src)
            aimed = [(_relation_aim(self.goal, nxt), cost, ok, a)
                     for cost, ok, a, nxt in self._outcomes(obs, [b * N_DIRECTIONS + d
                                                                   for d in range(N_DIRECTIONS)])]
            aim, cost, ok, a = min(aimed, key=lambda o: o[0])
            if ok or cost < now - MIN_PROGRESS:
                return a
        outcomes = self._outcomes(obs, self._candidates())
        for cost, ok, a, _ in outcomes:
            if ok:
                return a
        best_cost, _, best_a, _ = min(outcomes, key=lambda o: o[0])
        if best_cost < now - MIN_PROGRESS or isinstance(self.goal, Move):
            return best_a
        # Local minimum: look two pushes ahead over the goal's balls.
        self.stuck_steps += 1
        first = [b * N_DIRECTIONS + d for b in _goal_balls(self.goal) for d in range(N_DIRECTIONS)]
        best2, best2_a = now - MIN_PROGRESS, None
        for cost1, ok1, a1, nxt in self._outcomes(obs, first):
            for cost2, ok2, _, _ in self._outcomes(nxt, self._candidates()):
                c = -math.inf if ok2 else cost2
                if c < best2:
                    best2, best2_a = c, a1
        if best2_a is not None:
            return best2_a
        return int(self.rng.choice(first))
