"""Posing a Meta-World scene in a state vector, for rendering imagined states.

Meta-World cannot be *set* to an arbitrary 91-d state (the arm is driven through a mocap weld,
and the state holds positions of handles and sites, not joint angles), so imagined states are
shown by posing: the mocap target moves to the imagined hand position and the physics runs a few
steps so the arm follows (every object joint held still); the fingers open as the gripper number
says; free bodies (puck, mug, hammer, ball) are placed at their imagined positions; each jointed
part (door, window, faucet, lock, buttons, nail) is turned to the joint value, within its range,
that brings its measured point closest to the imagined position. The rendering therefore shows
where the imagined state disagrees with what the scene can physically be: a handle imagined off
its arc appears at the nearest point of the arc.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kalm.envs.metaworld.state import entity, entity_slice, present

__all__ = ["pose_scene"]


def _joint(model, kind: str, name: str) -> int | None:
    try:
        if kind == "joint":
            return int(model.joint(name).id)
        b = model.body(name).id
        j = int(model.body_jntadr[b])
        return j if j >= 0 else None
    except KeyError:
        return None


def _measure(env: Any, task: str, name: str) -> np.ndarray:
    from kalm.envs.metaworld.sim import state_from_env

    return entity(state_from_env(task, env, env._get_obs()), name)


def pose_scene(env: Any, task: str, s: np.ndarray, arm_steps: int = 25) -> None:
    import mujoco

    from kalm.envs.metaworld.sim import _ENTITY_JOINT, TASK_ENTITIES

    m, d = env.model, env.data
    # the door leaf before the lock on it: a child is searched with its parent already in place
    order = ["door handle"] + [e for e in _ENTITY_JOINT if e != "door handle"]
    names = [e for e in order if present(s, e)]
    names = [e for e in names if e in TASK_ENTITIES[task] or task in ("coffee-push", "coffee-button", "make-coffee")]
    joints = {e: _joint(m, *_ENTITY_JOINT[e]) for e in names}
    joints = {e: j for e, j in joints.items() if j is not None}
    held = [(int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j]), int(m.jnt_type[j])) for j in joints.values()]

    # the arm: drive the mocap to the imagined hand, holding every object still
    keep = d.qpos.copy()
    mocap = m.body_mocapid[m.body("mocap").id]
    d.mocap_pos[mocap] = np.asarray(s[0:3]) + (d.mocap_pos[mocap] - env.get_endeff_pos())
    d.mocap_quat[mocap] = np.array([1.0, 0.0, 1.0, 0.0])
    opening = float(np.clip(s[3], 0.0, 1.0))
    d.ctrl[:2] = [-1.0 + 2.0 * (1 - opening), 1.0 - 2.0 * (1 - opening)]
    for _ in range(arm_steps):
        mujoco.mj_step(m, d, nstep=5)
        for qa, da, jt in held:
            n = 7 if jt == 0 else 1
            d.qpos[qa: qa + n] = keep[qa: qa + n]
            d.qvel[da: da + (6 if jt == 0 else 1)] = 0.0
    d.qvel[:] = 0.0
    mujoco.mj_forward(m, d)

    # the objects (the coffee machine first: its button and the mug's spot are placed from it)
    if task in ("coffee-push", "coffee-button", "make-coffee") and present(s, "coffee machine"):
        m.body("coffee_machine").pos[:] = np.asarray(s)[entity_slice("coffee machine")][:3]
        mujoco.mj_forward(m, d)
    for e, j in joints.items():
        qa, jt = int(m.jnt_qposadr[j]), int(m.jnt_type[j])
        want = entity(s, e)
        if jt == 0:  # free body: move it by the offset between its measured point and want
            d.qpos[qa: qa + 3] += want - _measure(env, task, e)
            mujoco.mj_forward(m, d)
            continue
        lo, hi = (m.jnt_range[j] if m.jnt_limited[j] else (-np.pi, np.pi))
        best, best_err = d.qpos[qa], np.inf
        for lo_, hi_ in ((lo, hi),):
            grid = np.linspace(lo_, hi_, 41)
            for _ in range(2):  # a grid, then a finer grid around the best value
                for q in grid:
                    d.qpos[qa] = q
                    mujoco.mj_kinematics(m, d)
                    err = float(np.linalg.norm(_measure(env, task, e) - want))
                    if err < best_err:
                        best, best_err = q, err
                step = (grid[1] - grid[0])
                grid = np.linspace(max(lo_, best - step), min(hi_, best + step), 21)
        d.qpos[qa] = best
    mujoco.mj_forward(m, d)
