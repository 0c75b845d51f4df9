"""Success of the scripted expert and of random pushes per suite, through the evaluation harness.

Prints, per policy and suite: success rate +- standard error, episodes, mean episode length,
and for `hard` the breakdown per goal kind; plus wall time. Targets (issue 2): expert >= 95% on
train, rephrase and easy, >= 80% on hard.
Usage: python bench/policy_bench.py [--episodes 200] [--seed 0] [--policies expert,random]
       [--suites train,rephrase,easy,hard] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.evaluate import evaluate  # noqa: E402
from kalm.goals.suites import SUITES, suite_items  # noqa: E402
from kalm.policy import make_policy  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policies", default="expert,random")
    p.add_argument("--suites", default=",".join(SUITES))
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    out: dict = {}
    for pol in args.policies.split(","):
        for suite in args.suites.split(","):
            t = time.perf_counter()
            res = evaluate(make_policy(pol, seed=args.seed), suite_items(suite, args.seed),
                           episodes=args.episodes, seed=args.seed)
            dt = time.perf_counter() - t
            m = res.categories[suite]
            kinds: dict[str, list[bool]] = defaultdict(list)
            for e in res.episodes:
                kinds[e.goal["kind"]].append(e.success)
            by_kind = {k: (sum(v) / len(v), len(v)) for k, v in kinds.items()}
            out[f"{pol}/{suite}"] = {**m, "wall_s": dt, "by_kind": by_kind}
            kind_txt = "  ".join(f"{k} {100 * s:.1f}% (n={n})" for k, (s, n) in by_kind.items())
            print(f"{pol:>7} {suite:<9} success {100 * m['success_rate']:5.1f}% +- "
                  f"{100 * m['stderr']:.1f}  episodes {m['episodes']}  mean length "
                  f"{m['mean_length']:.2f}  wall {dt:.1f} s  [{kind_txt}]", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
