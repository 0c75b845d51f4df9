"""Where imagined wall-task rollouts break: do they go over the wall, or through it?

For each imagined rollout of a wall task (reach-wall, push-wall, pick-place-wall,
button-press-wall) in an imagine run, the hand's and the task object's paths, imagined and
replayed open loop in the simulator, are checked against the wall (``validity.WALLS``: the box
the wall variant adds to its twin's scene, checked against the MuJoCo models by a test). A path
*crosses* the wall when it passes the wall's thin plane within its width; its height there minus
the wall's top is in the CSV. "Through" is the validity check ``validity.through_wall`` (the hand
lower than the top plus ``HAND_WALL_CLEARANCE``, an object below the top). The replay says what
the simulator made of the same actions: blocked when the imagined hand crosses the wall and the
replayed one never does.

    python bench/metaworld_wall_crossing.py runs/mw25/imagine/easy [--csv OUT.csv]
    python bench/metaworld_wall_crossing.py --probe   # how low the real hand gets over a wall

The simulator only judges here: nothing is fed back into imagination.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

WALL_TASKS = ("reach-wall", "push-wall", "pick-place-wall", "button-press-wall")


def crossing(path: np.ndarray, centre: np.ndarray, half: np.ndarray) -> float | None:
    """Height above the wall's top where ``path`` (T, 3) first passes the wall's thin plane
    within its span (None: it never does)."""
    thin = int(np.argmin(half[:2]))  # the wall's thin horizontal axis (x or y)
    span = 1 - thin
    side = np.sign(path[:, thin] - centre[thin])
    top = centre[2] + half[2]
    for t in range(1, len(path)):
        if side[t - 1] != 0 and side[t] != side[t - 1]:
            a, b = path[t - 1], path[t]
            f = (centre[thin] - a[thin]) / (b[thin] - a[thin])
            p = a + f * (b - a)
            if abs(p[span] - centre[span]) <= half[span]:
                return float(p[2] - top)
    return None


def probe() -> None:
    """The real hand driven at each wall at heights over its top (``HAND_WALL_CLEARANCE``'s
    calibration): where it ends up, stopped short of the wall or past it."""
    from kalm.envs.metaworld.sim import MetaWorldSim
    from kalm.envs.metaworld.tasks import TaskGoal
    from kalm.envs.metaworld.validity import WALLS

    sim = MetaWorldSim()
    for task in ("reach-wall", "button-press-wall"):
        (cx, cy, cz), (_, _, hz) = WALLS[task]
        top = cz + hz
        for grip in (-1.0, 1.0):
            cells = []
            for dz in np.arange(0.0, 0.09, 0.01):
                obs, _ = sim.reset(seed=3, options={"goal": TaskGoal(task)})
                for target_y, steps in ((cy - 0.1, 60), (cy + 0.1, 80)):  # before, then at it
                    target = np.array([cx, target_y, top + dz])
                    for _ in range(steps):
                        a = np.clip((target - obs[:3]) * 50, -1, 1)
                        obs, *_ = sim.step(np.r_[a, grip])
                    if target_y < cy:
                        over = obs[2] - top
                cells.append(f"{over:.3f}: {'past' if obs[1] > cy else 'stopped'} "
                             f"(y {obs[1]:.3f})")
            print(f"{task} (wall at y {cy}, top z {top:.3f}), fingers "
                  f"{'closed' if grip > 0 else 'open'}; hand point over the top -> "
                  + "; ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="an imagine run folder (imagined.npz, validity.csv)")
    ap.add_argument("--csv", default=None, help="also write one row per rollout here")
    ap.add_argument("--probe", action="store_true",
                    help="drive the real hand at the walls at heights over their top")
    args = ap.parse_args()
    if args.probe:
        probe()
        return
    if not args.run:
        ap.error("give an imagine run folder, or --probe")

    from kalm.data.episodes import load_dataset
    from kalm.envs.metaworld.sim import MetaWorldSim
    from kalm.envs.metaworld.state import entity
    from kalm.envs.metaworld.validity import WALLS, replay, through_wall

    run = Path(args.run)
    ds = load_dataset(run / "imagined.npz")
    rows = list(csv.DictReader(open(run / "validity.csv")))
    if len(rows) != len(ds.episodes):
        raise SystemExit(f"{run}: {len(rows)} validity rows for {len(ds.episodes)} rollouts")
    sim = MetaWorldSim()
    out, tally = [], collections.defaultdict(collections.Counter)
    for ep, r in zip(ds.episodes, rows):
        task = json.loads(r["goal"])["task"]
        if task not in WALL_TASKS:
            continue
        centre, half = (np.asarray(v, dtype=np.float64) for v in WALLS[task])
        obj = "button" if task.startswith("button") else "puck"
        im = np.asarray(ep.observations, dtype=np.float64)
        re, succ = replay(task, int(r["reset_seed"]), ep.actions, sim=sim)
        row = {"index": r["index"], "task": task, "goal_met": r["goal_met"] == "True",
               "replay_success": succ is not None}
        for who, pick in (("hand", lambda s: s[:, :3]), (obj, lambda s, o=obj: entity(s, o))):
            row[f"imagined_{who}_over"] = crossing(pick(im), centre, half)
            row[f"replayed_{who}_over"] = crossing(pick(re), centre, half)
        flags = through_wall(task, im)
        row["through_wall"] = ",".join(sorted(k for k, v in flags.items() if v.any()))
        out.append(row)
        t = tally[task]
        t["n"] += 1
        t["met"] += row["goal_met"]
        t["replay"] += row["replay_success"]
        h_im, h_re = row["imagined_hand_over"], row["replayed_hand_over"]
        t["im_cross"] += h_im is not None
        t["through"] += bool(row["through_wall"])
        t["hand_through"] += bool(flags["hand"].any())
        t["re_blocked"] += h_im is not None and h_re is None
    print(f"{'task':18s} {'n':>3s} {'met':>4s} {'replay':>6s}  imagined: hand crosses | through "
          f"the wall (hand or object) | hand through | replay: blocked")
    for task in WALL_TASKS:
        t = tally.get(task)
        if not t:
            continue
        print(f"{task:18s} {t['n']:3d} {t['met']:4d} {t['replay']:6d}  {t['im_cross']:3d} | "
              f"{t['through']:3d} | {t['hand_through']:3d} | {t['re_blocked']:3d}")
    n = sum(t["n"] for t in tally.values())
    print(f"wall tasks: {sum(t['through'] for t in tally.values())} of {n} imagined rollouts pass "
          f"through the wall; {sum(t['replay'] for t in tally.values())} replay to success")
    if args.csv:
        keys = sorted({k for r in out for k in r}, key=lambda k: (k != "index", k != "task", k))
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(out)
        print(f"rows in {args.csv}")


if __name__ == "__main__":
    main()
