"""Environment speed: steps per second of random pushes, and resets per second.

Usage: python bench/env_bench.py [--steps 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.envs.clevr import ClevrRobotEnv  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5000)
    args = p.parse_args()
    env = ClevrRobotEnv()
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t = time.perf_counter()
    for i in range(args.steps):
        _, _, term, trunc, _ = env.step(int(rng.integers(40)))
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t
    print(f"env steps/s (one push = 40 physics substeps): {args.steps / dt:.0f}")
    t = time.perf_counter()
    for s in range(1000):
        env.reset(seed=s)
    print(f"resets/s: {1000 / (time.perf_counter() - t):.0f}")


if __name__ == "__main__":
    main()
