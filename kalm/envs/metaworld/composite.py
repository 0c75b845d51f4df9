"""The paper's two composite Meta-World tasks, as real MuJoCo scenes.

- **make-coffee**: Meta-World's coffee scene (``sawyer_coffee.xml``, shared by coffee-push and
  coffee-button) with the mug drawn away from the machine as in coffee-push. Both skills act on
  the same bodies there: the mug slides under the machine, the button slides into it. Success
  needs both at once (``success.py``): the mug under the machine while the button is pressed.
  The button springs back, so pressing it first and then pushing the mug does not count.
- **locked-door-open**: Meta-World has no scene where a locked door can be opened: the lock
  scene's door (``doorlockA``) has no hinge, and the pull-door scene's door (``doorlockB``) has
  no lock. This scene is the lock scene with a hinge added to its door (the pull door's hinge:
  z axis, range -2..0 rad), built with MuJoCo's ``MjSpec`` at load time, so no XML is copied.
  The episode starts locked (door-unlock's reset). Success: the lock turned open (its hinge
  within 0.4 rad of open; door-unlock's own success fires at 0.27-0.35 rad, measured) *and* the
  door swung open past 1.3 rad (door-open's own success fires at 1.38-1.39 rad, measured). The
  state's target is the lock's unlock target until the lock has been opened, then the door's
  open target, as two chained tasks would show it. Limitation, said plainly: the lock bar does
  not physically block the door, so a policy can swing the door while still locked; such an
  episode does not succeed until the lock is also open.

Angles are read from the state's quaternions (MuJoCo order w, x, y, z): the door handle slot
carries the door leaf's orientation, the lock slot the lock's.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["LOCK_OPEN_RAD", "DOOR_OPEN_RAD", "build_composite", "door_angle", "lock_angle"]

LOCK_OPEN_RAD = 0.4
DOOR_OPEN_RAD = 1.3


def _yaw(q: np.ndarray) -> float:
    return float(2.0 * np.arctan2(q[3], q[0]))


def door_angle(s: np.ndarray) -> float:
    """How far the door has swung open (rad, >= 0) in a 91-d state."""
    from kalm.envs.metaworld.state import entity_slice

    q = np.asarray(s)[entity_slice("door handle")][3:7]
    return -_yaw(q) if np.any(q) else 0.0


def lock_angle(s: np.ndarray) -> float:
    """The lock's hinge angle relative to the door (rad; 1.57 locked, 0 open) in a 91-d state."""
    from kalm.envs.metaworld.state import entity_slice

    qd = np.asarray(s)[entity_slice("door handle")][3:7]
    ql = np.asarray(s)[entity_slice("lock")][3:7]
    if not np.any(ql):
        return np.pi / 2
    if not np.any(qd):
        qd = np.array([1.0, 0, 0, 0])
    w0, x0, y0, z0 = qd[0], -qd[1], -qd[2], -qd[3]  # conj(door) * lock
    w1, x1, y1, z1 = ql
    w = w0 * w1 - x0 * x1 - y0 * y1 - z0 * z1
    y = w0 * y1 - x0 * z1 + y0 * w1 + z0 * x1
    a = float(2.0 * np.arctan2(y, w))
    return abs(a)


def _make_coffee_env() -> Any:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return ALL_V3_ENVIRONMENTS["coffee-push-v3"]()


def _locked_door_env() -> Any:
    import mujoco
    from metaworld.envs.sawyer_door_unlock_v3 import SawyerDoorUnlockEnvV3

    class LockedDoorOpenEnv(SawyerDoorUnlockEnvV3):
        """door-unlock's scene with a hinged door: unlock, then pull the door open."""

        def _initialize_simulation(self):
            spec = mujoco.MjSpec.from_file(self.fullpath)
            leaf = spec.body("door_link")
            leaf.add_joint(name="doorjoint", type=mujoco.mjtJoint.mjJNT_HINGE, axis=[0, 0, 1],
                           range=[-2.0, 0.0], damping=1.0, armature=0.001)
            for g in leaf.geoms:  # name the handle as the pull door names it
                if g.meshname == "door_handle":
                    g.name = "handle"
            model = spec.compile()
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
            model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
            return model, mujoco.MjData(model)

        def _set_obj_xyz(self, pos):
            # door-unlock writes the lock angle at a fixed qpos index, which the added door
            # hinge now occupies: write both joints by their own addresses
            m = self.model
            lock = m.jnt_qposadr[m.body_jntadr[m.body("lock_link").id]]
            door = m.jnt_qposadr[m.joint("doorjoint").id]
            qpos, qvel = self.data.qpos.flat.copy(), self.data.qvel.flat.copy()
            qpos[lock], qpos[door] = float(np.asarray(pos).reshape(-1)[0]), 0.0
            qvel[m.jnt_dofadr[m.body_jntadr[m.body("lock_link").id]]] = 0.0
            qvel[m.jnt_dofadr[m.joint("doorjoint").id]] = 0.0
            self.set_state(qpos, qvel)

        def reset_model(self):
            obs = super().reset_model()
            self._unlocked = False
            self._unlock_target = self._target_pos.copy()
            return obs

        def _lock_qpos(self) -> float:
            j = self.model.body_jntadr[self.model.body("lock_link").id]
            return float(self.data.qpos[self.model.jnt_qposadr[j]])

        def _door_open_target(self) -> np.ndarray:
            # where the handle is with the door swung fully open (door-open's goal, this door)
            return self.data.body("door").xpos + np.array([-0.3, -0.45, 0.0])

        def _get_pos_goal(self):
            if not getattr(self, "_unlocked", False) and self._lock_qpos() <= LOCK_OPEN_RAD:
                self._unlocked = True
            self._target_pos = self._door_open_target() if getattr(self, "_unlocked", False) \
                else getattr(self, "_unlock_target", self._target_pos)
            return self._target_pos

        def _get_pos_objects(self):
            return np.hstack((self._get_site_pos("lockStartUnlock"),
                              self.data.geom("handle").xpos.copy()))

        def _get_quat_objects(self):
            return np.hstack((self.data.body("lock_link").xquat, self.data.body("door_link").xquat))

        def evaluate_state(self, obs, action):
            reward, info = super().evaluate_state(obs, action)
            door = -float(self.data.qpos[self.model.jnt_qposadr[self.model.joint("doorjoint").id]])
            info["success"] = float(self._lock_qpos() <= LOCK_OPEN_RAD and door >= DOOR_OPEN_RAD)
            return reward, info

    return LockedDoorOpenEnv()


def build_composite(task: str) -> Any:
    """The Meta-World env of a composite task (unconfigured: ``sim._configure`` does that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "make-coffee":
            return _make_coffee_env()
        if task == "locked-door-open":
            return _locked_door_env()
    raise ValueError(f"{task!r} is not a composite task")
