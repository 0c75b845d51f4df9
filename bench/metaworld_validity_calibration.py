"""Calibration of the Meta-World validity checks (``kalm/envs/metaworld/validity.py``) on real data.

Collects expert episodes (the scripted experts with the data's action noise) and random-action
episodes of every task, then prints what the thresholds rest on: which entities are free bodies,
the largest per-step hand and finger moves, the hand's and the entities' ranges, each free
object's resting height, what holding looks like, how unsupported objects fall, and the rate at
which every check fires on these real episodes (it must be ~0), with a replay check.

    python bench/metaworld_validity_calibration.py [--episodes 50] [--unseen-episodes 10]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402

from kalm.envs import get_env  # noqa: E402
from kalm.envs.metaworld import validity as V  # noqa: E402
from kalm.envs.metaworld.state import ENTITIES, entity, entity_slice  # noqa: E402
from kalm.envs.metaworld.tasks import ALL_TASKS, DATA_TASKS, TaskGoal  # noqa: E402

KINDS = ("expert", "random")


def collect(env, sim, task: str, kind: str, n: int, noise: float):
    goal, h = TaskGoal(task), env.goal_horizon(TaskGoal(task))
    eps = []
    for i in range(n):
        seed = i if kind == "expert" else 1000 + i
        obs, _ = sim.reset(seed=seed, options={"goal": goal})
        pol = env.expert(seed=seed, noise=noise) if kind == "expert" else env.random_policy(seed)
        pol.reset(goal, obs)
        states, actions = [obs], []
        for _ in range(h):
            a = pol.act(obs)
            obs, _, term, trunc, info = sim.step(a)
            states.append(obs)
            actions.append(a)
            if term or trunc:
                break
        eps.append((task, seed, np.stack(states), np.stack(actions), bool(info["success"])))
    return eps


def _hand_steps(states: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.diff(states[:, :3], axis=0), axis=1)


def free_bodies(sim) -> dict[str, set]:
    """entity -> the MuJoCo joint types that move it, over every task scene that fills it."""
    import mujoco

    from kalm.envs.metaworld.sim import _ENTITY_JOINT, TASK_ENTITIES

    kinds: dict[str, set] = {}
    names = {int(mujoco.mjtJoint.mjJNT_FREE): "free", int(mujoco.mjtJoint.mjJNT_BALL): "ball",
             int(mujoco.mjtJoint.mjJNT_SLIDE): "slide", int(mujoco.mjtJoint.mjJNT_HINGE): "hinge"}
    for task in ALL_TASKS:
        sim.reset(seed=0, options={"goal": TaskGoal(task)})
        m = sim.env.model
        ents = TASK_ENTITIES[task]
        if "coffee" in task:
            ents += ("coffee button", "coffee machine")
        for e in ents:
            kind, name = _ENTITY_JOINT.get(e, ("body", None))
            if name is None:
                kinds.setdefault(e, set()).add("fixed")
                continue
            if kind == "joint":
                kinds.setdefault(e, set()).add(names[int(m.jnt_type[m.joint(name).id])])
                continue
            b = m.body(name).id
            while b > 0 and m.body_jntnum[b] == 0:  # the nearest body up the tree with a joint
                b = int(m.body_parentid[b])
            kinds.setdefault(e, set()).add(
                names[int(m.jnt_type[m.body_jntadr[b]])] if b > 0 else "fixed")
    return kinds


def pct(v, qs=(50, 99, 99.9, 100)) -> str:
    v = np.asarray(v)
    return " ".join(f"{q}%={np.percentile(v, q):.4f}" for q in qs) if v.size else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50, help="per data task and kind")
    ap.add_argument("--unseen-episodes", type=int, default=10, help="per unseen task and kind")
    ap.add_argument("--noise", type=float, default=0.1, help="expert action noise (the data's)")
    ap.add_argument("--replays", type=int, default=2, help="episodes per task and kind replayed")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    env = get_env("metaworld")
    sim = env.make()

    t0 = time.time()
    eps = {k: [] for k in KINDS}
    for task in ALL_TASKS:
        n = args.episodes if task in DATA_TASKS else args.unseen_episodes
        for k in KINDS:
            eps[k] += collect(env, sim, task, k, n, args.noise)
    n_eps = sum(len(v) for v in eps.values())
    n_tr = sum(len(e[3]) for v in eps.values() for e in v)
    print(f"collected {n_eps} episodes, {n_tr} transitions ({args.episodes} per data task and "
          f"kind, {args.unseen_episodes} per unseen task and kind; expert noise {args.noise}) "
          f"in {time.time() - t0:.0f}s")
    print(f"expert success {np.mean([e[4] for e in eps['expert']]):.1%}, "
          f"random {np.mean([e[4] for e in eps['random']]):.1%}")

    print("\n== entities and the joints that move them")
    kinds = free_bodies(sim)
    for e in ENTITIES:
        print(f"  {e:15s} {', '.join(sorted(kinds.get(e, {'-'})))}")
    free = tuple(e for e in ENTITIES if "free" in kinds.get(e, ()))
    print(f"  free bodies: {', '.join(free)} (validity.FREE_OBJECTS: {', '.join(V.FREE_OBJECTS)})")

    print("\n== per-step moves (action scale 0.01 m per unit: at most 0.0173 m of mocap a step)")
    for k in KINDS:
        hand = np.concatenate([_hand_steps(e[2]) for e in eps[k]])
        fing = np.concatenate([np.abs(np.diff(e[2][:, 3])) for e in eps[k]])
        worst = max(eps[k], key=lambda e: _hand_steps(e[2]).max())
        wt = {}
        for e in eps[k]:
            wt[e[0]] = max(wt.get(e[0], 0), _hand_steps(e[2]).max())
        top = sorted(wt.items(), key=lambda x: -x[1])[:3]
        print(f"  {k:6s} hand  {pct(hand)}  (worst: {worst[0]} seed {worst[1]}; by task "
              + ", ".join(f"{t} {v:.4f}" for t, v in top) + ")")
        print(f"  {k:6s} finger {pct(fing)}")
    print(f"  thresholds: HAND_STEP_MAX {V.HAND_STEP_MAX}, FINGER_STEP_MAX {V.FINGER_STEP_MAX}")

    print("\n== ranges")
    mocap_lo = np.full(3, np.inf)
    mocap_hi = np.full(3, -np.inf)
    for task in ALL_TASKS:
        sim.reset(seed=0, options={"goal": TaskGoal(task)})
        mocap_lo = np.minimum(mocap_lo, sim.env.mocap_low)
        mocap_hi = np.maximum(mocap_hi, sim.env.mocap_high)
    print(f"  mocap limits over all tasks: {np.round(mocap_lo, 3)} .. {np.round(mocap_hi, 3)}")
    for k in KINDS:
        S = np.concatenate([e[2] for e in eps[k]])
        print(f"  {k:6s} hand {S[:, :3].min(0).round(3)} .. {S[:, :3].max(0).round(3)}, "
              f"opening {S[:, 3].min():.3f} .. {S[:, 3].max():.3f}")
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for k in KINDS:
        for e in eps[k]:
            for name in V.present_entities(e[2][0]):
                p = entity(e[2], name)
                lo, hi = np.minimum(lo, p.min(0)), np.maximum(hi, p.max(0))
    print(f"  entities {lo.round(3)} .. {hi.round(3)}")
    print(f"  HAND_BOX {V.HAND_BOX}, OPENING_RANGE {V.OPENING_RANGE}, ENTITY_BOX {V.ENTITY_BOX}")
    S = np.concatenate([e[2] for k in KINDS for e in eps[k]])
    print(f"  largest |number| in a real state: {np.abs(S).max():.3f} "
          f"(ABSURD_COORD {V.ABSURD_COORD})")

    print("\n== free objects: resting height (hand over 0.1 m away, z still within 0.2 mm for "
          "two steps)")
    for name in V.FREE_OBJECTS:
        rest, z0, zmin, zmax = [], [], [], []
        for k in KINDS:
            for e in eps[k]:
                s = e[2]
                if name not in V.present_entities(s[0]):
                    continue
                p = entity(s, name)
                d = np.linalg.norm(p - s[:, :3], axis=1)
                dz = np.abs(np.diff(p[:, 2]))
                still = np.r_[False, False, (dz[1:] < 2e-4) & (dz[:-1] < 2e-4)]
                rest.append(p[(d > 0.1) & still, 2])
                z0.append(p[0, 2])
                zmin.append(p[:, 2].min())
                zmax.append(p[:, 2].max())
        rest = np.concatenate(rest)
        print(f"  {name:12s} resting z {rest.min():.4f} .. {rest.max():.4f} (REST_Z "
              f"{V.REST_Z[name]:.3f}); at reset {min(z0):.4f} .. {max(z0):.4f}; any state "
              f"{min(zmin):.4f} .. {max(zmax):.4f}")
    print(f"  LIFT_MARGIN {V.LIFT_MARGIN}")

    print("\n== holding: lifted objects (z > REST_Z + LIFT_MARGIN) in expert episodes")
    closed = [e[2][:, 3].min() for e in eps["expert"]]
    print(f"  fingers: closed on nothing {np.min(closed):.3f}, fully open 1.0")
    for name in V.FREE_OBJECTS:
        by_task: dict[str, list] = {}
        for e in eps["expert"]:
            s = e[2]
            if name not in V.present_entities(s[0]):
                continue
            p = entity(s, name)
            up = p[:, 2] > V.REST_Z[name] + V.LIFT_MARGIN
            if up.any():
                d = np.linalg.norm(p - s[:, :3], axis=1)
                by_task.setdefault(e[0], []).append(np.c_[d[up], s[up, 3]])
        for task, rows in by_task.items():
            r = np.concatenate(rows)
            h = (r[:, 0] <= V.HOLD_DIST) & (r[:, 1] <= V.HOLD_OPENING)
            print(f"  {name:12s} {task:16s} {len(r):5d} lifted states: hand distance "
                  f"median {np.median(r[:, 0]):.3f} max {r[:, 0].max():.3f}; opening "
                  f"{r[:, 1].min():.3f} .. {np.median(r[:, 1]):.3f} (median) .. "
                  f"{r[:, 1].max():.3f}; "
                  f"held by the rule {h.mean():.1%}")
    print(f"  HOLD_DIST {V.HOLD_DIST}, HOLD_OPENING {V.HOLD_OPENING}")

    print("\n== falling: lifted, unheld objects against the fall bound from their last support")
    worst = (-np.inf, None)
    n_uns = 0
    for k in KINDS:
        for e in eps[k]:
            s = e[2]
            for name in V.FREE_OBJECTS:
                if name not in V.present_entities(s[0]):
                    continue
                z = entity(s, name)[:, 2]
                sup = ~(z > V.REST_Z[name] + V.LIFT_MARGIN) | V.held(s, name)
                sup[0] = True
                last = 0
                for t in range(len(s)):
                    if sup[t]:
                        last = t
                        continue
                    n_uns += 1
                    kk = max(0, t - last - V.FALL_SLACK)
                    ex = z[t] - (z[last] - 0.5 * V.GRAVITY * (kk * V.DT) ** 2)
                    if ex > worst[0]:
                        worst = (ex, f"{e[0]} {k} seed {e[1]}, {name} at step {t}, {t - last} "
                                     f"steps after its support at z {z[last]:.3f}")
    print(f"  {n_uns} unsupported lifted states; the highest above the fall bound "
          f"(FALL_SLACK {V.FALL_SLACK}): {worst[0]:.4f} m ({worst[1]}); FALL_TOL {V.FALL_TOL}")

    print("\n== false positives of each check on the real episodes")
    per_transition = ("gripper_jump", "unrealistic", "through_wall", "untouched")
    for k in KINDS:
        gen = sum(len(e[2]) - 1 for e in eps[k])
        tr = sum(len(e[3]) for e in eps[k])
        c = dict(floating=0, out_of_workspace=0, absurd=0, moved_absent=0, gripper_jump=0,
                 unrealistic=0, through_wall=0, untouched=0)
        where: dict[str, set] = {}
        for e in eps[k]:
            s = e[2]
            flags = dict(floating=V.floating(s)[1:], out_of_workspace=V.out_of_workspace(s)[1:],
                         absurd=V.absurd(s)[1:], moved_absent=V.moved_absent(s)[1:],
                         gripper_jump=V.gripper_jump(s))
            flags["unrealistic"] = (flags["gripper_jump"] | flags["floating"] | flags["absurd"]
                                    | V.absurd(s)[:-1] | flags["moved_absent"])
            walls = V.through_wall(e[0], s)  # wall tasks only
            flags["through_wall"] = (np.any(np.stack(list(walls.values())), axis=0) if walls
                                     else np.zeros(len(s) - 1, dtype=bool))
            flags["untouched"] = V.untouched_moves(s[:-1], s[1:])
            for name, f in flags.items():
                c[name] += int(f.sum())
                if f.any():
                    where.setdefault(name, set()).add(e[0])
        print(f"  {k:6s} ({gen} generated states, {tr} transitions): "
              + ", ".join(f"{n} {v} ({v / (tr if n in per_transition else gen):.3%})"
                          for n, v in c.items()))
        for name, tasks in where.items():
            print(f"         {name} in: {', '.join(sorted(tasks))}")

    print("\n== sensitivity on doctored real expert episodes (at the middle step t)")
    jumps = {0.05: 0, 0.07: 0, 0.1: 0}
    lifted = {0.05: 0, 0.1: 0}
    n_j = n_f = 0
    for e in eps["expert"]:
        s = e[2]
        t = len(s) // 2
        if t < 1:
            continue
        n_j += 1
        for dx in jumps:  # the hand shifted sideways from s_t on: one jump into s_t
            d = s.copy()
            d[t:, 0] += dx
            jumps[dx] += bool(V.gripper_jump(d)[t - 1])
        objs = [o for o in V.FREE_OBJECTS if o in V.present_entities(s[0])
                and entity(s[t - 1], o)[2] <= V.REST_Z[o] + V.LIFT_MARGIN]
        if objs:
            n_f += 1
            for dz in lifted:  # the object lifted in s_t, 0.15 m beside the hand
                d = s.copy()
                sl = slice(entity_slice(objs[0]).start, entity_slice(objs[0]).start + 3)
                d[t, sl] = s[t, 0:3] + [0.15, 0.0, 0.0]
                d[t, sl.start + 2] = V.REST_Z[objs[0]] + V.LIFT_MARGIN + dz
                lifted[dz] += bool(V.floating(d)[t])
    print("  hand shifted by "
          + ", ".join(f"{dx} m: jump flagged {v / n_j:.1%}" for dx, v in jumps.items())
          + f" ({n_j} episodes)")
    print("  free object resting in s_{t-1}, put 0.15 m beside the hand in s_t, " + ", ".join(
        f"{dz} m above REST_Z + LIFT_MARGIN: floating flagged {v / n_f:.1%}"
        for dz, v in lifted.items())
          + f" ({n_f} episodes)")

    print("\n== replay: each episode's actions from its seed, in a fresh simulator")
    fresh = env.make()
    errs, agree, n = [], 0, 0
    for k in KINDS:
        by_task: dict[str, int] = {}
        for e in eps[k]:
            if by_task.get(e[0], 0) >= args.replays:
                continue
            by_task[e[0]] = by_task.get(e[0], 0) + 1
            rs, step = V.replay(e[0], e[1], e[3], sim=fresh)
            errs.append(np.abs(rs - e[2]).max())
            agree += (step is not None) == e[4]
            n += 1
    print(f"  {n} episodes: largest state difference {max(errs):.2e}; success agrees {agree}/{n}")
    fresh.close()
    sim.close()


if __name__ == "__main__":
    main()
