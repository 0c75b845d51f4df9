"""Where imagined wall-task rollouts break: do they go over the wall, or through it?

For each imagined rollout of a wall task (reach-wall, push-wall, pick-place-wall,
button-press-wall) in an imagine run, the hand's and the task object's paths, imagined and
replayed open loop in the simulator, are checked against the wall: the box the wall variant adds
to its twin's scene (read from the MuJoCo models, not assumed). A path *crosses* the wall when it
passes the wall's thin plane within its span; its height there, minus the wall's top, says over
(> 0) or through (< 0). The replay says what the simulator made of the same actions: blocked (its
path never gets past the wall's plane) or not.

    python bench/metaworld_wall_crossing.py runs/mw25/imagine/easy [--csv OUT.csv]

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


def _boxes(sim, task: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre, half-size) of every collidable box of ``task``'s scene, after a reset."""
    import mujoco

    from kalm.envs.metaworld.tasks import TaskGoal

    sim.reset(seed=0, options={"goal": TaskGoal(task)})
    m, d = sim.env.unwrapped.model, sim.env.unwrapped.data
    return [(d.geom_xpos[i].copy(), m.geom_size[i].copy()) for i in range(m.ngeom)
            if m.geom_type[i] == mujoco.mjtGeom.mjGEOM_BOX
            and (m.geom_contype[i] or m.geom_conaffinity[i])]


def wall_of(sim, task: str) -> tuple[np.ndarray, np.ndarray]:
    """The wall ``task`` adds to its twin (``task`` without ``-wall``): centre and half-size."""
    twin = _boxes(sim, task[: -len("-wall")])
    added = [(c, s) for c, s in _boxes(sim, task)
             if not any(np.allclose(c, c2, atol=1e-3) and np.allclose(s, s2, atol=1e-4)
                        for c2, s2 in twin)]
    thin = [(c, s) for c, s in added if min(s[:2]) <= 0.02]  # a wall is a thin slab (the
    # button box, say, only moves in the wall variant)
    if not thin:
        raise ValueError(f"{task}: no thin box that {task[: -len('-wall')]} lacks")
    return max(thin, key=lambda cs: float(np.prod(cs[1])))


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="an imagine run folder (imagined.npz, validity.csv)")
    ap.add_argument("--csv", default=None, help="also write one row per rollout here")
    args = ap.parse_args()

    from kalm.data.episodes import load_dataset
    from kalm.envs.metaworld.sim import MetaWorldSim
    from kalm.envs.metaworld.state import entity
    from kalm.envs.metaworld.validity import replay

    run = Path(args.run)
    ds = load_dataset(run / "imagined.npz")
    rows = list(csv.DictReader(open(run / "validity.csv")))
    if len(rows) != len(ds.episodes):
        raise SystemExit(f"{run}: {len(rows)} validity rows for {len(ds.episodes)} rollouts")
    sim = MetaWorldSim()
    walls: dict[str, tuple] = {}
    out, tally = [], collections.defaultdict(collections.Counter)
    for ep, r in zip(ds.episodes, rows):
        task = json.loads(r["goal"])["task"]
        if task not in WALL_TASKS:
            continue
        if task not in walls:
            walls[task] = wall_of(sim, task)
        centre, half = walls[task]
        obj = "button" if task.startswith("button") else "puck"
        im = np.asarray(ep.observations, dtype=np.float64)
        re, succ = replay(task, int(r["reset_seed"]), ep.actions, sim=sim)
        row = {"index": r["index"], "task": task, "goal_met": r["goal_met"] == "True",
               "replay_success": succ is not None}
        for who, pick in (("hand", lambda s: s[:, :3]), (obj, lambda s, o=obj: entity(s, o))):
            row[f"imagined_{who}_over"] = crossing(pick(im), centre, half)
            row[f"replayed_{who}_over"] = crossing(pick(re), centre, half)
        out.append(row)
        t = tally[task]
        t["n"] += 1
        t["met"] += row["goal_met"]
        t["replay"] += row["replay_success"]
        h_im, h_re = row["imagined_hand_over"], row["replayed_hand_over"]
        t["im_cross"] += h_im is not None
        t["im_through"] += h_im is not None and h_im < 0
        t["re_blocked"] += h_im is not None and h_re is None
        if obj == "puck":
            o_im = row["imagined_puck_over"]
            t["puck_im_through"] += o_im is not None and o_im < 0
    print(f"{'task':18s} {'n':>3s} {'met':>4s} {'replay':>6s}  hand crosses (imagined) | of them "
          f"below the wall top | replay blocked | puck imagined through the wall")
    for task in WALL_TASKS:
        t = tally.get(task)
        if not t:
            continue
        print(f"{task:18s} {t['n']:3d} {t['met']:4d} {t['replay']:6d}  {t['im_cross']:3d} | "
              f"{t['im_through']:3d} | {t['re_blocked']:3d} | "
              + (f"{t['puck_im_through']:3d}" if task != "button-press-wall" else "  -"))
    for task, (c, h) in walls.items():
        print(f"  {task}: wall centre {np.round(c, 3).tolist()} half-size "
              f"{np.round(h, 3).tolist()} (top z {c[2] + h[2]:.3f})")
    if args.csv:
        keys = sorted({k for r in out for k in r}, key=lambda k: (k != "index", k != "task", k))
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(out)
        print(f"rows in {args.csv}")


if __name__ == "__main__":
    main()
