"""The 91-d Meta-World state the LM reads and writes, kept in this one place.

Layout (the paper's): gripper 4 (hand x, y, z, finger opening) + target 3 (the task's goal
position) + 12 entity slots x 7 (position x, y, z and orientation quaternion w-or-x..., as the
simulator reports it). Each entity has a fixed slot for every task, so an object keeps its place
across tasks: the puck is always slot 0, the mug always slot 6. Entities a task's scene lacks are
all zeros (a zero quaternion is no rotation at all, so an absent entity is never mistaken for a
present one).

Why not Meta-World's raw 39-d observation: it puts *whatever the task's main object is* in its
first object slot (the puck in push, the door handle in door-open, the lock in door-unlock) and
repeats the previous frame (18 numbers the LM would have to copy). With fixed slots, a
``coffee-push`` state and a ``coffee-button`` state describe the same scene the same way, which is
what lets a model compose them into ``make-coffee``; and the previous frame is dropped, since a
rollout already is the sequence of frames.

What each slot holds is what the task's own observation (and so its success rule) uses: the
puck's body centre, the button's reference point, the lock's start site, the handles' sites. A
scene with more entities than its raw observation shows (the coffee scene: mug, button and
machine) fills them all, measured the same way as in the task that observes them.
"""

from __future__ import annotations

import numpy as np

from kalm.envs.base import StateLayout

__all__ = [
    "ENTITIES",
    "GRIPPER",
    "LAYOUT",
    "STATE_DIM",
    "TARGET",
    "entity",
    "entity_slice",
    "hand",
    "present",
    "target",
]

ENTITIES = (
    "puck",            # reach / push / pick-place (and their wall variants): the block
    "button",          # button-press (-wall): the button on its box
    "lock",            # door-lock / door-unlock / locked-door-open: the lock's start site
    "door handle",     # door-open / door-close / locked-door-open
    "window handle",   # window-open / window-close
    "faucet handle",   # faucet-open / faucet-close
    "mug",             # coffee scene
    "coffee button",   # coffee scene
    "coffee machine",  # coffee scene (its body: where the mug must go follows from it)
    "hammer",          # hammer
    "nail",            # hammer
    "soccer ball",     # soccer
)
GRIPPER = slice(0, 4)
TARGET = slice(4, 7)
_E0 = 7
STATE_DIM = _E0 + 7 * len(ENTITIES)  # 91

_AXES = ("x", "y", "z", "q1", "q2", "q3", "q4")
LAYOUT = StateLayout(
    names=("hand x", "hand y", "hand z", "gripper", "target x", "target y", "target z")
    + tuple(f"{e} {a}" for e in ENTITIES for a in _AXES),
    groups=(("gripper", 0, 4), ("target", 4, 7))
    + tuple((e, _E0 + 7 * i, _E0 + 7 * i + 7) for i, e in enumerate(ENTITIES)),
)
assert LAYOUT.dim == STATE_DIM == 91


def entity_slice(name: str) -> slice:
    """The 7 dimensions of entity ``name`` (position 3 + quaternion 4)."""
    i = ENTITIES.index(name)
    return slice(_E0 + 7 * i, _E0 + 7 * i + 7)


def entity(s: np.ndarray, name: str) -> np.ndarray:
    """The position (x, y, z) of entity ``name`` in state(s) ``s`` (..., 91)."""
    a = entity_slice(name).start
    return np.asarray(s)[..., a: a + 3]


def present(s: np.ndarray, name: str) -> bool:
    """Whether entity ``name`` is in the scene of state ``s`` (its slot is not all zeros)."""
    return bool(np.any(np.asarray(s)[entity_slice(name)] != 0))


def hand(s: np.ndarray) -> np.ndarray:
    return np.asarray(s)[..., 0:3]


def target(s: np.ndarray) -> np.ndarray:
    return np.asarray(s)[..., 4:7]
