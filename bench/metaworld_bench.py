"""Meta-World behind the environment interface: expert success, episode lengths, how often the
91-d success rules agree with Meta-World's own flag, simulator and rendering speed.

    python bench/metaworld_bench.py [--seeds 10] [--noise 0.1]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402

from kalm.envs import get_env  # noqa: E402
from kalm.envs.metaworld.tasks import ALL_TASKS, COMPOSITE_TASKS, TaskGoal, suite_tasks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--noise", type=float, default=0.1)
    args = ap.parse_args()
    env = get_env("metaworld")
    sim = env.make()
    print(f"{'task':18s} {'suite':8s} expert  random  len mean/max  horizon  rule=sim")
    steps = step_time = 0.0
    totals = {}
    for task in ALL_TASKS:
        suite = next(s for s in ("train", "easy", "hard") if task in suite_tasks(s))
        goal, h = TaskGoal(task), env.goal_horizon(TaskGoal(task))
        ok, lens, agree, n = 0, [], 0, 0
        for seed in range(args.seeds):
            obs, _ = sim.reset(seed=seed, options={"goal": goal})
            ex = env.expert(seed=seed, noise=args.noise)
            ex.reset(goal, obs)
            for k in range(h):
                t0 = time.perf_counter()
                obs, _, term, trunc, info = sim.step(ex.act(obs))
                step_time += time.perf_counter() - t0
                steps += 1
                n += 1
                agree += info["success"] == info["metaworld_success"]
                if term or trunc:
                    break
            ok += bool(info["success"])
            lens.append(k + 1)
        rnd = 0
        for seed in range(args.seeds):
            obs, _ = sim.reset(seed=1000 + seed, options={"goal": goal})
            pol = env.random_policy(seed)
            for _ in range(h):
                obs, _, term, trunc, info = sim.step(pol.act(obs))
                if term or trunc:
                    break
            rnd += bool(info["success"])
        same = "n/a (composite)" if task in COMPOSITE_TASKS else f"{agree / n:.1%}"
        totals.setdefault(suite, []).append(ok / args.seeds)
        print(f"{task:18s} {suite:8s} {ok / args.seeds:6.0%}  {rnd / args.seeds:6.0%}  "
              f"{np.mean(lens):5.1f}/{max(lens):3d}  {h:7d}  {same}", flush=True)
    for suite, v in totals.items():
        print(f"expert success, {suite} tasks: {np.mean(v):.1%}")
    print(f"simulator step (with the 91-d state and the rules): {1000 * step_time / steps:.2f} ms")
    obs, _ = sim.reset(seed=0, options={"goal": TaskGoal("door-open")})
    sim.render(320, 240)
    t0 = time.perf_counter()
    for _ in range(30):
        sim.render(320, 240)
    print(f"render 320x240: {30 / (time.perf_counter() - t0):.0f} fps")
    t0 = time.perf_counter()
    env.episode_frames(np.stack([obs] * 20), None, width=320, height=240, task="door-open")
    print(f"posed (imagined-state) frames 320x240: {20 / (time.perf_counter() - t0):.0f} fps")
    sim.close()


if __name__ == "__main__":
    main()
