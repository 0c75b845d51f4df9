"""CPU cost of grounding: training samples/s, seconds per step, peak memory, and the projected
wall time of a preset, measured by training a few real steps of it into a temporary folder.

Usage: python bench/ground_cost.py [--data assets/data/aim4k.npz] [--preset cpu] [--steps 12]
       [--threads 2] [--set KEY=VALUE ...]
``--set`` overrides config fields (JSON values), e.g. ``--set explain_balls=false``. The first
two steps (warm-up, allocator growth) are left out of the per-step figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from kalm.llm.config import PRESETS, GroundConfig  # noqa: E402
from kalm.llm.train import train_grounding  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="assets/data/aim4k.npz")
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    values = dict(PRESETS[args.preset])
    preset_steps = values["steps"]
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            values[k] = json.loads(v)
        except json.JSONDecodeError:
            values[k] = v
    values.update(data=args.data, steps=args.steps, eval_every=10**9, save_every=10**9, val_fraction=0.0)
    cfg = GroundConfig(**values).validate()
    times: list[float] = []
    last = [time.perf_counter()]

    def on_step(step: int, row: dict) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_grounding(cfg, Path(tmp) / "run", progress=False, on_step=on_step)
        total = time.perf_counter() - t0
    per = times[2:] if len(times) > 4 else times
    s_step = statistics.median(per)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    out = {
        "preset": args.preset, "threads": args.threads, "batch_size": cfg.batch_size,
        "steps_timed": len(per), "s_per_step": round(s_step, 2),
        "samples_per_s": round(cfg.batch_size / s_step, 2), "peak_rss_gb": round(peak_gb, 2),
        "preset_steps": preset_steps,
        "projected_preset_minutes": round(preset_steps * s_step / 60, 1),
        "this_run_s": round(total, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
