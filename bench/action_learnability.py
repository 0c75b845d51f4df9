"""How learnable is a dataset's next action from (goal, state)? A yardstick for grounding data.

Before spending an hour grounding an LM on a dataset, check how well a small MLP that is *given
the goal spec exactly* (one-hot source, destination, direction) and the state's pairwise
features can predict the expert's push on held-out episodes. If this MLP cannot, the LM, which
must also read the goal from text, will not either: the data, not the LM, is the limit.

Also printed: how often the expert repeats its previous push (what copying scores), and for
relation goals how often its push is the one that lands the source ball nearest a target point
beside the destination ball (a purely geometric rule, ``kalm.policy.expert._relation_aim``).

``--head geometric`` puts the grounded LM's geometric action head (``kalm.llm.codec``) on top of
the MLP instead of 40 plain logits: does that parametrisation express the data's pushes?

Usage: python bench/action_learnability.py DATA.npz [DATA2.npz ...] [--steps 3000] [--seed 0]
       [--head mlp|geometric]
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
from kalm.envs.clevr import COLORS, PUSH_DIRECTIONS  # noqa: E402
from kalm.llm.codec import GeometricActionHead, state_features  # noqa: E402
from kalm.policy.expert import _relation_aim  # noqa: E402

from probe_fit import fit_classifier  # noqa: E402

DIRS = ("left", "right", "front", "behind")
PUSH_LENGTH = 0.142  # one push moves a free ball this far (tests/envs/test_clevr.py)


def goal_onehot(goal: dict) -> np.ndarray:
    v = np.zeros(14, np.float32)
    if goal.get("src") in COLORS:
        v[COLORS.index(goal["src"])] = 1
    if goal.get("dst") in COLORS:
        v[5 + COLORS.index(goal["dst"])] = 1
    if goal.get("dir") in DIRS:
        v[10 + DIRS.index(goal["dir"])] = 1
    return v


def geometric_choice(goal, obs: np.ndarray) -> int:
    """The source-ball push that lands it nearest a target point (free-ball pushes, no contacts)."""
    b = COLORS.index(goal.src)
    best, best_a = np.inf, -1
    for d, v in enumerate(np.asarray(PUSH_DIRECTIONS, dtype=np.float64)):
        o = obs.astype(np.float64).copy()
        o[2 * b: 2 * b + 2] += PUSH_LENGTH * v / np.linalg.norm(v)
        cost = _relation_aim(goal, o)
        if cost < best:
            best, best_a = cost, b * 8 + d
    return best_a


class _GeometricNet(nn.Module):
    """The MLP's last hidden layer feeds the geometric head (plus a plain residual), as in the LM."""

    def __init__(self, d_in: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU())
        self.plain = nn.Linear(256, 40)
        self.geo = GeometricActionHead(256, 256)

    def forward(self, x: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.plain(h) + self.geo(h, obs)


def measure(path: str, steps: int, seed: int, head: str = "mlp") -> dict:
    ds = load_dataset(path)
    X, G, Y, E, first, rep = [], [], [], [], [], []
    geo_hits = geo_n = geo_first_hits = geo_first_n = 0
    for i, ep in enumerate(ds):
        goal = ep.goal_object() if ep.goal.get("kind") == "relation" else None
        for t in range(ep.length):
            X.append(ep.observations[t])
            G.append(goal_onehot(ep.goal))
            Y.append(ep.actions[t])
            E.append(i)
            first.append(t == 0)
            if t:
                rep.append(ep.actions[t] == ep.actions[t - 1])
            if goal is not None:
                hit = geometric_choice(goal, ep.observations[t]) == ep.actions[t]
                geo_n, geo_hits = geo_n + 1, geo_hits + hit
                if t == 0:
                    geo_first_n, geo_first_hits = geo_first_n + 1, geo_first_hits + hit
    X = torch.tensor(np.array(X))
    feats = torch.cat([state_features(X, X.mean(0), X.std(0)), torch.tensor(np.array(G))], 1)
    Y = torch.tensor(np.array(Y))
    E, first = np.array(E), torch.tensor(first)
    val = torch.tensor(E >= int(0.9 * len(ds)))
    torch.manual_seed(seed)
    if head == "geometric":
        gnet = _GeometricNet(feats.shape[1])
        apply = lambda rows: gnet(feats[rows], X[rows])  # noqa: E731
        params = list(gnet.parameters())
    else:
        mlp = nn.Sequential(nn.Linear(feats.shape[1], 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                            nn.Linear(256, 40))
        apply = lambda rows: mlp(feats[rows])  # noqa: E731
        params = list(mlp.parameters())

    def score(logits: torch.Tensor) -> dict:
        hit = logits.argmax(1) == Y[val]
        return {"val_accuracy": round(float(hit.float().mean()), 3),
                "val_first_step_accuracy": round(float(hit[first[val]].float().mean()), 3)}

    best = fit_classifier(apply, params, Y, val, steps, score)  # early stopping on the held-out loss
    return {"data": path, "head": head, "episodes": len(ds), "transitions": len(Y),
            "mlp_given_goal": best,
            "repeat_previous_push": round(float(np.mean(rep)), 3) if rep else None,
            "geometric_rule_match": round(geo_hits / geo_n, 3) if geo_n else None,
            "geometric_rule_first_push_match": round(geo_first_hits / geo_first_n, 3) if geo_first_n else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="+")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head", choices=("mlp", "geometric"), default="mlp")
    args = p.parse_args()
    for path in args.data:
        r = measure(path, args.steps, args.seed, args.head)
        m = r["mlp_given_goal"]
        print(f"{path} [{args.head} head]: {r['episodes']} episodes, {r['transitions']} pushes | MLP given the goal: "
              f"val loss {m['val_loss']}, accuracy {m['val_accuracy']:.1%} "
              f"(first push {m['val_first_step_accuracy']:.1%}) | repeats previous push "
              f"{r['repeat_previous_push']:.1%} | geometric rule agrees {r['geometric_rule_match']} "
              f"(first push {r['geometric_rule_first_push_match']})", flush=True)


if __name__ == "__main__":
    main()
