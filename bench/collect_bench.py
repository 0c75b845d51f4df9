"""Measure expert data collection speed, and dataset save / load / d3rlpy conversion times.

Prints: episodes per second and env steps per second of ``collect_dataset`` (one process, the
expert's one-step lookahead included), the dataset summary, the file size, and the times to load
the file and to build the d3rlpy MDPDataset.
Usage: MUJOCO_GL=egl python bench/collect_bench.py [--episodes 100] [--seed 0]
       [--suite easy] [--noise 0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.data.collect import collect_dataset  # noqa: E402
from kalm.data.episodes import dataset_summary, load_dataset, to_d3rlpy  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=100, help="episodes to collect")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--suite", default=None, help="train/rephrase/easy/hard (default: relations)")
    p.add_argument("--noise", type=float, default=0.1, help="expert epsilon-noise")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.npz"
        t0 = time.perf_counter()
        ds = collect_dataset(args.episodes, args.seed, out, suite=args.suite, noise=args.noise,
                             progress=False)
        t_collect = time.perf_counter() - t0
        size = out.stat().st_size
        t0 = time.perf_counter()
        back = load_dataset(out)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        to_d3rlpy(back)  # the first call also pays for importing d3rlpy
        t0 = time.perf_counter()
        mdp = to_d3rlpy(back)
        t_d3 = time.perf_counter() - t0

    steps = ds.n_transitions
    print(f"collect: {args.episodes} episodes, {steps} env steps in {t_collect:.2f} s "
          f"(suite={args.suite or 'default relations'}, noise={args.noise})")
    print(f"  {args.episodes / t_collect:.1f} episodes/s, {steps / t_collect:.1f} env steps/s, "
          f"{1000 * t_collect / steps:.1f} ms per step (expert lookahead included)")
    print(f"file: {size / 1024:.1f} KiB; load {1000 * t_load:.1f} ms; "
          f"to_d3rlpy {1000 * t_d3:.1f} ms ({mdp.transition_count} transitions, "
          f"{len(mdp.episodes)} episodes)")
    print("summary:", json.dumps(dataset_summary(ds), indent=2))


if __name__ == "__main__":
    main()
