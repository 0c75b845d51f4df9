"""Figures of a grounded LM: explanation accuracy, match rate, replay success, next-action
accuracy and dynamics error on held-out real episodes and on the suites; and generation speed.

Usage: python bench/grounding_bench.py RUN_OR_MODEL_DIR [--data PATH] [--episodes 30]
       [--suites train,rephrase,easy,hard] [--val 100] [--threads N] [--json OUT]
       [--precision reference|fp32|int8]
The held-out episodes are the run's validation split (split.json) of its dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.data.episodes import load_dataset  # noqa: E402
from kalm.goals.suites import suite_items  # noqa: E402
from kalm.llm.generate import generate_rollouts  # noqa: E402
from kalm.llm.metrics import (  # noqa: E402
    dynamics_error,
    explanation_accuracy,
    next_action_accuracy,
    rollout_quality,
)
from kalm.llm.train import load_grounded  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--data", default=None)
    p.add_argument("--episodes", type=int, default=30, help="rollouts per suite")
    p.add_argument("--suites", default="train,rephrase,easy,hard", help="'none': no rollouts")
    p.add_argument("--val", type=int, default=100, help="held-out episodes to score (0: skip)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--speed", action="store_true", help="also time generation (batch 1 and 32)")
    p.add_argument("--precision", default=None, choices=["reference", "fp32", "int8"],
                   help="decoding path (default: the library's, int8 on this CPU)")
    p.add_argument("--json", default=None)
    p.add_argument("--explain-constrained", action="store_true",
                   help="also score explanations decoded among the true accounts of each rollout")
    args = p.parse_args()
    if args.precision:
        import os

        os.environ["KALM_LM_PRECISION"] = args.precision
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Path(args.run)
    t = time.perf_counter()
    model = load_grounded(run)
    out: dict = {"load_s": round(time.perf_counter() - t, 1)}
    from kalm.llm.generate import resolve_precision

    out["precision"] = resolve_precision(model)
    print("decoding path", out["precision"], flush=True)
    split_file = next((d / "split.json" for d in (run, run.parent) if (d / "split.json").exists()), None)
    split = json.loads(split_file.read_text()) if split_file else None
    data = args.data or (split["data"] if split else None)
    if data and args.val > 0:
        ds = load_dataset(data)
        idx = split["val"] if split else list(range(len(ds)))
        val = [ds[i] for i in idx[: args.val]]
        out["explanation"] = explanation_accuracy(model, val)
        print("explanation", {k: v for k, v in out["explanation"].items() if k != "examples"}, flush=True)
        if args.explain_constrained:
            out["explanation_constrained"] = explanation_accuracy(model, val, constrained=True)
            print("explanation constrained",
                  {k: v for k, v in out["explanation_constrained"].items() if k != "examples"}, flush=True)
        out["next_action"] = next_action_accuracy(model, val)
        print("next action", out["next_action"], flush=True)
        out["dynamics"] = dynamics_error(model, val)
        print("dynamics", out["dynamics"], flush=True)
    if args.suites != "none":
        items = [it for s in args.suites.split(",") for it in suite_items(s, 0)]
        out["rollouts"] = rollout_quality(model, items, args.episodes, seed=0)
        for cat, m in out["rollouts"]["categories"].items():
            print(f"{cat:<9} match {100 * m['match_rate']:.1f}%  replay {100 * m['replay_success']:.1f}%  "
                  f"(n={m['rollouts']})", flush=True)
        print("distinct actions per rollout", out["rollouts"]["mean_distinct_actions"])
    if args.speed:
        s0 = np.random.default_rng(0).uniform(-0.4, 0.4, (32, 10))
        t = time.perf_counter()
        generate_rollouts(model, ["Put the red ball to the left of the blue ball"], s0[:1], max_steps=50)
        out["latency_50_steps_batch1_s"] = time.perf_counter() - t
        t = time.perf_counter()
        generate_rollouts(model, ["Put the red ball to the left of the blue ball"] * 32, s0, max_steps=50)
        out["rollouts_per_s_batch32_50_steps"] = 32 / (time.perf_counter() - t)
        print("speed", out["latency_50_steps_batch1_s"], out["rollouts_per_s_batch32_50_steps"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
