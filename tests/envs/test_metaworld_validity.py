"""Meta-World validity checks: real expert episodes pass, doctored ones are flagged at the right
step, and replaying an episode's actions from its seed reproduces it."""

from __future__ import annotations

import numpy as np
import pytest

from kalm.envs import get_env
from kalm.envs.metaworld import validity as V
from kalm.envs.metaworld.state import entity, entity_slice
from kalm.envs.metaworld.tasks import TaskGoal

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the scripted policies warn

ENV = get_env("metaworld")
_CACHE: dict = {}


def _episode(task: str, seed: int):
    """A recorded expert episode (the data's action noise): states, actions, success."""
    if (task, seed) not in _CACHE:
        sim = ENV.make()
        goal = TaskGoal(task)
        obs, _ = sim.reset(seed=seed, options={"goal": goal})
        expert = ENV.expert(seed=seed)
        expert.reset(goal, obs)
        states, actions = [obs], []
        for _ in range(ENV.goal_horizon(goal)):
            a = expert.act(obs)
            obs, _, terminated, truncated, info = sim.step(a)
            states.append(obs)
            actions.append(a)
            if terminated or truncated:
                break
        sim.close()
        _CACHE[task, seed] = (np.stack(states), np.stack(actions), bool(info["success"]))
    s, a, ok = _CACHE[task, seed]
    return s.copy(), a.copy(), ok


REAL = [("pick-place", 0), ("pick-place", 1), ("push", 0), ("coffee-push", 0), ("hammer", 0),
        ("door-open", 0), ("soccer", 0)]


@pytest.mark.parametrize("task,seed", REAL)
def test_real_expert_episodes_pass_every_check(task, seed):
    s, _, _ = _episode(task, seed)
    assert not V.floating(s).any()
    assert not V.gripper_jump(s).any()
    assert not V.out_of_workspace(s).any()
    assert not V.absurd(s).any()
    assert not V.moved_absent(s).any()


def test_expert_pick_place_lifts_and_holds_the_puck():
    s, _, ok = _episode("pick-place", 0)
    z = entity(s, "puck")[:, 2]
    lifted = z > V.REST_Z["puck"] + V.LIFT_MARGIN
    assert ok and lifted.any() and V.held(s, "puck")[lifted].all()


@pytest.mark.parametrize("task,seed", [("pick-place", 0), ("coffee-push", 0), ("door-open", 0)])
def test_replay_reproduces_a_recorded_episode(task, seed):
    s, a, ok = _episode(task, seed)
    replayed, step = V.replay(task, seed, a)
    assert replayed.shape == s.shape
    assert np.abs(replayed - s).max() < 1e-9
    assert (step is not None) == ok and (not ok or step == len(a))
    err = V.state_errors(s, replayed)
    assert err["hand"].max() < 1e-9 and all(v.max() < 1e-9 for v in err["objects"].values())


@pytest.mark.parametrize("task,seed", [("pick-place", 0), ("hammer", 0)])
def test_check_on_an_expert_episode(task, seed):
    s, a, ok = _episode(task, seed)
    assert ok
    r = V.check(task, seed, s, a)
    assert r["steps"] == r["transitions"] == len(a)
    assert r["goal_met"] and r["replay_success"]
    assert r["success_step"] == r["replay_success_step"] == len(a)
    assert r["realistic"] and r["realistic_transitions"] == len(a)
    assert r["first_unrealistic_step"] is None
    for key in ("floating", "gripper_jump", "moved_absent", "absurd", "out_of_workspace"):
        assert r[key] is False and r[f"{key}_steps"] == []
    assert r["hand_error_max"] < 1e-9 and r["object_error_max"] < 1e-9
    assert r["start_error"] == 0.0 and r["invalid_actions"] == 0
    assert len(r["hand_errors"]) == len(s)
    assert set(r["object_errors"]) == set(V.present_entities(s[0]))


def test_a_teleporting_hand_is_flagged_at_its_transition():
    s, a, _ = _episode("push", 0)
    t = 10
    s[t:, 0:3] += [0.15, 0.0, 0.0]  # every state from s_t on: one jump, s_{t-1} -> s_t
    assert V.gripper_jump(s).nonzero()[0].tolist() == [t - 1]
    r = V.check("push", 0, s, a)
    assert r["gripper_jump_steps"] == [t - 1] and r["first_unrealistic_step"] == t - 1
    assert r["realistic_transitions"] == len(a) - 1
    assert r["hand_error_max"] == pytest.approx(0.15, abs=1e-6)


def test_a_finger_snap_is_a_gripper_jump():
    s, _, _ = _episode("push", 0)
    s[5, 3] = 0.0 if s[4, 3] > 0.5 else 1.0
    assert V.gripper_jump(s).nonzero()[0].tolist() == [4, 5]


def test_a_puck_floating_away_from_the_gripper_is_flagged_from_its_first_state():
    s, a, _ = _episode("pick-place", 1)
    t, n = 5, 5
    for k in range(t, t + n):  # mid-air, 0.2 m beside the hand
        s[k, entity_slice("puck")][:3] = s[k, 0:3] + [0.2, 0.0, -0.05]
    assert V.floating(s).nonzero()[0].tolist() == list(range(t, t + n))
    r = V.check("pick-place", 1, s, a)
    assert r["floating_steps"] == list(range(t, t + n))
    assert r["floating_objects"] == {"puck": list(range(t, t + n))}
    assert r["first_unrealistic_step"] == t - 1
    assert r["realistic_transitions"] == len(a) - n
    assert r["object_error_max"] > 0.1


def _held_then_left(z_of_t) -> np.ndarray:
    """Synthetic: the puck held at z 0.2 in s_0, then the gripper opens and the hand rises
    0.01 m a step while the puck is at ``z_of_t(t)``."""
    s = np.zeros((15, 91))
    for t in range(15):
        s[t, 0:4] = [0.0, 0.6, 0.24 + 0.01 * t, 0.47 if t == 0 else 1.0]
        s[t, entity_slice("puck")] = [0.0, 0.6, z_of_t(t), 1.0, 0.0, 0.0, 0.0]
    s[:, 4:7] = [0.1, 0.8, 0.2]
    return s


def test_a_released_object_may_fall_but_not_hang():
    falls = _held_then_left(lambda t: max(0.02, 0.2 - 0.5 * V.GRAVITY * (t * V.DT) ** 2))
    assert not V.floating(falls).any()
    hangs = _held_then_left(lambda t: 0.2)
    # the fall bound drops below 0.2 once (t - FALL_SLACK) steps of fall exceed FALL_TOL
    assert V.floating(hangs).nonzero()[0].tolist() == list(range(6, 15))
    rises = _held_then_left(lambda t: 0.2 + 0.02 * t)  # carried up by nothing
    assert V.floating(rises).nonzero()[0].tolist() == list(range(1, 15))


def test_a_nan_state_is_absurd_and_breaks_both_its_transitions():
    s, a, _ = _episode("coffee-push", 0)
    t = 7
    s[t, entity_slice("mug").start + 2] = np.nan  # the mug's height
    assert V.absurd(s).nonzero()[0].tolist() == [t]
    s2 = s.copy()
    s2[t + 3, 0] = 1e6
    assert V.absurd(s2).nonzero()[0].tolist() == [t, t + 3]
    r = V.check("coffee-push", 0, s, a)
    assert r["absurd"] and r["absurd_steps"] == [t]
    assert r["first_unrealistic_step"] == t - 1 and r["realistic_transitions"] == len(a) - 2
    assert r["hand_error_max"] < 1e-9  # the NaN is in an object slot; errors skip it
    assert r["object_errors"]["mug"][t] is None


def test_an_absent_slot_filled_or_a_present_one_emptied_is_flagged():
    s, a, _ = _episode("push", 0)
    t = 12
    filled = s.copy()
    filled[t:, entity_slice("mug")] = [0.0, 0.7, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert V.moved_absent(filled).nonzero()[0].tolist() == list(range(t, len(s)))
    r = V.check("push", 0, filled, a)
    assert r["moved_absent_steps"] == list(range(t, len(s)))
    assert r["first_unrealistic_step"] == t - 1
    emptied = s.copy()
    emptied[t, entity_slice("puck")] = 0.0
    assert V.moved_absent(emptied).nonzero()[0].tolist() == [t]


def test_out_of_workspace():
    s, _, _ = _episode("push", 0)
    hand = s.copy()
    hand[9, 2] = -0.1  # the hand under the table
    assert V.out_of_workspace(hand).nonzero()[0].tolist() == [9]
    obj = s.copy()
    obj[4, entity_slice("puck").start] = 0.9  # the puck past the table's edge
    assert V.out_of_workspace(obj).nonzero()[0].tolist() == [4]
    assert not V.out_of_workspace(s).any()


def test_check_validates_shapes_and_tolerates_bad_actions():
    s, a, _ = _episode("push", 0)
    with pytest.raises(ValueError):
        V.check("push", 0, s[:-1], a)
    with pytest.raises(ValueError):
        V.check("push", 0, s[:, :90], a)
    bad = a.copy()
    bad[3] = np.nan
    r = V.check("push", 0, s, bad)
    assert r["invalid_actions"] == 1
    empty = V.check("push", 0, s[:1], a[:0])
    assert empty["steps"] == 0 and empty["realistic"] and not empty["goal_met"]


def test_fall_model_constants_are_the_simulators():
    sim = ENV.make()
    sim.reset(seed=0, options={"goal": TaskGoal("pick-place")})
    assert sim.env.dt == pytest.approx(V.DT)
    assert -sim.env.model.opt.gravity[2] == pytest.approx(V.GRAVITY, abs=1e-3)
    assert sim.env.action_scale == pytest.approx(0.01)
    sim.close()


# -- one-step rules for goal-guided decoding, and the progress measure it ranks by ------------


@pytest.mark.parametrize("task,seed", [("pick-place", 0), ("door-open", 1), ("coffee-push", 2)])
def test_real_transitions_are_never_implausible(task, seed):
    s, _, _ = _episode(task, seed)
    assert not V.implausible_transitions(s[:-1], s[1:]).any()
    assert not ENV.implausible_steps(s[:-1], s[1:], np.zeros((len(s) - 1, 4))).any()


def test_one_step_rules_flag_jumps_leaving_the_workspace_and_rising_unheld_objects():
    s, _, _ = _episode("pick-place", 0)
    a, b = s[:4].copy(), s[1:5].copy()
    b[0, 0:3] = a[0, 0:3] + 0.1                       # the hand jumps 17 cm
    b[1, 3] = a[1, 3] + 0.5                           # the fingers snap
    b[2, 2] = 0.9                                     # the hand leaves the workspace
    puck = entity_slice("puck").start
    a[3, puck + 2] = b[3, puck + 2] = V.REST_Z["puck"] + 0.05   # hanging, hand far away
    b[3, puck + 2] += 0.001                           # ... and rising
    b[3, 0:3] = a[3, 0:3]
    a[3, 0:3] = b[3, 0:3] = entity(b[3], "puck") + np.array([0.3, 0.0, 0.0])
    assert V.implausible_transitions(a, b).tolist() == [True, True, True, True]
    b[3, puck + 2] -= 0.002                           # falling is allowed
    assert not V.implausible_transitions(a[3:], b[3:]).any()
    bad = b.copy()
    bad[0, 5] = np.nan
    assert V.implausible_transitions(a[:1], bad[:1]).all()


@pytest.mark.parametrize("task,seed", [("button-press-wall", 0), ("faucet-open", 1),
                                       ("window-close", 2), ("door-lock", 3)])
def test_a_part_moving_untouched_is_flagged_and_a_pressed_one_is_not(task, seed):
    """A button, handle or lock moves only with the hand near it: the expert's episodes (which
    press, turn and push them) are never flagged; the same part moved with the hand 30 cm away
    is, at that transition only; a puck sliding on after a push is not held to it."""
    s, _, _ = _episode(task, seed)
    assert not V.untouched_moves(s[:-1], s[1:]).any()
    part = next(e for e in V.UNTOUCHED_REACH if np.abs(s[0, entity_slice(e)]).sum() > 0)
    a, b = s[:2].copy(), s[1:3].copy()
    b[0, entity_slice(part).start] = a[0, entity_slice(part).start] + 0.01  # it moves 1 cm ...
    a[0, 0:3] = b[0, 0:3] = entity(a[0], part) + np.array([0.0, -0.3, 0.1])  # ... hand far off
    assert V.untouched_moves(a, b).tolist() == [True, False]
    a[0, 0:3] = b[0, 0:3] = entity(a[0], part) + np.array([0.0, -0.03, 0.0])  # hand at it
    assert not V.untouched_moves(a, b).any()
    p, _, _ = _episode("push", 0)
    slid = p[1:3].copy()
    slid[:, entity_slice("puck").start] += 0.01
    slid[:, 0:3] = entity(slid, "puck") + np.array([0.0, -0.3, 0.1])
    assert not V.untouched_moves(p[:2], slid).any()


def test_task_progress_rises_toward_success_and_tops_at_it():
    from kalm.envs.metaworld.success import task_progress, task_success

    s, _, ok = _episode("push", 0)
    assert ok
    p = np.array([task_progress("push", x) for x in s])
    first = next(t for t, x in enumerate(s) if task_success("push", x))
    assert p[first] == 100.0 and p[:first].max() < 0
    assert p[first - 1] > p[0] + 2  # the hand reached the puck and the puck moved toward the goal
    far = s[0].copy()
    far[0:3] += np.array([0.0, -0.2, 0.1])              # the hand farther from the puck
    assert task_progress("push", far) < task_progress("push", s[0])
    bad = s[0].copy()
    bad[10] = np.inf
    assert task_progress("push", bad) == -np.inf


def test_composite_progress_counts_both_stages():
    import mujoco

    from kalm.envs.metaworld.composite import LOCK_OPEN_RAD, lock_angle
    from kalm.envs.metaworld.sim import state_from_env
    from kalm.envs.metaworld.success import task_progress

    sim = ENV.make()
    s0, _ = sim.reset(seed=0, options={"goal": TaskGoal("locked-door-open")})
    p0 = task_progress("locked-door-open", s0)
    assert np.isfinite(p0) and p0 < -1
    assert ENV.goal_progress(TaskGoal("locked-door-open"), s0) == p0
    # turning the lock part of the way open (the first stage) is progress though the door has
    # not moved: the scene posed with the lock's hinge at half its travel to open
    env = sim.scene("locked-door-open")
    m, d = env.model, env.data
    lock = m.jnt_qposadr[m.body_jntadr[m.body("lock_link").id]]
    d.qpos[lock] = 0.5 * (np.pi / 2 + LOCK_OPEN_RAD)
    mujoco.mj_forward(m, d)
    turned = state_from_env("locked-door-open", env, env._get_obs())
    sim.close()
    assert np.allclose(turned[0:7], s0[0:7]) and lock_angle(turned) < lock_angle(s0) - 0.3
    assert task_progress("locked-door-open", turned) > p0


def test_walls_are_the_boxes_the_wall_variants_add_to_their_scenes():
    import mujoco

    sim = ENV.make()

    def boxes(task):
        sim.reset(seed=0, options={"goal": TaskGoal(task)})
        m, d = sim.env.unwrapped.model, sim.env.unwrapped.data
        return [(d.geom_xpos[i].copy(), m.geom_size[i].copy()) for i in range(m.ngeom)
                if m.geom_type[i] == mujoco.mjtGeom.mjGEOM_BOX
                and (m.geom_contype[i] or m.geom_conaffinity[i])]

    try:
        for task, (centre, half) in V.WALLS.items():
            twin = boxes(task[: -len("-wall")])
            added = [(c, h) for c, h in boxes(task) if min(h[:2]) <= 0.02 and not any(
                np.allclose(c, c2, atol=1e-3) and np.allclose(h, h2, atol=1e-4) for c2, h2 in twin)]
            assert added, task  # (a wall may be two coincident geoms)
            for c, h in added:
                np.testing.assert_allclose(c, centre, atol=1e-3)
                np.testing.assert_allclose(h, half, atol=1e-4)
    finally:
        sim.close()


@pytest.mark.parametrize("task", sorted(V.WALLS))
def test_real_wall_task_episodes_never_pass_through_the_wall(task):
    s, a, ok = _episode(task, 0)
    flags = V.through_wall(task, s)
    assert ok and "hand" in flags and not any(f.any() for f in flags.values())
    assert not V.check(task, 0, s, a)["through_wall"]


def test_a_puck_pushed_through_the_wall_is_flagged_and_one_lifted_over_is_not():
    s, a, _ = _episode("push-wall", 0)
    (cx, cy, cz), (hx, hy, hz) = V.WALLS["push-wall"]
    top = cz + hz
    T = 30
    y = np.linspace(cy - 0.1, cy + 0.1, T + 1)

    def path(hand_z, puck_z, x=cx):
        out = np.repeat(s[:1], T + 1, axis=0)
        out[:, 0], out[:, 1], out[:, 2] = x, y - 0.03, hand_z
        p = entity_slice("puck").start
        out[:, p], out[:, p + 1], out[:, p + 2] = x, y, puck_z
        return out

    through = path(0.05, 0.02)  # slid along the table, straight through the wall
    flags = V.through_wall("push-wall", through)
    crossing = int(np.flatnonzero(np.diff(np.sign(y - cy)))[0])
    assert np.flatnonzero(flags["puck"]).tolist() == [crossing]
    assert flags["hand"].sum() == 1
    c = V.check("push-wall", 0, through, np.zeros((T, 4)))
    assert c["through_wall"] and set(c["through_wall_entities"]) == {"hand", "puck"}
    assert c["realistic"]  # reported apart from the paper's unrealistic measures
    # lifted over (the hand's point above the top by more than its fingers hang), beside the
    # wall, or in the twin task without a wall: not flagged
    over = V.through_wall("push-wall", path(top + V.HAND_WALL_CLEARANCE + 0.03, top + 0.02))
    assert not any(f.any() for f in over.values())
    beside = V.through_wall("push-wall", path(0.05, 0.02, x=cx - hx - 0.05))
    assert not any(f.any() for f in beside.values())
    # the hand's fingers reach below its point: just above the top is still through
    assert V.through_wall("push-wall", path(top + V.HAND_WALL_CLEARANCE / 2, top + 0.05))[
        "hand"].any()
    assert V.through_wall("push", through) == {}
    v = ENV.check_rollout(TaskGoal("push-wall"), through, np.zeros((T, 4)), seed=0)
    hand_step = int(np.flatnonzero(flags["hand"])[0])  # the hand follows 3 cm behind
    assert hand_step > crossing
    assert v.extra["through_wall_steps"] == [crossing, hand_step]
    assert set(v.extra["through_wall_entities"]) == {"hand", "puck"}
    twin = ENV.check_rollout(TaskGoal("push"), through, np.zeros((T, 4)), seed=0)
    assert "through_wall_steps" not in twin.extra  # only the wall variants report it


def test_a_button_pressed_by_nothing_is_reported_apart_where_the_scene_has_one():
    """The check reports a part moving untouched (``untouched_steps``) at its transition, apart
    from the paper's realistic count; a scene with a button, handle or lock carries the field,
    one without none; the Imagine page shows it as a check."""
    from kalm.ui.imagine import replay_checks

    s, a, _ = _episode("button-press-wall", 0)
    s, a = s[:9], a[:8]  # before the expert reaches the button
    t = 3
    d = s.copy()
    d[t + 1:, entity_slice("button").start + 1] += 0.02   # the button goes in 2 cm at t -> t+1 ...
    d[:, 0:3] = entity(s[0], "button") + np.array([0.0, -0.3, 0.1])  # ... the hand far off, still
    c = V.check("button-press-wall", 0, d, a)
    assert c["untouched"] and c["untouched_steps"] == [t]
    assert c["realistic"]
    clean = V.check("button-press-wall", 0, s, a)
    assert not clean["untouched"] and clean["untouched_steps"] == []
    v = ENV.check_rollout(TaskGoal("button-press-wall"), d, a, seed=0)
    assert v.extra["untouched_steps"] == [t]
    r, ra, _ = _episode("reach", 0)
    assert "untouched_steps" not in ENV.check_rollout(TaskGoal("reach"), r, ra, seed=0).extra
    moved = next(k for k in replay_checks(v, "metaworld") if k.name == "Moved untouched")
    assert moved.ok is False and "1" in moved.value
