"""Physical decoding on CLEVR-Robot: how often its geometric rule fires on real pushes (it must
not), and what re-planning does to imagined rollouts.

    python bench/physical_decoding.py                          # the rule on real data only
    python bench/physical_decoding.py --model assets/grounded/clevr \
        --goals runs/reproduce/goals/rephrase.jsonl --replan 0 3 --out runs/physical

Part 1 applies ``kalm.envs.clevr.validity.implausible_transitions`` to every transition of a
dataset (default the shipped aim expert's 4,000 episodes) and to random pushes from random
resets (contacts, walls, balls shoved into others): the flagged share should be 0. Part 2 runs
``python -m kalm imagine --replan N`` for each N on the same goals and seed and prints the
validity figures side by side, with the generation time and the re-planning counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rule_on_real(data: str, random_episodes: int, seed: int) -> None:
    from kalm.data.episodes import load_dataset
    from kalm.envs.clevr.sim import random_push_transitions
    from kalm.envs.clevr.validity import implausible_transitions

    ds = load_dataset(data)
    S = np.concatenate([e.observations[:-1] for e in ds.episodes])
    N = np.concatenate([e.observations[1:] for e in ds.episodes])
    A = np.concatenate([e.actions for e in ds.episodes])
    flagged = implausible_transitions(S, N, A)
    print(f"{data}: {len(A)} transitions, flagged {int(flagged.sum())} "
          f"({100 * flagged.mean():.2f}%)")
    S, N, A = random_push_transitions(random_episodes * 15, seed)
    flagged = implausible_transitions(S, N, A)
    print(f"random pushes: {len(A)} transitions, flagged {int(flagged.sum())} "
          f"({100 * flagged.mean():.2f}%)")


def imagine_runs(model: str, goals: str, replans: list[int], seed: int, out: Path) -> None:
    rows = []
    for n in replans:
        folder = out / f"replan{n}"
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "kalm", "imagine", "--model", model, "--goals", goals,
                        "--per-goal", "1", "--seed", str(seed), "--out", str(folder),
                        "--no-explain", "--replan", str(n), "--quiet"], check=True, cwd=ROOT)
        s = json.loads((folder / "summary.json").read_text())
        rows.append((n, s["overall"], s["generation"], time.time() - t0))
    keys = [("match_rate", "match"), ("replay_success_rate", "replay"),
            ("realistic_rollout_rate", "all transitions realistic"),
            ("realistic_transition_rate", "realistic transitions"),
            ("out_of_workbench_rate", "off the workbench"), ("overlap_rate", "overlap"),
            ("fully_valid_rate", "fully valid"), ("mean_steps", "mean steps")]
    print("\n| figure | " + " | ".join(f"--replan {n}" for n, *_ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k, label in keys:
        cells = [(f"{100 * o[k]:.1f}%" if k != "mean_steps" else f"{o[k]:.1f}") for _, o, _, _ in rows]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| rollouts/s (generation) | " + " | ".join(f"{g['rollouts_per_s']:.2f}" for _, _, g, _ in rows) + " |")
    for n, _, g, wall in rows:
        print(f"--replan {n}: {g.get('physical', {})}, wall {wall:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "assets/data/aim4k.npz"))
    p.add_argument("--random-episodes", type=int, default=300)
    p.add_argument("--model", default=None, help="a grounded model: also run imagine per --replan")
    p.add_argument("--goals", default=None, help="goals file for imagine (e.g. a reproduce run's)")
    p.add_argument("--replan", type=int, nargs="+", default=[0, 3])
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--out", default="runs/physical")
    a = p.parse_args()
    rule_on_real(a.data, a.random_episodes, 0)
    if a.model:
        if not a.goals:
            p.error("--model needs --goals")
        imagine_runs(a.model, a.goals, a.replan, a.seed, Path(a.out))


if __name__ == "__main__":
    main()
