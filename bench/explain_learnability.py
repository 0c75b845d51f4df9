"""How well can any explainer name a relation rollout's goal from its states? A yardstick.

A relation rollout often makes more than one relation true (the source ends beside two balls),
and then its goal cannot be read off the states with certainty. This prints, for a dataset's
successful relation episodes (last 10% held out, as grounding's split):

- ``ambiguous``: the fraction whose rollout made more than one relation true
  (``kalm.goals.spec.achieved_relations``, one per equivalence class: "red left of blue" is
  "blue right of red");
- ``chance_among_achieved``: the exact accuracy of naming one of those relations at random;
- ``mlp``: an MLP that reads the explanation summary the grounded LM gets
  (``kalm.llm.codec.summary_features`` of the first and last state), trained to pick the goal
  among the 40 relation classes: what a learner with exactly that input reaches on held-out
  episodes. ``--restrict`` lets it choose among the achieved relations only.

The grounded LM's own figures (``bench/grounding_bench.py``: explanation accuracy, ``valid``)
read against these.

Usage: python bench/explain_learnability.py DATA.npz [--steps 4000] [--seed 0] [--summary plain|mover]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.data.episodes import load_dataset  # noqa: E402
from kalm.goals.parser import canonical_goal  # noqa: E402
from kalm.goals.spec import COLORS, Relation, achieved_relations, goal_from_dict  # noqa: E402
from kalm.llm.codec import summary_features  # noqa: E402

from probe_fit import fit_classifier  # noqa: E402

# the 40 canonical relation classes: ordered pairs (src, dst) with dir left or front
CLASSES = [Relation(s, d, r) for s in COLORS for d in COLORS if s != d for r in ("left", "front")]
INDEX = {c: i for i, c in enumerate(CLASSES)}


def measure(path: str, steps: int, seed: int, summary: str = "plain", restrict: bool = False) -> dict:
    ds = load_dataset(path)
    first, last, y, masks = [], [], [], []
    for ep in ds:
        if ep.goal.get("kind") != "relation" or not ep.success or ep.length == 0:
            continue
        s0, sT = ep.observations[0], ep.observations[-1]
        first.append(s0)
        last.append(sT)
        y.append(INDEX[canonical_goal(goal_from_dict(ep.goal))])
        m = np.zeros(len(CLASSES), bool)
        for r in achieved_relations(s0, sT):
            m[INDEX[r]] = True
        masks.append(m)
    if len(y) < 20:
        raise SystemExit(f"{path}: only {len(y)} successful relation episodes; need at least 20")
    s0, sT = torch.tensor(np.array(first)), torch.tensor(np.array(last))
    Y, M = torch.tensor(y), torch.tensor(np.array(masks))
    both = torch.cat([s0, sT])
    X = summary_features(sT, s0, both.mean(0), both.std(0), mover=summary == "mover").flatten(1)
    n = len(Y)
    val = torch.arange(n) >= int(0.9 * n)
    achieved_n = M.sum(1).float()
    true_in = M[torch.arange(n), Y]
    chance = torch.where(true_in, 1 / achieved_n.clamp(min=1), torch.zeros(n))

    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(X.shape[1], 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                        nn.Linear(256, len(CLASSES)))

    def logits(rows):
        z = mlp(X[rows])
        return z.masked_fill(~M[rows], -1e4) if restrict else z

    def score(z: torch.Tensor) -> dict:
        pred = z.argmax(1)
        return {"val_accuracy": round(float((pred == Y[val]).float().mean()), 3),
                "val_true_account": round(float(M[val][torch.arange(len(pred)), pred].float().mean()), 3)}

    best = fit_classifier(logits, list(mlp.parameters()), Y, val, steps, score)
    return {"data": path, "summary": summary, "restrict": restrict, "episodes": n,
            "held_out": int(val.sum()),
            "ambiguous": round(float((achieved_n[val] > 1).float().mean()), 3),
            "mean_achieved": round(float(achieved_n[val].mean()), 2),
            "chance_among_achieved": round(float(chance[val].mean()), 3),
            "mlp": best}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="+")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summary", choices=("plain", "mover"), default="plain")
    p.add_argument("--restrict", action="store_true",
                   help="let the MLP choose among the relations the rollout made true only")
    args = p.parse_args()
    for path in args.data:
        r = measure(path, args.steps, args.seed, args.summary, args.restrict)
        m = r["mlp"]
        print(f"{path}: {r['episodes']} relation episodes ({r['held_out']} held out) | ambiguous "
              f"{r['ambiguous']:.1%} (mean {r['mean_achieved']} relations made true) | chance among "
              f"them {r['chance_among_achieved']:.1%} | MLP on the {r['summary']} summary"
              f"{' (restricted)' if r['restrict'] else ''}: accuracy {m['val_accuracy']:.1%}, "
              f"true account {m['val_true_account']:.1%} (val loss {m['val_loss']})", flush=True)


if __name__ == "__main__":
    main()
