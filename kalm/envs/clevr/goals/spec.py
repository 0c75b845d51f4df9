"""Goal specs for CLEVR-Robot: the five goal kinds, their success rules and their rewards.

Every rule is computed from observations alone (10 floats: the (x, y) centre of each ball in the
fixed order red, blue, green, purple, cyan). Directions follow KALM's convention:
``behind = +y``, ``left = -x``, ``front = -y``, ``right = +x``.

A goal is a small frozen dataclass; ``goal.to_dict()`` / ``goal_from_dict(d)`` give the JSON form
used in goals files and datasets, e.g. ``{"kind": "relation", "src": "red", "dst": "blue",
"dir": "left"}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

__all__ = [
    "COLORS",
    "DIRECTIONS",
    "DIRECTION_VECTORS",
    "GOAL_KINDS",
    "GoalSpecError",
    "Relation",
    "Move",
    "Line",
    "Gather",
    "All",
    "Goal",
    "goal_from_dict",
    "goal_horizon",
    "ball_xy",
    "MAX_EPISODE_STEPS",
    "MOVE_EPISODE_STEPS",
]

COLORS: tuple[str, ...] = ("red", "blue", "green", "purple", "cyan")
DIRECTIONS: tuple[str, ...] = ("left", "right", "front", "behind")
DIRECTION_VECTORS: dict[str, np.ndarray] = {
    "left": np.array([-1.0, 0.0]),
    "right": np.array([1.0, 0.0]),
    "front": np.array([0.0, -1.0]),
    "behind": np.array([0.0, 1.0]),
}
GOAL_KINDS: tuple[str, ...] = ("relation", "move", "line", "gather", "all")

MAX_EPISODE_STEPS = 50
# A `move` goal is judged after exactly one push (KALM's easy goals are single pushes).
MOVE_EPISODE_STEPS = 1

# relation(src, dst, dir): src lies within 45 degrees of dir as seen from dst, and close to it.
RELATION_MAX_ANGLE_DEG = 45.0
RELATION_MAX_DIST = 0.39
# Dense relation reward pulls src toward dst + 0.195 * dir (half the success distance).
RELATION_TARGET_OFFSET = 0.195
DENSE_PROGRESS_SCALE = 10.0
SUCCESS_BONUS = 100.0
SUBGOAL_BONUS = 10.0
# move(ball, dir): a push of ~0.14-0.15 toward dir; the diagonal pushes (cos 45 deg * 0.145 = 0.10)
# count too, the perpendicular ones do not.
MOVE_MIN_DISPLACEMENT = 0.08
MOVE_MAX_ANGLE_DEG = 50.0
# line(order): each consecutive pair runs left to right within 30 degrees.
LINE_MAX_ANGLE_DEG = 30.0
# gather(center): every other ball within 0.325 of the centre ball.
GATHER_RADIUS = 0.325

_DEFAULT_LINE_ORDER: tuple[str, ...] = COLORS


class GoalSpecError(ValueError):
    """A goal spec (dict or fields) that does not describe a valid goal."""


def ball_xy(obs: np.ndarray, color: str) -> np.ndarray:
    """The (x, y) centre of the ball ``color`` in a 10-d observation."""
    i = COLORS.index(color)
    return np.asarray(obs, dtype=np.float64)[2 * i : 2 * i + 2]


def _angle_deg(v: np.ndarray, u: np.ndarray) -> float:
    nv, nu = float(np.linalg.norm(v)), float(np.linalg.norm(u))
    if nv < 1e-9 or nu < 1e-9:
        return 180.0
    c = float(np.dot(v, u)) / (nv * nu)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _check_color(name: str, value: Any) -> str:
    if value not in COLORS:
        raise GoalSpecError(f"{name} must be one of {', '.join(COLORS)}; got {value!r}")
    return value


def _check_dir(value: Any) -> str:
    if value not in DIRECTIONS:
        raise GoalSpecError(f"dir must be one of {', '.join(DIRECTIONS)}; got {value!r}")
    return value


@dataclass(frozen=True)
class Relation:
    """Put ``src`` to the ``dir`` of ``dst``."""

    src: str
    dst: str
    dir: str
    kind: str = field(default="relation", init=False)

    def __post_init__(self) -> None:
        _check_color("src", self.src)
        _check_color("dst", self.dst)
        _check_dir(self.dir)
        if self.src == self.dst:
            raise GoalSpecError(f"src and dst must differ; both are {self.src!r}")

    def holds(self, obs: np.ndarray, start_obs: np.ndarray | None = None) -> bool:
        d = ball_xy(obs, self.src) - ball_xy(obs, self.dst)
        return bool(
            np.linalg.norm(d) < RELATION_MAX_DIST
            and _angle_deg(d, DIRECTION_VECTORS[self.dir]) <= RELATION_MAX_ANGLE_DEG
        )

    def target_distance(self, obs: np.ndarray) -> float:
        """Distance from src to its dense-reward target dst + 0.195 * dir."""
        target = ball_xy(obs, self.dst) + RELATION_TARGET_OFFSET * DIRECTION_VECTORS[self.dir]
        return float(np.linalg.norm(ball_xy(obs, self.src) - target))

    def dense_reward(self, prev_obs: np.ndarray, obs: np.ndarray, start_obs: np.ndarray) -> float:
        r = DENSE_PROGRESS_SCALE * (self.target_distance(prev_obs) - self.target_distance(obs))
        return r + (SUCCESS_BONUS if self.holds(obs) else 0.0)

    def to_dict(self) -> dict:
        return {"kind": "relation", "src": self.src, "dst": self.dst, "dir": self.dir}


@dataclass(frozen=True)
class Move:
    """Push ``ball`` one step toward ``dir`` (judged after exactly one step)."""

    ball: str
    dir: str
    kind: str = field(default="move", init=False)

    def __post_init__(self) -> None:
        _check_color("ball", self.ball)
        _check_dir(self.dir)

    def holds(self, obs: np.ndarray, start_obs: np.ndarray | None = None) -> bool:
        if start_obs is None:
            raise GoalSpecError("a move goal is judged against the state before the push")
        disp = ball_xy(obs, self.ball) - ball_xy(start_obs, self.ball)
        along = float(np.dot(disp, DIRECTION_VECTORS[self.dir]))
        return bool(
            along >= MOVE_MIN_DISPLACEMENT
            and _angle_deg(disp, DIRECTION_VECTORS[self.dir]) <= MOVE_MAX_ANGLE_DEG
        )

    def dense_reward(self, prev_obs: np.ndarray, obs: np.ndarray, start_obs: np.ndarray) -> float:
        return SUCCESS_BONUS if self.holds(obs, start_obs) else 0.0

    def to_dict(self) -> dict:
        return {"kind": "move", "ball": self.ball, "dir": self.dir}


@dataclass(frozen=True)
class Line:
    """Arrange the balls in a left-to-right line in the given order."""

    order: tuple[str, ...] = _DEFAULT_LINE_ORDER
    kind: str = field(default="line", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", tuple(self.order))
        if len(self.order) < 2:
            raise GoalSpecError("a line needs at least two balls in its order")
        for c in self.order:
            _check_color("order", c)
        if len(set(self.order)) != len(self.order):
            raise GoalSpecError(f"line order repeats a ball: {list(self.order)}")

    def pair_angles(self, obs: np.ndarray) -> list[float]:
        x = np.array([1.0, 0.0])
        return [
            _angle_deg(ball_xy(obs, b) - ball_xy(obs, a), x)
            for a, b in zip(self.order[:-1], self.order[1:])
        ]

    def holds(self, obs: np.ndarray, start_obs: np.ndarray | None = None) -> bool:
        return all(a <= LINE_MAX_ANGLE_DEG for a in self.pair_angles(obs))

    def potential(self, obs: np.ndarray) -> float:
        """Shaping potential: total angle (radians) by which pairs miss the 30-degree cone."""
        return sum(max(0.0, a - LINE_MAX_ANGLE_DEG) for a in self.pair_angles(obs)) * math.pi / 180

    def dense_reward(self, prev_obs: np.ndarray, obs: np.ndarray, start_obs: np.ndarray) -> float:
        r = DENSE_PROGRESS_SCALE * (self.potential(prev_obs) - self.potential(obs))
        return r + (SUCCESS_BONUS if self.holds(obs) else 0.0)

    def to_dict(self) -> dict:
        return {"kind": "line", "order": list(self.order)}


@dataclass(frozen=True)
class Gather:
    """Bring every other ball within 0.325 of the ``center`` ball."""

    center: str = "green"
    kind: str = field(default="gather", init=False)

    def __post_init__(self) -> None:
        _check_color("center", self.center)

    def distances(self, obs: np.ndarray) -> list[float]:
        c = ball_xy(obs, self.center)
        return [float(np.linalg.norm(ball_xy(obs, b) - c)) for b in COLORS if b != self.center]

    def holds(self, obs: np.ndarray, start_obs: np.ndarray | None = None) -> bool:
        return all(d <= GATHER_RADIUS for d in self.distances(obs))

    def potential(self, obs: np.ndarray) -> float:
        """Shaping potential: total distance by which balls lie outside the gather radius."""
        return sum(max(0.0, d - GATHER_RADIUS) for d in self.distances(obs))

    def dense_reward(self, prev_obs: np.ndarray, obs: np.ndarray, start_obs: np.ndarray) -> float:
        r = DENSE_PROGRESS_SCALE * (self.potential(prev_obs) - self.potential(obs))
        return r + (SUCCESS_BONUS if self.holds(obs) else 0.0)

    def to_dict(self) -> dict:
        return {"kind": "gather", "center": self.center}


@dataclass(frozen=True)
class All:
    """A conjunction of 2 or 3 relation goals."""

    goals: tuple[Relation, ...]
    kind: str = field(default="all", init=False)

    def __post_init__(self) -> None:
        goals = tuple(self.goals)
        object.__setattr__(self, "goals", goals)
        if not 2 <= len(goals) <= 3:
            raise GoalSpecError(f"an 'all' goal joins 2 or 3 relations; got {len(goals)}")
        for g in goals:
            if not isinstance(g, Relation):
                raise GoalSpecError("an 'all' goal joins relation goals only")
        if len(set(goals)) != len(goals):
            raise GoalSpecError("an 'all' goal repeats a relation")

    def holds(self, obs: np.ndarray, start_obs: np.ndarray | None = None) -> bool:
        return all(g.holds(obs) for g in self.goals)

    def dense_reward(self, prev_obs: np.ndarray, obs: np.ndarray, start_obs: np.ndarray) -> float:
        before = [g.holds(prev_obs) for g in self.goals]
        after = [g.holds(obs) for g in self.goals]
        newly = sum(1 for b, a in zip(before, after) if a and not b)
        return SUBGOAL_BONUS * newly + (SUCCESS_BONUS if all(after) else 0.0)

    def to_dict(self) -> dict:
        return {"kind": "all", "goals": [g.to_dict() for g in self.goals]}


Goal = Union[Relation, Move, Line, Gather, All]


# What meeting the goal is worth in ``goal_progress``: more than any distance on the workbench.
PROGRESS_MET_BONUS = 100.0


def goal_progress(goal: Goal, obs: np.ndarray, start_obs: np.ndarray | None = None) -> float:
    """How close ``obs`` is to meeting ``goal``, higher is closer: minus what the dense reward's
    shaping still has to close (a relation's distance from ``src`` to its target point, a line's
    or a gathering's potential; for an ``all`` goal, the sum over its relations not yet met; for
    a move, the ball's displacement along the direction), plus ``PROGRESS_MET_BONUS`` once the
    goal holds. From the state alone (an imagined state too); ``start_obs`` for move goals."""
    obs = np.asarray(obs, dtype=np.float64)
    if not np.all(np.isfinite(obs)):
        return -np.inf
    if isinstance(goal, Relation):
        value = -goal.target_distance(obs)
    elif isinstance(goal, All):
        value = -sum(0.0 if g.holds(obs) else g.target_distance(obs) for g in goal.goals)
    elif isinstance(goal, (Line, Gather)):
        value = -goal.potential(obs)
    elif isinstance(goal, Move):
        if start_obs is None:
            raise GoalSpecError("a move goal is judged against the state before the push")
        disp = ball_xy(obs, goal.ball) - ball_xy(np.asarray(start_obs, dtype=np.float64), goal.ball)
        value = float(np.dot(disp, DIRECTION_VECTORS[goal.dir]))
    else:
        raise GoalSpecError(f"no progress measure for a goal of kind {getattr(goal, 'kind', goal)!r}")
    return float(value) + (PROGRESS_MET_BONUS if goal.holds(obs, start_obs) else 0.0)


def sparse_reward(goal: Goal, obs: np.ndarray, start_obs: np.ndarray) -> float:
    """1 on success, else 0 (the sparse alternative for every kind)."""
    return 1.0 if goal.holds(obs, start_obs) else 0.0


def goal_reward(
    goal: Goal, prev_obs: np.ndarray, obs: np.ndarray, start_obs: np.ndarray, mode: str = "dense"
) -> float:
    """The reward of the transition prev_obs -> obs under ``goal`` (``mode``: dense or sparse)."""
    if mode == "sparse":
        return sparse_reward(goal, obs, start_obs)
    if mode != "dense":
        raise ValueError(f"reward mode must be 'dense' or 'sparse'; got {mode!r}")
    return float(goal.dense_reward(prev_obs, obs, start_obs))


__all__ += ["sparse_reward", "goal_reward", "goal_progress", "PROGRESS_MET_BONUS"]


def goal_horizon(goal: Goal) -> int:
    """Step limit of an episode for this goal: one push for `move`, else 50."""
    return MOVE_EPISODE_STEPS if isinstance(goal, Move) else MAX_EPISODE_STEPS


def _require(d: Mapping, key: str, kind: str) -> Any:
    if key not in d:
        raise GoalSpecError(f"a {kind!r} goal needs the key {key!r}")
    return d[key]


def goal_from_dict(d: Mapping[str, Any]) -> Goal:
    """Build a goal from its JSON form; raises GoalSpecError that says what is wrong."""
    if not isinstance(d, Mapping):
        raise GoalSpecError(f"a goal must be a JSON object; got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in GOAL_KINDS:
        raise GoalSpecError(f"goal kind must be one of {', '.join(GOAL_KINDS)}; got {kind!r}")
    allowed = {
        "relation": {"kind", "src", "dst", "dir"},
        "move": {"kind", "ball", "dir"},
        "line": {"kind", "order"},
        "gather": {"kind", "center"},
        "all": {"kind", "goals"},
    }[kind]
    extra = set(d) - allowed
    if extra:
        raise GoalSpecError(f"unknown key(s) for a {kind!r} goal: {', '.join(sorted(extra))}")
    if kind == "relation":
        return Relation(_require(d, "src", kind), _require(d, "dst", kind), _require(d, "dir", kind))
    if kind == "move":
        return Move(_require(d, "ball", kind), _require(d, "dir", kind))
    if kind == "line":
        order = d.get("order", list(_DEFAULT_LINE_ORDER))
        if not isinstance(order, Sequence) or isinstance(order, str):
            raise GoalSpecError("a line's 'order' must be a list of colours")
        return Line(tuple(order))
    if kind == "gather":
        return Gather(d.get("center", "green"))
    subs = _require(d, "goals", kind)
    if not isinstance(subs, Sequence) or isinstance(subs, str):
        raise GoalSpecError("an 'all' goal's 'goals' must be a list of relation goals")
    parsed = [goal_from_dict(s) for s in subs]
    return All(tuple(parsed))  # type: ignore[arg-type]


def describes(goal: Goal, start_obs: np.ndarray, final_obs: np.ndarray) -> bool:
    """Whether ``goal`` is a true account of a rollout from ``start_obs`` to ``final_obs``: it did
    not hold at the start and holds at the end (what an explanation of the rollout must satisfy)."""
    return goal.holds(final_obs, start_obs) and not goal.holds(start_obs, start_obs)


def achieved_relations(start_obs: np.ndarray, final_obs: np.ndarray) -> list[Relation]:
    """Every relation that a rollout from ``start_obs`` to ``final_obs`` made true, one per
    equivalence class ("red left of blue" stands for "blue right of red" too: only ``left`` and
    ``front`` are listed). A relation rollout usually makes more than one true (the source ends
    beside two balls), and then its goal cannot be read off the states with certainty."""
    out = []
    for i, src in enumerate(COLORS):
        for dst in COLORS[i + 1:]:
            for a, b in ((src, dst), (dst, src)):
                for d in ("left", "front"):
                    r = Relation(a, b, d)
                    if describes(r, start_obs, final_obs):
                        out.append(r)
    return out


__all__ += ["describes", "achieved_relations"]
