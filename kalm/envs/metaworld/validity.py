"""Is an imagined Meta-World rollout valid? Checks over 91-d state sequences, and open-loop replay.

A rollout is ``observations`` ``s_0..s_T`` (``(T + 1, 91)``, the layout of ``state.py``; ``s_0``
comes from a real seeded reset, the rest were written by the LM) and ``actions`` ``a_0..a_{T-1}``
(``(T, 4)`` in ``[-1, 1]``). Meta-World's arm is mocap-driven, so the simulator cannot be put into
an imagined state and a single transition cannot be simulated from it (CLEVR's dynamics check,
``kalm/imagine/validity.py``). What can be checked is (1) the imagined states themselves, for what
the paper counts as unrealistic (an object floating in the air without being held, a gripper
move beyond what one action can do), and (2) the replay of the actions open loop from the same
seeded reset, against the imagined states. ``check`` does both and returns a plain dict.

Indexing: a *state* check gives one flag per state ``s_t`` (``t = 0..T``; ``s_0`` is real and
never flagged); a *transition* check one flag per ``s_t -> s_{t+1}`` (``t = 0..T-1``).
Transition ``t`` is **realistic** when there is no gripper jump at ``t``, no floating object in
``s_{t+1}``, neither ``s_t`` nor ``s_{t+1}`` is absurd, and no entity slot of ``s_{t+1}`` has
appeared or vanished. Out of workspace is reported apart (as CLEVR's out-of-workbench).

=====================  ========================================================================
check                  rule (thresholds below, calibration figures after the table)
=====================  ========================================================================
goal met               ``task_success(task, s_t)`` on some generated state ``s_1..s_T``
                       (``success_step``: the first such ``t``)
replay                 ``replay``: the actions run open loop in ``MetaWorldSim`` from
                       ``reset(seed)``; **all** ``T`` actions are played, success or not (so the
                       replayed states line up one to one with the imagined ones);
                       ``replay_success``: the task's rule holds on some replayed ``s_1..s_T``
                       (``replay_success_step``: the first, as CLEVR's replay reports whether
                       the goal holds at some step)
floating (state)       a free object (``FREE_OBJECTS``: the entities on a MuJoCo free joint,
                       puck, mug, hammer, soccer ball) is *unsupported*: above its resting height
                       ``REST_Z`` by more than ``LIFT_MARGIN`` and not held (held: hand within
                       ``HOLD_DIST`` of it with the fingers at most ``HOLD_OPENING`` open); and
                       it is higher than a fall from where it was last supported allows:
                       ``z_t > z_r + FALL_TOL - g/2 * ((t - r - FALL_SLACK)+ * DT)^2`` (``r``:
                       the last supported state, ``DT`` one env step). So an object may fall
                       after release, or finish a hop after a push, but not hang in the air,
                       rise on its own, or drift down slower than gravity for long
gripper jump (trans.)  the hand moves more than ``HAND_STEP_MAX`` in one step, or the finger
                       opening changes by more than ``FINGER_STEP_MAX``
out of workspace       the hand is outside ``HAND_BOX``, the finger opening outside
(state)                ``OPENING_RANGE``, or a present entity outside ``ENTITY_BOX``
absurd (state)         a number is NaN, infinite or larger than ``ABSURD_COORD`` in magnitude
moved absent (state)   an entity slot all zeros in ``s_0`` has a non-zero number, or a slot
                       present in ``s_0`` has become all zeros (``ABSENT_TOL``)
through the wall       (wall tasks, ``WALLS``) the hand's or an object's path between two
(transition)           states passes the wall's thin plane within its width lower than it can:
                       the hand below the wall's top plus ``HAND_WALL_CLEARANCE`` (its fingers
                       hang below its point), an object below the wall's top. Reported apart,
                       as out of workspace: it is not among the paper's unrealistic measures
state errors           per state, the distance between imagined and replayed hand position, and
                       of each entity present in the real ``s_0`` (metres; for display)
=====================  ========================================================================

Thresholds and why (figures from ``bench/metaworld_validity_calibration.py``, output below: the
scripted experts with the data's action noise 0.1, and uniform random actions, 50 episodes of each
per data task and 10 of each per unseen task: 1240 episodes, 104,550 transitions):

- ``HAND_STEP_MAX = 0.06`` m. An action moves the mocap at most 0.01 m per axis (Meta-World's
  ``action_scale``), 0.0173 m in all; the hand follows the mocap through a weld. Measured: random
  actions move the hand at most 0.0162 m a step; the experts at most 0.0396 m (door-open; 0.0357
  door-unlock, 0.0324 soccer: the hand is held back by a handle or the ball while the mocap runs
  on, then snaps to it when it slips; 99.9% of expert steps are under 0.0262). 0.06 is 1.5 times
  the largest; a hand shifted by 0.07 m in a real episode is flagged 98%, by 0.1 m always.
- ``FINGER_STEP_MAX = 0.15``: the finger opening (0 closed .. 1 open, as observed) changes at
  most 0.0759 a step (expert), 0.0458 (random).
- ``FREE_OBJECTS``: the entities a MuJoCo free joint moves, read from every task's model (puck,
  mug, hammer, soccer ball); the others slide, hinge or are fixed, and cannot float.
- ``REST_Z`` (m, the observed point of each free object lying on the table): puck 0.020 (its
  reset height; 0.015 in the wall tasks; resting 0.0137..0.0200), mug 0.001 (its body centre;
  reset -0.001..0.001, tilted down to -0.0096), hammer 0.035 (it resets at z = 0 and settles to
  0.035 within 8 steps, then to 0.028), soccer ball 0.030 (reset; resting 0.026).
  ``LIFT_MARGIN = 0.02``: above ``REST_Z + LIFT_MARGIN`` an object is lifted.
- Holding, from expert episodes while the object is lifted: the hand is 0.039 m (median; at most
  0.045) from the puck with the fingers 0.38-0.48 open (pick-place), at most 0.050 from the
  hammer at 0.47-0.52, at most 0.070 from the mug at 0.50-0.60 (coffee-push); the fingers closed
  on nothing read 0.256, fully open 1.0. ``HOLD_DIST = 0.08`` m, ``HOLD_OPENING = 0.9``: every
  lifted state of pick-place(-wall), push(-wall), coffee-push and hammer is held.
- Falling: ``DT = 0.0125`` s (frame skip 5 x 2.5 ms), ``GRAVITY = 9.81``. The real lifted,
  unheld states (79: the mug make-coffee's expert lets go of when it turns to the button, the
  soccer ball hopping after a push) stand at most 0.0033 m above the fall bound with
  ``FALL_SLACK = 2`` steps (the fingers open over a step or two); ``FALL_TOL = 0.01`` m. An
  object left hanging where it was released is flagged from the 6th step after; one rising from
  the table with the hand away is flagged as soon as it is ``LIFT_MARGIN`` up (a free object put
  0.05 or 0.1 m above that, beside the hand, in a real episode: flagged 100%). Not caught: an
  object hanging for up to 5 steps after release, and one that is never lifted by more than the
  margin.
- ``HAND_BOX`` x [-0.6, 0.6], y [0.3, 1.1], z [0, 0.6]: the mocap limits of every task (x -0.5..
  0.5, y 0.4..1.0, z -0.15..0.5) widened by 0.1; z floors at the table top (the fingertips hang
  4.5 cm under the hand point). Measured hand range: x -0.504..0.457, y 0.348..0.885 (a swinging
  door drags the hand past the mocap's y limit), z 0.046..0.458. ``OPENING_RANGE`` [-0.05, 1.05]
  (the observation clips the opening to [0, 1]; measured 0.256..1.0).
- ``ENTITY_BOX`` x [-0.73, 0.73], y [0.17, 1.03], z [-0.05, 0.55]: the table top (x +-0.7, y 0.2..
  1.0, surface z = 0) widened by 0.03, from 5 cm under the surface to above anything the hand can
  carry. Measured entity range: x -0.290..0.662, y 0.310..0.970, z -0.010..0.301.
- ``ABSURD_COORD = 5`` (no number in a real state exceeds 1.0 in magnitude).
- ``WALLS``: reach-, push- and pick-place-wall share one wall (x -0.02..0.22 at y 0.75, up to
  z 0.12), button-press-wall's stands at y 0.6 (x 0..0.2, up to z 0.15).
  ``HAND_WALL_CLEARANCE = 0.03`` m: driving the hand at the wall (reach-wall and
  button-press-wall, fingers open or closed, its point 0.004..0.083 m over the top in 1 cm
  steps; ``python bench/metaworld_wall_crossing.py --probe``), it is stopped 2.5 cm short of
  the wall up to 0.033..0.035 m over the top and passes from 0.041..0.044 m (the fingertips hang
  about 4 cm under the point). The experts cross 0.12 m or more over the top; 30 expert and 30
  random episodes of each wall task: 0 flagged.
- ``ABSENT_TOL = 1e-6``: a slot whose 7 numbers are all within it is absent.

False positives on the real episodes of the calibration, expert (39,550 states and transitions)
and random (65,000): floating, gripper jump, out of workspace, absurd and moved absent all 0;
every real transition realistic. Replaying an episode's actions from its seed in a fresh
simulator reproduces its states exactly (88 episodes, difference 0.0) and its success.

Calibration output (``python bench/metaworld_validity_calibration.py``, lines wrapped)::

    collected 1240 episodes, 104550 transitions (50 per data task and kind, 10 per unseen task
      and kind; expert noise 0.1) in 234s
    expert success 97.3%, random 0.0%
    == entities and the joints that move them
      puck free, button slide, lock hinge, door handle hinge, window handle slide, faucet handle
      hinge, mug free, coffee button slide, coffee machine fixed, hammer free, nail slide,
      soccer ball free
    == per-step moves (action scale 0.01 m per unit: at most 0.0173 m of mocap a step)
      expert hand  50%=0.0089 99%=0.0169 99.9%=0.0262 100%=0.0396  (worst: door-open seed 39;
        by task door-open 0.0396, door-unlock 0.0357, soccer 0.0324)
      expert finger 50%=0.0003 99%=0.0713 99.9%=0.0741 100%=0.0759
      random hand  50%=0.0030 99%=0.0065 99.9%=0.0074 100%=0.0162  (worst: door-unlock seed
        1036; by task door-unlock 0.0162, hammer 0.0092, make-coffee 0.0092)
      random finger 50%=0.0070 99%=0.0318 99.9%=0.0393 100%=0.0458
    == ranges
      mocap limits over all tasks: [-0.5   0.4  -0.15] .. [0.5 1.  0.5]
      expert hand [-0.499  0.348  0.046] .. [0.457 0.885 0.458], opening 0.256 .. 1.000
      random hand [-0.504  0.398  0.072] .. [0.125 0.756 0.319], opening 0.286 .. 1.000
      entities [-0.29  0.31 -0.01] .. [0.662 0.97  0.301]
      largest |number| in a real state: 1.000 (ABSURD_COORD 5.0)
    == free objects: resting height (hand over 0.1 m away, z still within 0.2 mm for two steps)
      puck         resting z 0.0137 .. 0.0200 (REST_Z 0.020); at reset 0.0150 .. 0.0200;
                   any state 0.0137 .. 0.2579
      mug          resting z -0.0030 .. -0.0027 (REST_Z 0.001); at reset -0.0010 .. 0.0010;
                   any state -0.0096 .. 0.0637
      hammer       resting z 0.0282 .. 0.0284 (REST_Z 0.035); at reset 0.0000 .. 0.0000;
                   any state 0.0000 .. 0.1280
      soccer ball  resting z 0.0255 .. 0.0259 (REST_Z 0.030); at reset 0.0300 .. 0.0300;
                   any state -0.0002 .. 0.0761
    == holding: lifted objects (z > REST_Z + LIFT_MARGIN) in expert episodes
      fingers: closed on nothing 0.256, fully open 1.0
      puck   push             11 lifted: hand distance median 0.037 max 0.038; opening
             0.458 .. 0.472 (median) .. 0.476; held by the rule 100.0%
      puck   pick-place      788 lifted: median 0.039 max 0.045; 0.379 .. 0.450 .. 0.477; 100.0%
      puck   push-wall         2 lifted: median 0.031 max 0.031; 0.461 .. 0.463 .. 0.464; 100.0%
      puck   pick-place-wall 507 lifted: median 0.040 max 0.044; 0.435 .. 0.455 .. 0.476; 100.0%
      mug    coffee-push      58 lifted: median 0.064 max 0.070; 0.503 .. 0.563 .. 0.600; 100.0%
      mug    make-coffee     144 lifted: median 0.081 max 0.177; 0.517 .. 0.907 .. 1.000; 47.9%
      hammer hammer          353 lifted: median 0.046 max 0.050; 0.469 .. 0.508 .. 0.518; 100.0%
      soccer ball soccer      39 lifted: median 0.070 max 0.085; 0.296 .. 0.297 .. 0.297; 89.7%
    == falling: lifted, unheld objects against the fall bound from their last support
      79 unsupported lifted states; the highest above the fall bound (FALL_SLACK 2): 0.0033 m
      (make-coffee expert seed 2, mug at step 80, 2 steps after its support at z 0.020);
      FALL_TOL 0.01
    == false positives of each check on the real episodes
      expert (39550 generated states, 39550 transitions): floating 0 (0.000%), out_of_workspace
        0 (0.000%), absurd 0 (0.000%), moved_absent 0 (0.000%), gripper_jump 0 (0.000%),
        unrealistic 0 (0.000%)
      random (65000 generated states, 65000 transitions): floating 0 (0.000%), out_of_workspace
        0 (0.000%), absurd 0 (0.000%), moved_absent 0 (0.000%), gripper_jump 0 (0.000%),
        unrealistic 0 (0.000%)
    == sensitivity on doctored real expert episodes (at the middle step t)
      hand shifted by 0.05 m: jump flagged 1.9%, 0.07 m: jump flagged 98.1%, 0.1 m: jump
        flagged 100.0% (620 episodes)
      free object resting in s_{t-1}, put 0.15 m beside the hand in s_t, 0.05 m above REST_Z +
        LIFT_MARGIN: floating flagged 100.0%, 0.1 m above: 100.0% (293 episodes)
    == replay: each episode's actions from its seed, in a fresh simulator
      88 episodes: largest state difference 0.00e+00; success agrees 88/88
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kalm.envs.metaworld.state import ENTITIES, STATE_DIM, entity, entity_slice

__all__ = [
    "ABSENT_TOL",
    "ABSURD_COORD",
    "DT",
    "ENTITY_BOX",
    "FALL_SLACK",
    "FALL_TOL",
    "FINGER_STEP_MAX",
    "FREE_OBJECTS",
    "GRAVITY",
    "HAND_BOX",
    "HAND_STEP_MAX",
    "HAND_WALL_CLEARANCE",
    "HOLD_DIST",
    "HOLD_OPENING",
    "LIFT_MARGIN",
    "OPENING_RANGE",
    "REST_Z",
    "absurd",
    "check",
    "floating",
    "floating_objects",
    "gripper_jump",
    "held",
    "implausible_transitions",
    "moved_absent",
    "out_of_workspace",
    "present_entities",
    "replay",
    "state_errors",
    "through_wall",
    "untouched_moves",
    "WALLS",
]

# -- thresholds (see the module docstring for the calibration figures)
HAND_STEP_MAX = 0.06
FINGER_STEP_MAX = 0.15
FREE_OBJECTS = ("puck", "mug", "hammer", "soccer ball")
REST_Z = {"puck": 0.020, "mug": 0.001, "hammer": 0.035, "soccer ball": 0.030}
LIFT_MARGIN = 0.02
HOLD_DIST = 0.08
HOLD_OPENING = 0.9
DT = 0.0125
GRAVITY = 9.81
FALL_SLACK = 2
FALL_TOL = 0.01
HAND_BOX = ((-0.6, 0.6), (0.3, 1.1), (0.0, 0.6))
OPENING_RANGE = (-0.05, 1.05)
ENTITY_BOX = ((-0.73, 0.73), (0.17, 1.03), (-0.05, 0.55))
ABSURD_COORD = 5.0
ABSENT_TOL = 1e-6
# The wall each wall task adds to its twin's scene: (centre, half-size), metres, read from the
# MuJoCo models (a test checks them against the models).
WALLS = {
    "reach-wall": ((0.1, 0.75, 0.06), (0.12, 0.01, 0.06)),
    "push-wall": ((0.1, 0.75, 0.06), (0.12, 0.01, 0.06)),
    "pick-place-wall": ((0.1, 0.75, 0.06), (0.12, 0.01, 0.06)),
    "button-press-wall": ((0.1, 0.6, 0.075), (0.1, 0.01, 0.075)),
}
HAND_WALL_CLEARANCE = 0.03
# An articulated part moves only while the hand is near it: the farthest the hand's point was
# from each part's site (at either end of a transition moving it more than UNTOUCHED_MOVE) over
# the 1,000 expert and 400 noisy real episodes, + 3 cm (button 8.3, coffee button 9.8, faucet
# handle 7.9, lock 12.8, window handle 11.7, door handle 23.7 cm: the door swings on).
# Free objects (puck, mug) slide on after a push and are not held to it.
UNTOUCHED_MOVE = 0.002
UNTOUCHED_REACH = {"button": 0.115, "coffee button": 0.13, "faucet handle": 0.11, "lock": 0.16,
                   "window handle": 0.15, "door handle": 0.27}
# Decoding that keeps imagined paths off the wall (``MetaWorldEnvironment.obstacle_crossings``)
# asks for the clearance at which the real hand always passes (4.1-4.4 cm over the top in
# ``bench/metaworld_wall_crossing.py --probe``; it is stopped up to 3.5 cm), not the check's.
HAND_WALL_CLEARANCE_DECODING = 0.045


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def through_wall(task: str, states: Any,
                 hand_clearance: float = HAND_WALL_CLEARANCE) -> dict[str, np.ndarray]:
    """Per entity (``hand`` and every object present in ``s_0``), ``(T,)`` bool: transition
    ``s_t -> s_{t+1}`` carries it through ``task``'s wall (``WALLS``; the module docstring's
    rule; the hand's point lower than the top + ``hand_clearance``). Empty for a task without
    a wall."""
    if task not in WALLS:
        return {}
    s = _states(states)
    centre, half = (np.asarray(v, dtype=np.float64) for v in WALLS[task])
    thin = int(np.argmin(half[:2]))  # the wall's thin horizontal axis; its width runs along
    width = 1 - thin
    top = centre[2] + half[2]
    out = {}
    for name in ("hand", *(e for e in present_entities(s[0]) if e != "hand")):
        p = s[:, :3] if name == "hand" else entity(s, name)
        a, b = p[:-1], p[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            da, db = a[:, thin] - centre[thin], b[:, thin] - centre[thin]
            crosses = (da * db < 0) | ((da != 0) & (db == 0))
            f = np.where(crosses, da / (da - db), 0.0)
            at = a + f[:, None] * (b - a)
            inside = np.abs(at[:, width] - centre[width]) <= half[width]
            low = at[:, 2] < top + (hand_clearance if name == "hand" else 0.0)
        out[name] = crosses & inside & low & np.all(np.isfinite(a), -1) & np.all(np.isfinite(b), -1)
    return out


def _states(states: Any) -> np.ndarray:
    s = np.asarray(states, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != STATE_DIM or len(s) == 0:
        raise ValueError(f"states must be (T + 1, {STATE_DIM}); got {s.shape}")
    return s


def _slot_present(s: np.ndarray, name: str) -> np.ndarray:
    """(N,) bool: entity ``name``'s slot has a number above ABSENT_TOL (NaN counts as present)."""
    v = s[..., entity_slice(name)]
    with np.errstate(invalid="ignore"):
        return ~np.all(np.abs(v) <= ABSENT_TOL, axis=-1)


def present_entities(s0: np.ndarray) -> tuple[str, ...]:
    """The entities whose slot is filled in state ``s0`` (in ``ENTITIES`` order)."""
    s0 = np.asarray(s0, dtype=np.float64)
    return tuple(e for e in ENTITIES if bool(_slot_present(s0, e)))


def _in_box(p: np.ndarray, box) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        ok = np.ones(p.shape[:-1], dtype=bool)
        for k, (lo, hi) in enumerate(box):
            ok &= (p[..., k] >= lo) & (p[..., k] <= hi)
    return ok


# --------------------------------------------------------------------------------------------
# per-state and per-transition checks
# --------------------------------------------------------------------------------------------


def absurd(states: Any) -> np.ndarray:
    """(T + 1,) bool: a number of ``s_t`` is NaN, infinite or beyond ``ABSURD_COORD``."""
    s = _states(states)
    with np.errstate(invalid="ignore"):
        return ~np.all(np.isfinite(s) & (np.abs(s) <= ABSURD_COORD), axis=-1)


def gripper_jump(states: Any) -> np.ndarray:
    """(T,) bool: transition ``s_t -> s_{t+1}`` moves the hand more than ``HAND_STEP_MAX`` or
    changes the finger opening by more than ``FINGER_STEP_MAX`` (NaN transitions are not
    flagged here: ``absurd`` covers them)."""
    s = _states(states)
    with np.errstate(invalid="ignore"):
        hand = np.linalg.norm(np.diff(s[:, 0:3], axis=0), axis=-1)
        finger = np.abs(np.diff(s[:, 3]))
        return (hand > HAND_STEP_MAX) | (finger > FINGER_STEP_MAX)


def held(states: Any, name: str) -> np.ndarray:
    """(T + 1,) bool: the gripper holds entity ``name``: the hand within ``HOLD_DIST`` of it and
    the fingers at most ``HOLD_OPENING`` open."""
    s = _states(states)
    with np.errstate(invalid="ignore"):
        d = np.linalg.norm(entity(s, name) - s[:, 0:3], axis=-1)
        return (d <= HOLD_DIST) & (s[:, 3] <= HOLD_OPENING)


def floating_objects(states: Any) -> dict[str, np.ndarray]:
    """Per free object present in ``s_0``: (T + 1,) bool, the object floats in ``s_t`` (see the
    module docstring: unsupported, and higher than a fall from its last support allows)."""
    s = _states(states)
    out: dict[str, np.ndarray] = {}
    for name in FREE_OBJECTS:
        if not _slot_present(s[0], name):
            continue
        z = entity(s, name)[:, 2]
        with np.errstate(invalid="ignore"):
            # a NaN height is not judged here (absurd): it counts as supported
            supported = ~(z > REST_Z[name] + LIFT_MARGIN) | held(s, name)
        supported[0] = True  # s_0 is a real reset
        flags = np.zeros(len(s), dtype=bool)
        last = 0
        for t in range(1, len(s)):
            if supported[t]:
                last = t
                continue
            k = max(0, t - last - FALL_SLACK)
            bound = z[last] + FALL_TOL - 0.5 * GRAVITY * (k * DT) ** 2
            flags[t] = bool(z[t] > bound)
        out[name] = flags
    return out


def floating(states: Any) -> np.ndarray:
    """(T + 1,) bool: some free object floats in ``s_t`` (``floating_objects``)."""
    s = _states(states)
    flags = np.zeros(len(s), dtype=bool)
    for f in floating_objects(s).values():
        flags |= f
    return flags


def out_of_workspace(states: Any) -> np.ndarray:
    """(T + 1,) bool: the hand outside ``HAND_BOX``, the finger opening outside
    ``OPENING_RANGE``, or an entity present in ``s_t`` outside ``ENTITY_BOX`` (NaN states are
    not flagged here: ``absurd`` covers them)."""
    s = _states(states)
    finite = np.all(np.isfinite(s), axis=-1)
    with np.errstate(invalid="ignore"):
        bad = ~_in_box(s[:, 0:3], HAND_BOX)
        bad |= (s[:, 3] < OPENING_RANGE[0]) | (s[:, 3] > OPENING_RANGE[1])
        for name in ENTITIES:
            here = _slot_present(s, name)
            bad |= here & ~_in_box(entity(s, name), ENTITY_BOX)
    return bad & finite


def moved_absent(states: Any) -> np.ndarray:
    """(T + 1,) bool: an entity slot all zeros in ``s_0`` is filled in ``s_t``, or one present in
    ``s_0`` is all zeros in ``s_t`` (``s_0`` itself is never flagged)."""
    s = _states(states)
    flags = np.zeros(len(s), dtype=bool)
    for name in ENTITIES:
        here = _slot_present(s, name)
        flags |= here != here[0]
    return flags


def implausible_transitions(states: Any, next_states: Any) -> np.ndarray:
    """(B,) bool: which single transitions ``s -> s'`` (rows of ``(B, 91)`` arrays) break a rule
    the states alone show, for decoding that keeps imagined rollouts physical
    (``MetaWorldEnvironment.implausible_steps``): a gripper jump, ``s'`` absurd or out of the
    workspace, or a free object in ``s'`` lifted, not held and higher than in ``s`` (rising or
    hanging on its own: the one-step form of ``floating``, which needs the whole history).
    ``untouched_moves`` is not among these rules: every candidate of a step shares the state
    head's view of a part, so ruling it out cannot steer (measured on button-press-wall)."""
    s = np.asarray(states, dtype=np.float64).reshape(-1, STATE_DIM)
    n = np.asarray(next_states, dtype=np.float64).reshape(-1, STATE_DIM)
    with np.errstate(invalid="ignore"):
        bad = ~np.all(np.isfinite(n) & (np.abs(n) <= ABSURD_COORD), axis=-1)
        bad |= np.linalg.norm(n[:, 0:3] - s[:, 0:3], axis=-1) > HAND_STEP_MAX
        bad |= np.abs(n[:, 3] - s[:, 3]) > FINGER_STEP_MAX
        bad |= ~_in_box(n[:, 0:3], HAND_BOX)
        bad |= (n[:, 3] < OPENING_RANGE[0]) | (n[:, 3] > OPENING_RANGE[1])
        for name in ENTITIES:
            bad |= _slot_present(n, name) & ~_in_box(entity(n, name), ENTITY_BOX)
        for name in FREE_OBJECTS:
            z0, z1 = entity(s, name)[:, 2], entity(n, name)[:, 2]
            grip = (np.linalg.norm(entity(n, name) - n[:, 0:3], axis=-1) <= HOLD_DIST) & (
                n[:, 3] <= HOLD_OPENING)
            bad |= _slot_present(n, name) & (z1 > REST_Z[name] + LIFT_MARGIN) & ~grip & (z1 >= z0)
    return bad


def untouched_moves(states: Any, next_states: Any) -> np.ndarray:
    """(B,) bool: an articulated part (``UNTOUCHED_REACH``) present in ``s'`` moves more than
    ``UNTOUCHED_MOVE`` while the hand's point is farther from it than its reach at both ends of
    the transition (a button pressed, a handle turned, with nothing touching it)."""
    s = np.asarray(states, dtype=np.float64).reshape(-1, STATE_DIM)
    n = np.asarray(next_states, dtype=np.float64).reshape(-1, STATE_DIM)
    bad = np.zeros(len(n), dtype=bool)
    with np.errstate(invalid="ignore"):
        for name, reach in UNTOUCHED_REACH.items():
            p0, p1 = entity(s, name), entity(n, name)
            far = ((np.linalg.norm(s[:, 0:3] - p0, axis=-1) > reach)
                   & (np.linalg.norm(n[:, 0:3] - p1, axis=-1) > reach))
            moved = np.linalg.norm(p1 - p0, axis=-1) > UNTOUCHED_MOVE
            bad |= _slot_present(s, name) & _slot_present(n, name) & moved & far
    return bad


# --------------------------------------------------------------------------------------------
# replay and comparison
# --------------------------------------------------------------------------------------------

_SIM = None


def _default_sim():
    global _SIM
    if _SIM is None:
        import atexit

        from kalm.envs.metaworld.sim import MetaWorldSim

        _SIM = MetaWorldSim()
        atexit.register(_SIM.close)
    return _SIM


def _actions(actions: Any) -> np.ndarray:
    a = np.asarray(actions, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 4))
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"actions must be (T, 4); got {a.shape}")
    return a


def replay(task: str, seed: int, actions: Any, sim: Any = None) -> tuple[np.ndarray, int | None]:
    """The real states ``(T + 1, 91)`` of ``actions`` run open loop in ``MetaWorldSim`` from
    ``reset(seed=seed)`` of ``task``, and the first step ``t >= 1`` whose state meets the task's
    rule (None if none). Every action is played, also after success. Actions are clipped to
    [-1, 1], as the simulator does; a non-finite action is played as 0 (no move, grip released).
    ``sim``: a ``MetaWorldSim`` to use (default: one kept by this module)."""
    from kalm.envs.metaworld.success import task_success
    from kalm.envs.metaworld.tasks import TaskGoal

    acts = _actions(actions)
    acts = np.where(np.isfinite(acts), acts, 0.0)
    sim = sim if sim is not None else _default_sim()
    obs, _ = sim.reset(seed=int(seed), options={"goal": TaskGoal(task)})
    out = [obs]
    success_step = None
    for t, a in enumerate(acts, start=1):
        obs, *_ = sim.step(a)
        out.append(obs)
        if success_step is None and task_success(task, obs):
            success_step = t
    return np.stack(out), success_step


def state_errors(imagined: Any, replayed: Any) -> dict[str, Any]:
    """Per state, the distance (m) between imagined and replayed positions: ``{"hand": (T + 1,),
    "objects": {name: (T + 1,)}}`` for every entity present in the replayed (real) ``s_0``. NaN
    where the imagined state is not finite."""
    im, re = _states(imagined), _states(replayed)
    if im.shape != re.shape:
        raise ValueError(f"imagined {im.shape} and replayed {re.shape} differ in shape")
    with np.errstate(invalid="ignore", over="ignore"):
        hand = np.linalg.norm(im[:, 0:3] - re[:, 0:3], axis=-1)
        objects = {e: np.linalg.norm(entity(im, e) - entity(re, e), axis=-1)
                   for e in present_entities(re[0])}
    return {"hand": hand, "objects": objects}


def _steps(flags: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(flags)]


def _stat(values: np.ndarray, fn) -> float | None:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(fn(v)) if v.size else None


def _floats(v: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in np.asarray(v, dtype=np.float64)]


def check(task: str, seed: int, observations: Any, actions: Any, sim: Any = None) -> dict[str, Any]:
    """Score one imagined rollout of ``task`` whose ``s_0`` is ``reset(seed=seed)`` on every check
    of the module docstring. Returns a JSON-serialisable dict:

    - ``steps``, ``transitions``: T;
    - ``goal_met``, ``success_step``: the task's rule on the generated ``s_1..s_T``;
    - ``replay_success``, ``replay_success_step``: the same on the replayed states;
    - ``realistic_transitions`` (count), ``realistic`` (all of them), ``first_unrealistic_step``
      (0-based transition index, or None);
    - ``floating_steps`` (state indices), ``floating_objects`` ({object: state indices}),
      ``gripper_jump_steps`` (transition indices), ``moved_absent_steps``, ``absurd_steps``,
      ``out_of_workspace_steps`` (state indices), ``through_wall_steps`` (transition indices)
      and ``through_wall_entities`` ({entity: transition indices}; wall tasks only),
      ``untouched_steps`` (transition indices: an articulated part moving with the hand out of
      its reach, ``untouched_moves``);
    - ``floating``, ``gripper_jump``, ``moved_absent``, ``absurd``, ``out_of_workspace``,
      ``through_wall``, ``untouched``: any (the last two are reported apart: not among the
      paper's unrealistic measures, so not in ``realistic``);
    - ``hand_error_mean`` / ``hand_error_max``, ``object_error_mean`` / ``object_error_max``:
      imagined vs replayed over the generated states (m; the object figures over every
      (state, entity present in s_0) pair; None where nothing finite was measured),
      ``hand_errors`` and ``object_errors`` ({entity: list}) per state ``s_0..s_T``;
    - ``start_error``: the largest difference between ``observations[0]`` and the real reset
      (the replay is only meaningful when this is small);
    - ``invalid_actions``: actions with a non-finite number (replayed as 0).
    """
    from kalm.envs.metaworld.success import task_success

    obs = _states(observations)
    acts = _actions(actions)
    T = len(acts)
    if len(obs) != T + 1:
        raise ValueError(f"a rollout of {T} actions needs {T + 1} states; got {len(obs)}")
    bad = absurd(obs)
    success_step = None
    for t in range(1, T + 1):
        if not bad[t] and task_success(task, obs[t]):
            success_step = t
            break
    replayed, replay_step = replay(task, seed, acts, sim=sim)

    float_obj = floating_objects(obs)
    flo = floating(obs)
    jump = gripper_jump(obs)
    gone = moved_absent(obs)
    oow = out_of_workspace(obs)
    ok = ~jump & ~flo[1:] & ~bad[:-1] & ~bad[1:] & ~gone[1:]
    first_bad = next((int(t) for t in np.flatnonzero(~ok)), None)
    walls = through_wall(task, obs)
    wall_any = (np.any(np.stack(list(walls.values())), axis=0) if walls
                else np.zeros(T, dtype=bool))

    untouched = untouched_moves(obs[:-1], obs[1:])
    err = state_errors(obs, replayed)
    obj_gen = (np.stack([v[1:] for v in err["objects"].values()]) if err["objects"]
               else np.zeros((0, T)))
    with np.errstate(invalid="ignore"):
        start = float(np.max(np.abs(obs[0] - replayed[0])))
    return {
        "task": task,
        "seed": int(seed),
        "steps": T,
        "goal_met": success_step is not None,
        "success_step": success_step,
        "replay_success": replay_step is not None,
        "replay_success_step": replay_step,
        "transitions": T,
        "realistic_transitions": int(ok.sum()),
        "realistic": bool(ok.all()),
        "first_unrealistic_step": first_bad,
        "floating": bool(flo.any()),
        "floating_steps": _steps(flo),
        "floating_objects": {k: _steps(v) for k, v in float_obj.items() if v.any()},
        "gripper_jump": bool(jump.any()),
        "gripper_jump_steps": _steps(jump),
        "moved_absent": bool(gone.any()),
        "moved_absent_steps": _steps(gone),
        "absurd": bool(bad[1:].any()),
        "absurd_steps": _steps(bad),
        "out_of_workspace": bool(oow.any()),
        "out_of_workspace_steps": _steps(oow),
        "through_wall": bool(wall_any.any()),
        "through_wall_steps": _steps(wall_any),
        "through_wall_entities": {k: _steps(v) for k, v in walls.items() if v.any()},
        "untouched": bool(untouched.any()),
        "untouched_steps": _steps(untouched),
        "hand_error_mean": _stat(err["hand"][1:], np.mean),
        "hand_error_max": _stat(err["hand"][1:], np.max),
        "object_error_mean": _stat(obj_gen, np.mean),
        "object_error_max": _stat(obj_gen, np.max),
        "hand_errors": _floats(err["hand"]),
        "object_errors": {k: _floats(v) for k, v in err["objects"].items()},
        "start_error": start if np.isfinite(start) else None,
        "invalid_actions": int(np.sum(~np.all(np.isfinite(acts), axis=-1))) if T else 0,
    }

