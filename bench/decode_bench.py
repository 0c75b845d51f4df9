"""How fast the grounded LM writes rollouts and explanations, per decoding path.

For each path (``reference``: the framework's forward with its KV cache, as before the lean
decoder; ``fp32`` and ``int8``: ``kalm.llm.fast``) it prints the time to prepare the weights,
one 50-step rollout at batch 1, rollouts per second at batch 32 (50 steps each, no early stop),
the explanation of one 20-step rollout, and one closed-loop LLM-policy step; and, against the
reference path on the same goals and initial states, how often the greedy rollouts agree.

Usage: python bench/decode_bench.py [--model assets/grounded/clevr] [--threads 2]
       [--paths reference,fp32,int8] [--repeats 3] [--agreement 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.evaluate import initial_state  # noqa: E402
from kalm.goals.suites import suite_items  # noqa: E402
from kalm.llm.generate import (  # noqa: E402
    ActionSession,
    decoder,
    explain_rollouts,
    generate_rollouts,
)
from kalm.llm.train import load_grounded  # noqa: E402

TEXT = "Put the red ball to the left of the blue ball"


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def speed(model, path: str, repeats: int) -> dict:
    t = time.perf_counter()
    decoder(model, path)  # builds (and caches) the prepared weights
    build = time.perf_counter() - t
    s0 = np.random.default_rng(0).uniform(-0.4, 0.4, (32, 10)).astype(np.float32)
    generate_rollouts(model, [TEXT], s0[:1], max_steps=2, precision=path)  # warm
    b1 = _median_time(lambda: generate_rollouts(model, [TEXT], s0[:1], max_steps=50,
                                                precision=path), repeats)
    b32 = _median_time(lambda: generate_rollouts(model, [TEXT] * 32, s0, max_steps=50,
                                                 precision=path), max(1, repeats - 1))
    r = generate_rollouts(model, [TEXT], s0[:1], max_steps=20, precision=path)[0]
    ex = _median_time(lambda: explain_rollouts(model, [r.observations], [r.actions],
                                               precision=path), repeats + 2)

    def episode():
        sess = ActionSession(model, TEXT, precision=path)
        for t in range(10):
            sess.act(s0[t])

    step = _median_time(episode, repeats) / 10
    return {"path": path, "build_s": round(build, 3), "latency_50_steps_batch1_s": round(b1, 3),
            "rollouts_per_s_batch32_50_steps": round(32 / b32, 2),
            "explain_20_steps_s": round(ex, 3), "llm_policy_step_s": round(step, 4)}


def agreement(model, path: str, n: int) -> dict:
    """Greedy rollouts of ``path`` against the reference path, same goals and initial states."""
    from kalm.envs.clevr import ClevrRobotEnv

    items = [it for s in ("rephrase", "hard") for it in suite_items(s, 0)[: n // 2]]
    env = ClevrRobotEnv()
    s0 = np.stack([initial_state(env, it.goal, 1000 + i)[0] for i, it in enumerate(items)])
    env.close()
    texts, goals = [it.text for it in items], [it.goal for it in items]
    ref = generate_rollouts(model, texts, s0, goals, precision="reference")
    got = generate_rollouts(model, texts, s0, goals, precision=path)
    same = [len(a.actions) == len(b.actions) and bool((a.actions == b.actions).all())
            for a, b in zip(ref, got)]
    first_diff = [next((t for t, (x, y) in enumerate(zip(a.actions, b.actions)) if x != y),
                       min(len(a.actions), len(b.actions))) for a, b in zip(ref, got)]
    state_err = [float(np.abs(a.observations[:k + 1] - b.observations[:k + 1]).max())
                 for a, b, k in zip(ref, got, first_diff)]
    return {"path": path, "rollouts": len(items), "identical_rollouts": float(np.mean(same)),
            "match_reference": float(np.mean([r.goal_met for r in ref])),
            "match_path": float(np.mean([r.goal_met for r in got])),
            "max_state_error_before_divergence": max(state_err)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="assets/grounded/clevr")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--paths", default="reference,fp32,int8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--agreement", type=int, default=64, help="rollouts compared (0: skip)")
    p.add_argument("--no-speed", action="store_true", help="only the agreement")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.perf_counter()
    model = load_grounded(args.model)
    out = {"model": args.model, "threads": torch.get_num_threads(),
           "load_s": round(time.perf_counter() - t, 2), "speed": [], "agreement": []}
    for path in ([] if args.no_speed else args.paths.split(",")):
        out["speed"].append(speed(model, path, args.repeats))
        print(json.dumps(out["speed"][-1]), flush=True)
    if args.agreement:
        for path in args.paths.split(","):
            if path != "reference":
                out["agreement"].append(agreement(model, path, args.agreement))
                print(json.dumps(out["agreement"][-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
