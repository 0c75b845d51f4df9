"""The paper's two composite Meta-World tasks, as real MuJoCo scenes.

- **make-coffee**: Meta-World's coffee scene (``sawyer_coffee.xml``, shared by coffee-push and
  coffee-button) with the mug drawn away from the machine as in coffee-push. Both skills act on
  the same bodies there: the mug slides under the machine, the button slides into it. Success
  needs both at once (``success.py``): the mug under the machine while the button is pressed.
  The button springs back, so pressing it first and then pushing the mug does not count. The
  state's target is coffee-push's (the mug's spot) until the mug has reached it, then
  coffee-button's (the pressed button), as two chained tasks would show it: the scene is then
  coffee-button's start, mug under the machine.
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

Its two slots are measured exactly as the tasks it chains measure them, so that an LM (or a
policy) grounded on those tasks reads a state it has seen the like of: the lock slot is
door-unlock's (the lock's start site, and the door leaf's orientation, MuJoCo order w, x, y, z:
door-unlock's observation carries that quaternion), the door handle slot door-open's (the handle's
centre and its orientation as scipy writes it, x, y, z, w). The angles follow from that state:

- the door's swing is the yaw of the handle's orientation relative to its closed one
  (``HANDLE_CLOSED_QUAT``, the same in door-open's scene);
- the lock's turn is where its start site sits on the circle it turns on, in the door leaf's
  frame relative to the handle (``LOCK_CIRCLE``: fitted on the simulator, 1e-8 m off it), so the
  lock reads the same however far the door has swung.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["BUTTON_TARGET", "DOOR_OPEN_RAD", "HANDLE_CLOSED_QUAT", "LOCK_CIRCLE", "LOCK_OPEN_RAD", "MUG_SPOT",
           "build_composite", "door_angle", "lock_angle"]

LOCK_OPEN_RAD = 0.4
DOOR_OPEN_RAD = 1.3


# the handle geom's orientation (scipy order x, y, z, w) with the door shut, in this scene and in
# door-open's (measured on both)
HANDLE_CLOSED_QUAT = np.array([0.6907585, -0.15062097, 0.69087866, 0.15117109])
# the circle the lock's start site turns on, in the door leaf's frame (x along the shut door, z
# up) relative to the handle: centre (x, z), radius, and the phase at which the turn reads 0
# (open); the turn is PHASE - atan2(z - zc, x - xc) (rad; 1.57 locked)
LOCK_CIRCLE = (-0.19071289, 0.11096405, 0.09055385, -0.11065721)


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions in scipy order (x, y, z, w)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def _door_yaw(s: np.ndarray) -> float:
    """The door leaf's rotation about z (rad; negative opens) from the handle's orientation."""
    from kalm.envs.metaworld.state import entity_slice

    q = np.asarray(s, dtype=np.float64)[entity_slice("door handle")][3:7]
    if not np.any(q):
        return 0.0
    c = HANDLE_CLOSED_QUAT
    r = _qmul(q / np.linalg.norm(q), np.array([-c[0], -c[1], -c[2], c[3]]))
    return float(2.0 * np.arctan2(r[2], r[3]))


def door_angle(s: np.ndarray) -> float:
    """How far the door has swung open (rad, >= 0 when open) in a 91-d state."""
    return -_door_yaw(s)


def lock_angle(s: np.ndarray) -> float:
    """The lock's hinge angle (rad; 1.57 locked, 0 open) in a 91-d state: where the lock's start
    site sits on its circle (``LOCK_CIRCLE``) in the door leaf's frame."""
    from kalm.envs.metaworld.state import entity, present

    s = np.asarray(s, dtype=np.float64)
    if not (present(s, "lock") and present(s, "door handle")):
        return np.pi / 2
    rel = entity(s, "lock") - entity(s, "door handle")
    yaw = _door_yaw(s)
    x = np.cos(yaw) * rel[0] + np.sin(yaw) * rel[1]  # into the leaf's frame: rotate by -yaw
    xc, zc, _, phase = LOCK_CIRCLE
    a = phase - float(np.arctan2(rel[2] - zc, x - xc))
    return float((a + np.pi) % (2 * np.pi) - np.pi)


# where the mug goes (coffee-push's target) and where the button is pressed to (coffee-button's
# target), relative to the machine
MUG_SPOT = np.array([0.0, -0.22, 0.0])
BUTTON_TARGET = np.array([0.0, -0.19, 0.3])


def _make_coffee_env() -> Any:
    from metaworld.envs.sawyer_coffee_push_v3 import SawyerCoffeePushEnvV3

    class MakeCoffeeEnv(SawyerCoffeePushEnvV3):
        """coffee-push's scene whose state target moves on to coffee-button's once the mug is
        under the machine (coffee-push's success), as two chained tasks would show it: from
        there the scene is coffee-button's start. coffee-push's own reward keeps its target."""

        def reset_model(self):
            obs = super().reset_model()
            self._mug_placed = False
            return obs

        def _get_pos_goal(self):
            from kalm.envs.metaworld.success import RULES

            machine = self.model.body("coffee_machine").pos
            if not getattr(self, "_mug_placed", False) and self._target_pos is not None:
                mug = self.get_body_com("obj")  # the mug as the state measures it
                radius = RULES["coffee-push"][1]  # coffee-push's success
                self._mug_placed = bool(np.linalg.norm(mug - (machine + MUG_SPOT)) <= radius)
            if getattr(self, "_mug_placed", False):
                return machine + BUTTON_TARGET
            return self._target_pos

    return MakeCoffeeEnv()


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
            # where the handle is with the door swung fully open (door-open's goal, this door):
            # door-open's offset from the door in x, y, at the height of this door's handle
            # (5 cm lower on the lock scene's door than on the pull door)
            target = self.data.body("door").xpos + np.array([-0.3, -0.45, 0.0])
            target[2] = self.data.geom("handle").xpos[2]
            return target

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
            # each slot as the task that observes it measures it: door-unlock reports the door
            # leaf's orientation with the lock, door-open the handle's (scipy order)
            from scipy.spatial.transform import Rotation

            handle = Rotation.from_matrix(self.data.geom("handle").xmat.reshape(3, 3)).as_quat()
            return np.hstack((self.data.body("door_link").xquat, handle))

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
