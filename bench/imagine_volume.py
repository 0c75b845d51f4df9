"""The paper's imagined-data volume on CLEVR-Robot through `python -m kalm imagine`, timed.

KALM imagined 5,600 rephrase, 72,400 easy and 1,680 hard rollouts. This runs the three CLI
commands below (each with validity checks; explanations off, as the reproduction's imagine
stage) one after the other and prints each one's wall time, rollouts per second and match rate,
and the total. ``--scale 0.1`` runs a tenth of the volume (the per-goal counts scaled) for a
quick estimate.

    python -m kalm imagine --model M --suite rephrase --per-goal 14 --seed 0 --batch-size 32 --no-explain --out OUT/rephrase
    python -m kalm imagine --model M --suite easy --per-goal 724 --seed 0 --batch-size 32 --no-explain --out OUT/easy
    python -m kalm imagine --model M --suite hard --limit 105 --per-goal 16 --seed 0 --batch-size 32 --no-explain --out OUT/hard

Usage: python bench/imagine_volume.py [--model assets/grounded/clevr] [--out runs/volume]
       [--scale 1.0] [--suites rephrase,easy,hard] [--json OUT]
A rerun with the same --out resumes (the CLI's parts); pass --fresh to time from scratch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# suite -> (goal items used, rollouts per goal): 400 x 14, 100 x 724, 105 x 16
VOLUME = {"rephrase": (400, 14), "easy": (100, 724), "hard": (105, 16)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="assets/grounded/clevr")
    p.add_argument("--out", default="runs/volume")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the per-goal counts")
    p.add_argument("--suites", default="rephrase,easy,hard")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--fresh", action="store_true", help="delete earlier parts first")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    results, total_s, total_n = {}, 0.0, 0
    for suite in args.suites.split(","):
        limit, per_goal = VOLUME[suite]
        per_goal = max(1, round(per_goal * args.scale))
        out = Path(args.out) / suite
        if args.fresh and out.exists():
            shutil.rmtree(out)
        cmd = [sys.executable, "-m", "kalm", "imagine", "--model", args.model, "--suite", suite,
               "--limit", str(limit), "--per-goal", str(per_goal), "--seed", "0",
               "--batch-size", str(args.batch_size), "--no-explain", "--quiet", "--out", str(out)]
        print("$", " ".join(cmd[1:]), flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        summary = json.loads((out / "summary.json").read_text())
        n = summary["rollouts"]
        cat = summary["categories"].get(suite, {})
        results[suite] = {"rollouts": n, "wall_s": round(wall, 1), "rollouts_per_s": round(n / wall, 2),
                          "match_rate": cat.get("match_rate"),
                          "replay_success_rate": cat.get("replay_success_rate"),
                          "generation": summary["generation"]}
        total_s += wall
        total_n += n
        print(f"{suite:<9} {n:>6} rollouts in {wall:7.1f} s ({n / wall:6.1f}/s), "
              f"match {cat.get('match_rate')}, replay {cat.get('replay_success_rate')}", flush=True)
    print(f"total     {total_n:>6} rollouts in {total_s:7.1f} s ({total_s / 60:.1f} min)")
    if args.json:
        Path(args.json).write_text(json.dumps({"suites": results, "total_s": round(total_s, 1),
                                               "rollouts": total_n, "scale": args.scale}, indent=2))


if __name__ == "__main__":
    main()
