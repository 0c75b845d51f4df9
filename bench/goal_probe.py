"""Can a policy read the goal from its goal features? A probe of goal embeddings on CLEVR-Robot.

For each goal embedder, a probe (logistic regression on the features, early-stopped on held-out
training phrasings) learns (source colour, destination colour, direction) of relation goals from
**training phrasings only** (the `train` suite's templates, drawn with several seeds), then reads
them from the `rephrase` suite's 400 unseen phrasings. Printed per embedder: accuracy of each
field and of all three at once on the unseen phrasings, and the cosine similarity of goal pairs
that differ only in swapped colours or in the direction (a policy must tell those apart).

An embedder name may end in ``+mentions:M`` (``train --mentions M``'s features).

Usage: python bench/goal_probe.py [--embedders minilm,hash:256,lm:assets/grounded/clevr]
       [--seeds 6] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.goals.suites import suite_items  # noqa: E402
from kalm.envs import get_env  # noqa: E402
from kalm.rl.embed import make_embedder, with_mentions  # noqa: E402

COLORS = ("red", "blue", "green", "purple", "cyan")
DIRS = ("left", "right", "front", "behind")
SWAPS = [("Put the red ball to the left of the blue ball", "Put the blue ball to the left of the red ball"),
         ("Put the red ball to the left of the blue ball", "Put the red ball to the right of the blue ball"),
         ("Move the green sphere behind the cyan one", "Move the cyan sphere behind the green one"),
         ("Move the green sphere behind the cyan one", "Move the green sphere in front of the cyan one")]


def labels(items) -> np.ndarray:
    return np.array([[COLORS.index(i.goal.src), COLORS.index(i.goal.dst),
                      DIRS.index(i.goal.dir)] for i in items], dtype=np.int64)


def probe(xtr, ytr, xva, yva, xte, yte, steps: int = 1500, seed: int = 0) -> dict:
    """Three softmax heads on standardised features; the step with the best held-out train
    accuracy is kept, and its accuracy on the unseen phrasings reported."""
    torch.manual_seed(seed)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    f = lambda x: torch.as_tensor((x - mu) / sd, dtype=torch.float32)  # noqa: E731
    Xtr, Xva, Xte = f(xtr), f(xva), f(xte)
    Ytr, Yva, Yte = (torch.as_tensor(y) for y in (ytr, yva, yte))
    heads = nn.Linear(Xtr.shape[1], 14)
    opt = torch.optim.Adam(heads.parameters(), lr=1e-2, weight_decay=1e-4)
    split = [(0, 5), (5, 10), (10, 14)]

    def acc(X, Y):
        with torch.no_grad():
            out = heads(X)
            pred = torch.stack([out[:, a:b].argmax(1) for a, b in split], 1)
        ok = pred == Y
        return [float(ok[:, k].float().mean()) for k in range(3)] + [float(ok.all(1).float().mean())]

    best, best_va = None, -1.0
    for step in range(steps):
        out = heads(Xtr)
        loss = sum(nn.functional.cross_entropy(out[:, a:b], Ytr[:, k]) for k, (a, b) in enumerate(split))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 49:
            va = acc(Xva, Yva)[3]
            if va > best_va:
                best_va, best = va, acc(Xte, Yte)
    return {"train_heldout_exact": best_va, "src": best[0], "dst": best[1], "dir": best[2],
            "exact": best[3]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedders", default="minilm,hash:256")
    ap.add_argument("--seeds", type=int, default=6, help="train-suite draws (5 phrasings each)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    train = [i for s in range(args.seeds) for i in suite_items("train", s)]
    texts = list(dict.fromkeys(i.text for i in train))
    by_text = {i.text: i for i in train}
    train = [by_text[t] for t in texts]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(train))
    n_va = len(train) // 5
    va_idx, tr_idx = perm[:n_va], perm[n_va:]
    reph = suite_items("rephrase", 0)
    out = {}
    print(f"{len(texts)} distinct training phrasings ({len(tr_idx)} fit, {n_va} held out); "
          f"{len(reph)} rephrase items", flush=True)
    for name in args.embedders.split(","):
        t0 = time.perf_counter()
        base, _, slots = name.partition("+mentions:")
        emb = make_embedder(base)
        if slots:  # what train --mentions M joins to the embedding (the colour words, in order)
            emb = with_mentions(emb, get_env("clevr"), int(slots))
        Xtrain = emb.embed(texts)
        Xreph = emb.embed([i.text for i in reph])
        ytrain, yreph = labels(train), labels(reph)
        res = probe(Xtrain[tr_idx], ytrain[tr_idx], Xtrain[va_idx], ytrain[va_idx], Xreph, yreph)
        cos = []
        for a, b in SWAPS:
            v = emb.embed([a, b])
            cos.append(float(v[0] @ v[1]))
        res["cosine_swaps"] = cos
        res["dim"] = int(Xtrain.shape[1])
        res["wall_s"] = time.perf_counter() - t0
        out[name] = res
        print(f"{name:<32} dim {res['dim']:4d}  rephrase src {100 * res['src']:5.1f}%  dst "
              f"{100 * res['dst']:5.1f}%  dir {100 * res['dir']:5.1f}%  all three "
              f"{100 * res['exact']:5.1f}%  (held-out train {100 * res['train_heldout_exact']:5.1f}%)"
              f"  cos swapped/opposite {' '.join(f'{c:.3f}' for c in cos)}  {res['wall_s']:.0f} s",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
