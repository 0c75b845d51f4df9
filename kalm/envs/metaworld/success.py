"""Success and reward of every task, judged from a 91-d state vector alone.

These are Meta-World v3's own success rules (``evaluate_state`` of each task, reward version v2)
re-written on the fixed-slot state of ``state.py``, so that imagined states, which no simulator
produced, are judged exactly as real ones. Where a task's rule reads something the state does
not hold directly, the state still determines it:

- hammer: the nail's slide joint past 0.09 m is the nail's y past the goal site's y - 0.01 (the
  nail starts 0.10 m in front of the goal site);
- the composite make-coffee: the mug within coffee-push's radius of its spot under the machine
  (machine - 0.22 m in y) while the button is pressed (coffee-button's rule on the button site,
  whose pressed position is machine y - 0.19);
- the composite locked-door-open: the lock turned open and the door swung open, the door's swing
  read from the handle's orientation, the lock's turn from where its start site sits relative
  to the handle in the door leaf's frame (``composite.py`` gives the geometry and thresholds);
- reach: Meta-World judges the tool centre point, which sits (0, 0.004, -0.045) m from the hand
  position the observation reports (measured over expert episodes, spread 3 mm).

``tests/envs/test_metaworld.py`` checks every rule against the simulator's own success flag on
expert episodes of every task; ``bench/metaworld_bench.py`` prints the agreement rates.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from kalm.envs.metaworld.composite import MUG_SPOT
from kalm.envs.metaworld.state import entity, hand, target
from kalm.envs.metaworld.tasks import ALL_TASKS

__all__ = ["RULES", "task_distance", "task_progress", "task_reward", "task_success"]

_TCP = np.array([0.0, 0.004, -0.045])  # tool centre point - hand position
_MUG_UNDER_MACHINE = MUG_SPOT  # coffee-push's target, relative to the machine
_BUTTON_PRESSED_Y = -0.22 + 0.03  # the coffee button's site, pressed, relative to the machine


def _norm(v) -> float:
    return float(np.linalg.norm(v))


def _dist_factory(ent: str | None, radius: float, axes=None, scale=None, offset=None):
    """A (distance, radius) rule: the distance of ``ent`` (the hand if None) to the target."""

    def dist(s: np.ndarray) -> float:
        p = hand(s) if ent is None else entity(s, ent)
        if offset is not None:
            p = p + offset
        d = p - target(s)
        if scale is not None:
            d = d * scale
        if axes is not None:
            d = d[list(axes)]
        return _norm(d)

    return dist, radius


def _hammer(s: np.ndarray) -> float:
    # NailSlideJoint qpos = nail y - (goal y - 0.10); success at qpos > 0.09
    return max(0.0, 0.09 - (entity(s, "nail")[1] - (target(s)[1] - 0.10)))


def _make_coffee(s: np.ndarray) -> float:
    machine = entity(s, "coffee machine")
    mug = _norm(entity(s, "mug") - (machine + _MUG_UNDER_MACHINE))
    button = abs(entity(s, "coffee button")[1] - (machine[1] + _BUTTON_PRESSED_Y))
    # both must hold: the larger of the two, each scaled to its own radius
    return max(mug / 0.07, button / 0.02)


def _locked_door_open(s: np.ndarray) -> float:
    from kalm.envs.metaworld.composite import DOOR_OPEN_RAD, LOCK_OPEN_RAD, door_angle, lock_angle

    lock = lock_angle(s) / LOCK_OPEN_RAD
    door = max(0.0, DOOR_OPEN_RAD - door_angle(s)) / DOOR_OPEN_RAD + 1.0
    return max(lock, door)


# task -> (distance from the state, success radius): success is distance <= radius
RULES: dict[str, tuple[Callable[[np.ndarray], float], float]] = {
    "reach": _dist_factory(None, 0.05, offset=_TCP),
    "reach-wall": _dist_factory(None, 0.05, offset=_TCP),
    "push": _dist_factory("puck", 0.05),
    "push-wall": _dist_factory("puck", 0.07),
    "pick-place": _dist_factory("puck", 0.07),
    "pick-place-wall": _dist_factory("puck", 0.07),
    "button-press": _dist_factory("button", 0.02, axes=(1,)),
    "button-press-wall": _dist_factory("button", 0.03, axes=(1,)),
    "door-unlock": _dist_factory("lock", 0.02, axes=(0,)),
    "door-lock": _dist_factory("lock", 0.02, axes=(2,)),
    "door-open": _dist_factory("door handle", 0.08, axes=(0,)),
    "door-close": _dist_factory("door handle", 0.08),
    "window-open": _dist_factory("window handle", 0.05, axes=(0,)),
    "window-close": _dist_factory("window handle", 0.05, axes=(0,)),
    "faucet-open": _dist_factory("faucet handle", 0.07, offset=np.array([-0.04, 0.0, 0.03])),
    "faucet-close": _dist_factory("faucet handle", 0.07),
    "coffee-push": _dist_factory("mug", 0.07),
    "coffee-button": _dist_factory("coffee button", 0.02, axes=(1,)),
    "soccer": _dist_factory("soccer ball", 0.07),
    "hammer": (_hammer, 1e-12),
    "make-coffee": (_make_coffee, 1.0),
    "locked-door-open": (_locked_door_open, 1.0),
}
assert set(RULES) == set(ALL_TASKS)
_RULE_ENTITY = {
    "push": "puck", "push-wall": "puck", "pick-place": "puck", "pick-place-wall": "puck",
    "button-press": "button", "button-press-wall": "button", "door-unlock": "lock",
    "door-lock": "lock", "door-open": "door handle", "door-close": "door handle",
    "window-open": "window handle", "window-close": "window handle",
    "faucet-open": "faucet handle", "faucet-close": "faucet handle", "coffee-push": "mug",
    "coffee-button": "coffee button", "soccer": "soccer ball",
}


def task_distance(task: str, s: np.ndarray) -> float:
    """How far state ``s`` is from ``task``'s success, in the rule's own units (0 at success for
    the composite and hammer rules, the radius or less for the others)."""
    try:
        dist, _ = RULES[task]
    except KeyError:
        raise ValueError(f"unknown Meta-World task {task!r}") from None
    return dist(np.asarray(s, dtype=np.float64))


def _stages(task: str, s: np.ndarray) -> list[float]:
    """The distances of each stage a task's rule joins, in radii (one entry for a plain task)."""
    if task == "make-coffee":
        machine = entity(s, "coffee machine")
        return [_norm(entity(s, "mug") - (machine + _MUG_UNDER_MACHINE)) / 0.07,
                abs(entity(s, "coffee button")[1] - (machine[1] + _BUTTON_PRESSED_Y)) / 0.02]
    if task == "locked-door-open":
        from kalm.envs.metaworld.composite import DOOR_OPEN_RAD, LOCK_OPEN_RAD, door_angle, lock_angle

        return [lock_angle(s) / LOCK_OPEN_RAD,
                max(0.0, DOOR_OPEN_RAD - door_angle(s)) / DOOR_OPEN_RAD]
    dist, radius = RULES[task]
    return [dist(s) / (radius if radius > 1e-9 else 0.01)]


# The object the hand has to reach for each stage of a task (Meta-World's own rewards join a
# "reach the object" term to the "object to its target" one); None: the hand itself is what the
# rule moves (reach).
_STAGE_OBJECTS = {
    "make-coffee": ("mug", "coffee button"),
    "locked-door-open": ("lock", "door handle"),
    "hammer": ("hammer",),
}
REACH_UNIT = 0.05  # metres of hand-to-object distance worth one radius of the rule


def _stage_objects(task: str) -> tuple:
    if task in _STAGE_OBJECTS:
        return _STAGE_OBJECTS[task]
    return (None if task.startswith("reach") else _RULE_ENTITY[task],)


def task_progress(task: str, s: np.ndarray) -> float:
    """How close state ``s`` is to ``task``'s success, higher closer, from the state alone, the
    shape of Meta-World's own rewards: minus the distance the rule still has to close, in radii
    (the composite tasks: the sum over both stages), minus the hand's distance to the object of
    the first unfinished stage in units of ``REACH_UNIT``, plus 100 once the rule holds. For
    goal-guided decoding (``kalm.llm.generate``), which compares it between the next states the
    LM predicts for candidate actions."""
    s = np.asarray(s, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        return float("-inf")
    if task_success(task, s):
        return 100.0
    stages = _stages(task, s)
    objects = _stage_objects(task)
    k = next((i for i, d in enumerate(stages) if d > 1.0), len(stages) - 1) if len(stages) > 1 else 0
    obj = objects[min(k, len(objects) - 1)]
    reach = 0.0 if obj is None else _norm(hand(s) + _TCP - entity(s, obj)) / REACH_UNIT
    return -float(sum(stages)) - reach


def task_success(task: str, s: np.ndarray) -> bool:
    """Whether ``task`` is solved in state ``s`` (91-d)."""
    dist, radius = RULES[task]
    return dist(np.asarray(s, dtype=np.float64)) <= radius


def task_reward(task: str, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dense, sparse) reward of each transition of ``states`` (T+1, 91).

    dense: the decrease of the task's distance to success, normalised by its radius (so one
    radius of progress is worth 1), plus 10 on the step that reaches success, as the paper
    labels imagined rollouts; sparse: 1 on a transition into a success state.
    """
    o = np.asarray(states, dtype=np.float64)
    dist, radius = RULES[task]
    unit = radius if radius > 1e-9 else 0.01
    d = np.array([dist(s) for s in o])
    ok = d <= radius
    sparse = ok[1:].astype(np.float32)
    dense = ((d[:-1] - d[1:]) / unit + 10.0 * sparse).astype(np.float32)
    return dense, sparse
