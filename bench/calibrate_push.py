"""Measure how far one push moves the target ball, per direction, over random layouts.

Prints mean / min / max displacement of the pushed ball along its push direction, the mean
perpendicular drift, and how often another ball was disturbed. Target: 0.14-0.15 for a clean push.
Usage: python bench/calibrate_push.py [--layouts 200] [--damping D]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.envs import clevr_model  # noqa: E402


def measure(layouts: int, seed: int = 0) -> dict:
    from kalm.envs.clevr import PUSH_DIRECTIONS, ClevrRobotEnv, sample_initial_obs

    env = ClevrRobotEnv()
    rng = np.random.default_rng(seed)
    along, perp, clean = [], [], []
    for _ in range(layouts):
        obs = sample_initial_obs(rng)
        a = int(rng.integers(40))
        ball, d = divmod(a, 8)
        u = PUSH_DIRECTIONS[d] / np.linalg.norm(PUSH_DIRECTIONS[d])
        nxt = env.simulate(obs, a)
        disp = nxt[2 * ball : 2 * ball + 2] - obs[2 * ball : 2 * ball + 2]
        others = np.delete((nxt - obs).reshape(5, 2), ball, axis=0)
        hit_other = np.linalg.norm(others, axis=1).max() > 1e-3
        # a clean push: nobody else moved and the ball did not reach a wall
        x, y = nxt[2 * ball : 2 * ball + 2]
        at_wall = x < -0.58 or x > 0.58 or y < -0.28 or y > 0.68
        if not hit_other and not at_wall:
            along.append(float(disp @ u))
            perp.append(float(abs(disp @ np.array([-u[1], u[0]]))))
        clean.append(not hit_other)
    along_a = np.array(along)
    return {
        "clean_pushes": len(along),
        "along_mean": along_a.mean(),
        "along_min": along_a.min(),
        "along_max": along_a.max(),
        "perp_mean": float(np.mean(perp)),
        "others_untouched": float(np.mean(clean)),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layouts", type=int, default=200)
    p.add_argument("--damping", type=float, nargs="*", default=None)
    args = p.parse_args()
    for dmp in args.damping or [clevr_model.PUSHER_DAMPING]:
        clevr_model.PUSHER_DAMPING = dmp
        m = measure(args.layouts)
        print(
            f"pusher_damping={dmp:.3f} clean={m['clean_pushes']} along mean={m['along_mean']:.4f} "
            f"min={m['along_min']:.4f} max={m['along_max']:.4f} perp={m['perp_mean']:.4f} "
            f"others_untouched={m['others_untouched']:.2f}"
        )


if __name__ == "__main__":
    main()
