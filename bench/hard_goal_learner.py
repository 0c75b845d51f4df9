"""What limits a policy on CLEVR's hard goals: the amount of data, or what its goal features say?

Trains the reproduction's policy network (``kalm.rl.encoder.RoleTrunk``, 4 roles, its output layer
started as the policy's is) by plain cross-entropy on real data plus expert episodes of the hard
goals (an oracle's data: ``python -m kalm collect --suite hard ...``, or a reproduction's
``oracle/hard.npz``), every fifth hard episode held out, then runs it on the hard suite in the
simulator (50 episodes, evaluation seed 0) and prints, per goal feature:

- teacher-forced accuracy of the expert's pushes on the hard episodes it trained on and on the
  held-out ones;
- success on the hard suite per goal kind (all of 2, all of 3, line, gather) and on the train
  suite.

Goal features: ``spec`` is a one-hot of the goal's structure read from the goal itself, not the
text (an upper bound: what a perfect reading of the text would give), ``lm`` the grounded LM's
reading of the text (``--embedder lm:DIR``, the reproduction's), ``hash`` a hashed bag of words,
``lm+hash`` both; ``NAME+mention`` (or ``+mention:M``) adds which balls the text's first 5 (M) colour words name, in
order, handed to each ball of the network (what ``train --mentions 5`` does). ``--augment K`` adds K colour-relabelled copies of every hard training episode
(``kalm.envs.clevr.symmetry``, what ``train --augment`` does).

No novel-suite wording enters the LM or the embedders; the policies here train on the hard
suite's own texts because they stand for the oracle (expert data of the novel goals).

Usage: python bench/hard_goal_learner.py --hard runs/NAME/oracle/hard.npz --real runs/NAME/data/real.npz
       [--features spec,lm] [--augment 0] [--steps 10000] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kalm.data.episodes import load_dataset  # noqa: E402
from kalm.envs import get_env  # noqa: E402
from kalm.envs.clevr.symmetry import COLORS  # noqa: E402
from kalm.evaluate import evaluate  # noqa: E402
from kalm.rl.encoder import RoleTrunk  # noqa: E402

DIRS = ("left", "right", "front", "behind")
ENV = get_env("clevr")


def spec_vector(goal: dict) -> np.ndarray:
    """[kind: relation/all, line, gather | 3 x (src, dst, dir) one-hots | line order | centre]."""
    v = np.zeros(3 + 3 * 14 + 25 + 5, np.float32)
    if goal["kind"] in ("relation", "all"):
        v[0] = 1
        for i, r in enumerate([goal] if goal["kind"] == "relation" else goal["goals"]):
            o = 3 + 14 * i
            v[o + COLORS.index(r["src"])] = v[o + 5 + COLORS.index(r["dst"])] = 1
            v[o + 10 + DIRS.index(r["dir"])] = 1
    elif goal["kind"] == "line":
        v[1] = 1
        for i, c in enumerate(goal.get("order") or COLORS):
            v[45 + 5 * i + COLORS.index(c)] = 1
    elif goal["kind"] == "gather":
        v[2] = 1
        v[70 + COLORS.index(goal.get("center") or "green")] = 1
    return v / np.linalg.norm(v)


def mention_slots(name: str) -> int:
    """M of a feature name ending in +mention (5) or +mention:M; 0 without."""
    if "+mention" not in name:
        return 0
    return int(name.split("+mention")[1].lstrip(":") or 5)


def featurizer(name: str, lm: str):
    """(texts, goal dicts) -> float32 rows."""
    if name == "spec":
        return lambda texts, goals: np.stack([spec_vector(g) for g in goals])
    if "+mention" in name:  # as MentionEmbedder joins them (train --mentions M)
        from kalm.rl.embed import MentionEmbedder, make_embedder

        base_name = name.split("+mention")[0]
        base = featurizer(base_name, lm)
        block = MentionEmbedder(make_embedder("hash:2"), ENV.goal_mentions, 5,
                                mention_slots(name)).block
        return lambda texts, goals: (np.concatenate(
            [base(texts, goals), np.stack([block(t) for t in texts])], 1)
            / np.sqrt(2)).astype(np.float32)
    from kalm.rl.embed import make_embedder

    parts = {"lm": [f"lm:{lm}"], "hash": ["hash:512"], "lm+hash": [f"lm:{lm}", "hash:512"]}[name]
    embs = [make_embedder(p) for p in parts]
    return lambda texts, goals: (np.concatenate([e.embed(list(texts)) for e in embs], 1)
                                 / np.sqrt(len(embs))).astype(np.float32)


def transitions(episodes):
    S = np.concatenate([ep.observations[:-1] for ep in episodes]).astype(np.float32)
    A = np.concatenate([ep.actions for ep in episodes]).astype(np.int64)
    E = np.concatenate([np.full(ep.length, i) for i, ep in enumerate(episodes)])
    return S, A, E


def kind(goal: dict) -> str:
    return goal["kind"] + (str(len(goal["goals"])) if goal["kind"] == "all" else "")


def run(features: str, real, hard, augment: int, steps: int, episodes: int, lm: str, seed: int) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    held_eps = [ep for i, ep in enumerate(hard) if i % 5 == 0]
    train_eps = [ep for i, ep in enumerate(hard) if i % 5]
    if augment:
        from kalm.rl.train import augment_episodes

        train_eps, _ = augment_episodes(ENV, train_eps, augment, np.random.default_rng(seed + 1))
    feat = featurizer(features, lm)

    def table(eps):
        S, A, E = transitions(eps)
        G = feat([ep.text for ep in eps], [ep.goal for ep in eps])
        return torch.tensor(np.concatenate([S, G[E]], 1)), torch.tensor(A)

    t0 = time.perf_counter()
    Xr, Yr = table(real)
    Xh, Yh = table(train_eps)
    Xv, Yv = table(held_eps)
    dim = Xr.shape[1] - 10
    trunk = RoleTrunk(10, dim, (5, 2, 8), 4, 128, 64, [256, 256],
                      mention_slots=mention_slots(features))
    head = nn.Linear(trunk.score_size + 256, 40)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:, :40] = torch.eye(40)
        head.bias.zero_()
    net = nn.Sequential(trunk, head)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    for _ in range(steps):
        i, j = rng.integers(len(Xr), size=128), rng.integers(len(Xh), size=128)
        loss = nn.functional.cross_entropy(net(torch.cat([Xr[i], Xh[j]])), torch.cat([Yr[i], Yh[j]]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc_train = float((net(Xh).argmax(1) == Yh).float().mean())
        acc_held = float((net(Xv).argmax(1) == Yv).float().mean())
    train_s = time.perf_counter() - t0

    class Policy:
        name = f"bench-{features}"

        def reset(self, goal, obs, text=""):
            self.g = feat([text], [goal.to_dict()])[0]

        def act(self, obs):
            x = torch.tensor(np.concatenate([np.asarray(obs, np.float32), self.g])[None])
            with torch.no_grad():
                return int(net(x).argmax(1))

    res = evaluate(Policy(), ENV.suite_items("hard") + ENV.suite_items("train"), episodes=episodes,
                   seed=0)
    ok, tot = collections.Counter(), collections.Counter()
    for e in res.episodes:
        if e.category == "hard":
            tot[kind(e.goal)] += 1
            ok[kind(e.goal)] += e.success
    return {"features": features, "augment": augment, "hard_train_episodes": len(train_eps),
            "acc_train": round(acc_train, 3), "acc_held": round(acc_held, 3),
            "hard": res.categories["hard"]["success_rate"],
            "train": res.categories["train"]["success_rate"],
            "hard_by_kind": {k: f"{ok[k]}/{tot[k]}" for k in sorted(tot)},
            "train_s": round(train_s, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hard", required=True, help="expert episodes of the hard goals (.npz)")
    ap.add_argument("--real", required=True, help="the real dataset (.npz)")
    ap.add_argument("--features", default="spec,lm", help="comma list of spec, lm, hash, lm+hash, each optionally +mention")
    ap.add_argument("--augment", type=int, default=0, help="relabelled copies per hard episode")
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--episodes", type=int, default=50, help="evaluation episodes per suite")
    ap.add_argument("--lm", default="assets/grounded/clevr", help="grounded model of lm features")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    real = [ep for ep in load_dataset(a.real).episodes if ep.length]
    hard = [ep for ep in load_dataset(a.hard).episodes if ep.length]
    print(f"real: {len(real)} episodes; hard: {len(hard)} ({len(hard) - len(hard[::5])} to train "
          f"on, {len(hard[::5])} held out)", flush=True)
    rows = []
    for name in a.features.split(","):
        row = run(name.strip(), real, hard, a.augment, a.steps, a.episodes, a.lm, a.seed)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
