"""Goal suites (KALM's evaluation categories) and goals files (JSON Lines).

A *goal item* is an instruction text, the goal it means, and a category. The four built-in suites
follow KALM's protocol:

============  =================================================================================
``train``     the 80 relation configurations, phrased with the training templates
``rephrase``  the same 80 configurations, phrased with expressions never used in training
``easy``      ``move`` goals: 5 balls x 4 directions, several phrasings each (one-step episodes)
``hard``      ``all`` of 2 or 3 relations (non-contradictory, satisfiable), ``line``, ``gather``
============  =================================================================================

``suite_items(name, seed)`` is deterministic for a given seed; the seed only changes which
phrasings (and, for ``hard``, which conjunctions and line orders) are drawn.

A goals file holds one JSON object per line::

    {"text": "Put the red ball to the left of the blue ball",
     "goal": {"kind": "relation", "src": "red", "dst": "blue", "dir": "left"},
     "category": "rephrase"}

``category`` is optional (default ``custom``); blank lines are skipped. When ``goal`` is left out,
the text is read with the rule-based parser, and a text it cannot read is an error.
``read_goals_file`` checks the whole file first and reports every bad line (file, line number,
what is wrong) in one ``GoalsFileError``, so nothing runs on a half-valid file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from kalm.envs.base import GoalsFileError, read_goal_items, write_goal_items

from kalm.envs.clevr.goals.language import ALL_PATTERNS, GATHER_TEMPLATES, LINE_TEMPLATES, all_phrasings
from kalm.envs.clevr.goals.parser import parse_goal_text
from kalm.envs.clevr.goals.spec import (
    COLORS,
    DIRECTION_VECTORS,
    DIRECTIONS,
    RELATION_MAX_ANGLE_DEG,
    RELATION_MAX_DIST,
    All,
    Gather,
    Goal,
    GoalSpecError,
    Line,
    Move,
    Relation,
    goal_from_dict,
)

__all__ = [
    "SUITES",
    "DEFAULT_CATEGORY",
    "PHRASINGS_PER_RELATION",
    "PHRASINGS_PER_MOVE",
    "GoalItem",
    "GoalsFileError",
    "relation_configs",
    "suite_items",
    "find_witness",
    "read_goals_file",
    "write_goals_file",
]

SUITES: tuple[str, ...] = ("train", "rephrase", "easy", "hard")
DEFAULT_CATEGORY = "custom"
_ITEM_KEYS = ("text", "goal", "category")

# Phrasings drawn per goal: 80 configurations x 5 = 400 train / rephrase items.
PHRASINGS_PER_RELATION = 5
# 20 move goals x 5 = 100 easy items.
PHRASINGS_PER_MOVE = 5
# Hard suite: each `all` pattern is used this many times per size (2 and 3 relations), each line
# phrasing once with the default order and once with a drawn order, each gather phrasing once.
ALL_GOALS_PER_PATTERN = 1

# Workbench for the satisfiability witness of `all` goals (ball centres stay inside it).
WORKBENCH_X = (-0.6, 0.6)
WORKBENCH_Y = (-0.3, 0.7)
# Two balls of radius 0.13 cannot be closer than 0.26 centre to centre (a little margin added).
MIN_CENTRE_GAP = 0.27
# Witness offsets stay inside the success cone and distance with a margin.
_WITNESS_MAX_ANGLE_DEG = RELATION_MAX_ANGLE_DEG - 5.0
_WITNESS_MAX_DIST = RELATION_MAX_DIST - 0.02
_WITNESS_TRIES = 400
_MAX_ALL_DRAWS = 1000




@dataclass(frozen=True)
class GoalItem:
    """An instruction text, the goal it means, and its category (a suite name or "custom")."""

    text: str
    """The instruction, as a person (or the LM) would write it."""
    goal: Goal
    """The goal the text means (judged by the environment)."""
    category: str = DEFAULT_CATEGORY
    """Evaluation category: train, rephrase, easy, hard, or custom."""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("a goal item needs a non-empty 'text'")
        if not isinstance(self.category, str) or not self.category.strip():
            raise ValueError("a goal item's 'category' must be a non-empty string")
        if not isinstance(self.goal, (Relation, Move, Line, Gather, All)):
            raise TypeError(f"a goal item's 'goal' must be a goal object; got {self.goal!r}")

    def to_dict(self) -> dict[str, Any]:
        """``{"text": ..., "goal": {...}, "category": ...}``."""
        return {"text": self.text, "goal": self.goal.to_dict(), "category": self.category}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GoalItem":
        """Build an item from its JSON form; raises ValueError (GoalSpecError for the goal).

        A missing ``goal`` is read from the text with the rule-based parser.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"a goal item must be a JSON object; got {type(d).__name__}")
        extra = sorted(set(d) - set(_ITEM_KEYS))
        if extra:
            raise ValueError(
                f"unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(_ITEM_KEYS)}"
            )
        if "text" not in d:
            raise ValueError("missing 'text'")
        text = d["text"]
        if not isinstance(text, str):
            raise ValueError(f"'text' must be a string; got {type(text).__name__}")
        if not text.strip():
            raise ValueError("'text' is empty")
        category = d.get("category", DEFAULT_CATEGORY)
        if not isinstance(category, str) or not category.strip():
            raise ValueError(f"'category' must be a non-empty string; got {category!r}")
        if "goal" in d:
            try:
                goal = goal_from_dict(d["goal"])
            except GoalSpecError as e:
                raise GoalSpecError(f"bad goal: {e}") from e
        else:
            parsed = parse_goal_text(text)
            if parsed is None:
                raise ValueError(
                    f"no 'goal' given and the text {text!r} could not be understood; "
                    'add a "goal" object, e.g. {"kind": "relation", "src": "red", '
                    '"dst": "blue", "dir": "left"}'
                )
            goal = parsed
        return cls(text=text, goal=goal, category=category)


# --------------------------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------------------------


def relation_configs() -> list[Relation]:
    """The 80 relation configurations (ordered pairs of distinct balls x 4 directions)."""
    return [Relation(s, d, r) for s in COLORS for d in COLORS if s != d for r in DIRECTIONS]


def _spread_phrasings(
    goals: list[Goal], per_goal: int, style: str, rng: np.random.Generator, category: str
) -> list[GoalItem]:
    """``per_goal`` distinct phrasings per goal, drawn so that all patterns get used evenly."""
    items: list[GoalItem] = []
    for g in goals:
        texts = all_phrasings(g, style)
        picks = rng.choice(len(texts), size=min(per_goal, len(texts)), replace=False)
        items += [GoalItem(texts[int(i)], g, category) for i in sorted(picks)]
    return items


def _relation_items(style: str, rng: np.random.Generator) -> list[GoalItem]:
    return _spread_phrasings(relation_configs(), PHRASINGS_PER_RELATION, style, rng, style)


def _easy_items(rng: np.random.Generator) -> list[GoalItem]:
    goals: list[Goal] = [Move(b, d) for b in COLORS for d in DIRECTIONS]
    return _spread_phrasings(goals, PHRASINGS_PER_MOVE, "train", rng, "easy")


def _draw_all_goal(n: int, rng: np.random.Generator) -> All:
    """A conjunction of ``n`` relations that is non-contradictory and satisfiable.

    No two relations share a pair of balls (that would repeat, contradict or squeeze one goal into
    the edge of two cones), the relations form a forest (no cycle of constraints), and a witness
    placement inside the workbench is found.
    """
    for _ in range(_MAX_ALL_DRAWS):
        rels: list[Relation] = []
        parent = {c: c for c in COLORS}

        def root(c: str) -> str:
            while parent[c] != c:
                c = parent[c]
            return c

        while len(rels) < n:
            src, dst = (str(c) for c in rng.choice(COLORS, size=2, replace=False))
            direction = str(rng.choice(DIRECTIONS))
            if root(src) == root(dst):  # same pair again, or a cycle
                continue
            parent[root(src)] = root(dst)
            rels.append(Relation(src, dst, direction))
        goal = All(tuple(rels))
        if find_witness(goal) is not None:
            return goal
    raise RuntimeError(f"could not draw a satisfiable conjunction of {n} relations")


def find_witness(goal: All, seed: int = 0) -> np.ndarray | None:
    """A 10-d observation inside the workbench where every relation of ``goal`` holds, or None.

    Places the balls of each connected group of relations one edge at a time, with the offset
    drawn inside the success cone, and keeps balls at least ``MIN_CENTRE_GAP`` apart.
    """
    rng = np.random.default_rng(seed)
    involved = sorted({c for g in goal.goals for c in (g.src, g.dst)}, key=COLORS.index)
    for _ in range(_WITNESS_TRIES):
        pos: dict[str, np.ndarray] = {}
        for start in involved:
            if start in pos:
                continue
            pos[start] = np.array([rng.uniform(*WORKBENCH_X), rng.uniform(*WORKBENCH_Y)])
            frontier = [start]
            while frontier:
                here = frontier.pop()
                for g in goal.goals:
                    if here not in (g.src, g.dst):
                        continue
                    other = g.dst if here == g.src else g.src
                    if other in pos:
                        continue
                    base = np.arctan2(*DIRECTION_VECTORS[g.dir][::-1])
                    angle = base + np.radians(rng.uniform(-1, 1) * _WITNESS_MAX_ANGLE_DEG)
                    offset = rng.uniform(MIN_CENTRE_GAP, _WITNESS_MAX_DIST) * np.array(
                        [np.cos(angle), np.sin(angle)]
                    )
                    pos[other] = pos[here] - offset if here == g.src else pos[here] + offset
                    frontier.append(other)
        # Balls outside the goal sit far away in a corner row; only involved balls are checked.
        obs = np.zeros(2 * len(COLORS))
        for i, c in enumerate(COLORS):
            parked = np.array([WORKBENCH_X[0] + 0.3 * i, WORKBENCH_Y[1]])
            obs[2 * i : 2 * i + 2] = pos.get(c, parked)
        points = [pos[c] for c in involved]
        inside = all(
            WORKBENCH_X[0] <= p[0] <= WORKBENCH_X[1] and WORKBENCH_Y[0] <= p[1] <= WORKBENCH_Y[1]
            for p in points
        )
        apart = all(
            np.linalg.norm(points[i] - points[j]) >= MIN_CENTRE_GAP
            for i in range(len(points))
            for j in range(i + 1, len(points))
        )
        if inside and apart and goal.holds(obs):
            return obs
    return None


def _hard_items(rng: np.random.Generator) -> list[GoalItem]:
    items: list[GoalItem] = []
    # `all` goals: every pattern with 2 and with 3 relations, each clause form in turn.
    for n in (2, 3):
        for p_index in range(len(ALL_PATTERNS)):
            for _ in range(ALL_GOALS_PER_PATTERN):
                goal = _draw_all_goal(n, rng)
                texts = all_phrasings(goal)
                per_pattern = len(texts) // len(ALL_PATTERNS)
                k = int(rng.integers(per_pattern))
                items.append(GoalItem(texts[p_index * per_pattern + k], goal, "hard"))
    # `line` goals: each phrasing with the default order and with a drawn order.
    for t_index in range(len(LINE_TEMPLATES)):
        for goal in (Line(), Line(tuple(str(c) for c in rng.permutation(COLORS)))):
            items.append(GoalItem(all_phrasings(goal)[t_index], goal, "hard"))
    # `gather` goals: each phrasing once, the centre ball cycling through the colours.
    for t_index in range(len(GATHER_TEMPLATES)):
        goal = Gather(COLORS[(t_index + int(rng.integers(len(COLORS)))) % len(COLORS)])
        items.append(GoalItem(all_phrasings(goal)[t_index], goal, "hard"))
    return items


def suite_items(name: str, seed: int = 0) -> list[GoalItem]:
    """The goal items of a built-in suite (``train``, ``rephrase``, ``easy``, ``hard``).

    Deterministic for a given ``seed``. Raises ValueError for an unknown suite name.
    """
    if name not in SUITES:
        raise ValueError(f"unknown goal suite {name!r}; valid suites: {', '.join(SUITES)}")
    rng = np.random.default_rng(seed)
    if name in ("train", "rephrase"):
        return _relation_items(name, rng)
    if name == "easy":
        return _easy_items(rng)
    return _hard_items(rng)


# --------------------------------------------------------------------------------------------
# Goals files
# --------------------------------------------------------------------------------------------


def read_goals_file(path: str | Path) -> list[GoalItem]:
    """Read a JSON Lines goals file of CLEVR-Robot goals (``kalm.envs.base.read_goal_items``)."""
    return read_goal_items(path, GoalItem.from_dict, example='{"kind": "relation", ...}')


def write_goals_file(path: str | Path, items: Iterable[GoalItem]) -> Path:
    """Write goal items as JSON Lines (parent folders created); returns the path."""
    return write_goal_items(path, items)
