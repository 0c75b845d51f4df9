"""CLEVR-Robot's colour symmetry: relabelling the five balls' colours maps an episode to another.

The physics does not know a ball's colour: swap the red and the blue ball's positions, the pushes
of each and the two words in the instruction, and the episode is as valid as the one it came
from, with the same rewards (they read only the geometry). ``recolour`` applies one such
relabelling to an episode, text included, for data augmentation of offline RL
(``kalm.rl``: ``--augment K``). It reads nothing but the episode: no simulator, no expert.

A text is relabelled word by word (whole colour words, case kept), so it is done only where the
text names every colour its goal names (a goal whose text leaves a colour implicit, e.g. a line
in the default order, is not relabelled: ``None``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["COLORS", "recolour", "recolour_goal", "recolour_text", "goal_colours", "colour_mentions"]

COLORS = ("red", "blue", "green", "purple", "cyan")
_WORD = re.compile(r"\b(" + "|".join(COLORS) + r")\b", re.IGNORECASE)


def colour_mentions(text: str) -> list[int]:
    """The ball index (``COLORS`` order) of every colour word of ``text``, in reading order."""
    return [COLORS.index(m.group(0).lower()) for m in _WORD.finditer(text)]


def recolour_text(text: str, perm: np.ndarray) -> str:
    """Every colour word ``c`` of ``text`` replaced by ``COLORS[perm[index(c)]]``, all at once."""

    def sub(m: re.Match) -> str:
        word = m.group(0)
        new = COLORS[int(perm[COLORS.index(word.lower())])]
        if word.isupper():
            return new.upper()
        return new.capitalize() if word[0].isupper() else new

    return _WORD.sub(sub, text)


def recolour_goal(goal: Any, perm: np.ndarray) -> Any:
    """A goal spec dict (or any JSON value) with every colour string relabelled by ``perm``."""
    if isinstance(goal, dict):
        return {k: recolour_goal(v, perm) for k, v in goal.items()}
    if isinstance(goal, list):
        return [recolour_goal(v, perm) for v in goal]
    if isinstance(goal, str) and goal in COLORS:
        return COLORS[int(perm[COLORS.index(goal)])]
    return goal


def goal_colours(goal: Any) -> set[str]:
    """The colour strings a goal spec dict names."""
    if isinstance(goal, dict):
        return set().union(*(goal_colours(v) for v in goal.values())) if goal else set()
    if isinstance(goal, list):
        return set().union(*(goal_colours(v) for v in goal)) if goal else set()
    return {goal} if isinstance(goal, str) and goal in COLORS else set()


def recolour(text: str, goal: dict, observations: np.ndarray, actions: np.ndarray,
             perm: np.ndarray) -> tuple[str, dict, np.ndarray, np.ndarray] | None:
    """The episode with ball ``i`` relabelled as ball ``perm[i]``: the ball formerly called
    ``COLORS[i]`` is called ``COLORS[perm[i]]`` in the text and the goal, its (x, y) moves to that
    colour's slot of every state, and its pushes (``ball * 8 + direction``) follow it.

    None where the text does not name every colour of the goal (see the module doc) or where a
    goal string is not a colour the text could carry (defaults left implicit)."""
    perm = np.asarray(perm, dtype=np.int64)
    if sorted(perm.tolist()) != list(range(len(COLORS))):
        raise ValueError(f"perm must be a permutation of 0..{len(COLORS) - 1}; got {perm.tolist()}")
    named = {m.group(0).lower() for m in _WORD.finditer(text)}
    if not goal_colours(goal) <= named or _implicit_colours(goal):
        return None
    obs = np.asarray(observations)
    n = len(COLORS)
    if obs.ndim != 2 or obs.shape[1] < 2 * n:
        raise ValueError(f"observations must be (T + 1, >= {2 * n}); got {obs.shape}")
    new_obs = obs.copy()
    balls = obs[:, : 2 * n].reshape(len(obs), n, 2)
    moved = np.empty_like(balls)
    moved[:, perm] = balls
    new_obs[:, : 2 * n] = moved.reshape(len(obs), 2 * n)
    acts = np.asarray(actions)
    new_actions = perm[acts // 8] * 8 + acts % 8 if acts.size else acts.copy()
    return (recolour_text(text, perm), recolour_goal(goal, perm), new_obs,
            new_actions.astype(acts.dtype))


def _implicit_colours(goal: Any) -> bool:
    """A line without its order or a gather without its centre (the defaults are colours the
    text need not name)."""
    if isinstance(goal, dict):
        kind = goal.get("kind")
        if kind == "line" and not goal.get("order"):
            return True
        if kind == "gather" and not goal.get("center"):
            return True
        return any(_implicit_colours(v) for v in goal.values())
    if isinstance(goal, list):
        return any(_implicit_colours(v) for v in goal)
    return False
