"""Can a dynamics head express contacts? Each head is fitted alone (no LM: its context is zeros)
on the pushes of a dataset and scored on held-out episodes: the pushed ball's error over all
pushes and over blocked ones (the pushed ball moved less than 0.1: a ball was in its way), and
the share of pushes with some ball off by more than 0.05 (what `imagine` calls unrealistic).

    python bench/dynamics_head_probe.py [--data assets/data/aim4k.npz] [--steps 3000]

Also measures a grounded model's own dynamics on the same held-out pushes with ``--model DIR``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _arrays(eps):
    S = np.concatenate([e.observations[:-1] for e in eps])
    N = np.concatenate([e.observations[1:] for e in eps])
    A = np.concatenate([e.actions for e in eps])
    return S.astype(np.float32), N.astype(np.float32), A.astype(np.int64)


def _score(name: str, S, N, P, A) -> None:
    s, n, p = (x.reshape(-1, 5, 2) for x in (S, N, P))
    rows, b = np.arange(len(A)), A // 8
    moved = np.linalg.norm(n - s, axis=-1)
    blocked = moved[rows, b] < 0.1
    err = np.linalg.norm(p - n, axis=-1)
    print(f"{name}: pushed-ball error {err[rows, b].mean():.4f}, blocked pushes "
          f"({100 * blocked.mean():.1f}%) {err[rows, b][blocked].mean():.4f}, free "
          f"{err[rows, b][~blocked].mean():.4f}; pushes with a ball off by > 0.05: "
          f"{100 * (err.max(1) > 0.05).mean():.1f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "assets/data/aim4k.npz"))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--held-out", type=int, default=400, help="last N episodes are held out")
    p.add_argument("--model", default=None, help="also score this grounded model's dynamics")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from kalm.data.episodes import load_dataset
    from kalm.envs.clevr.codec import ContactHead, PhysicsHead

    eps = load_dataset(a.data).episodes
    tr, te = _arrays(eps[: -a.held_out]), _arrays(eps[-a.held_out:])
    S, N, A = (torch.from_numpy(x) for x in tr)
    mean, std, dstd = S.mean(0), S.std(0), (N - S).std(0)
    St, Nt, At = (torch.from_numpy(x) for x in te)
    for cls in (PhysicsHead, ContactHead):
        torch.manual_seed(0)
        head = cls(16, 256)
        opt = torch.optim.Adam(head.parameters(), 1e-3)
        t0 = time.time()
        for _ in range(a.steps):
            i = torch.randint(0, len(A), (256,))
            pred = head(torch.zeros(256, 16), S[i], A[i], mean, std)
            loss = ((pred - (N[i] - S[i]) / dstd) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            P = St + head(torch.zeros(len(At), 16), St, At, mean, std) * dstd
        _score(f"{cls.__name__} ({a.steps} steps, {time.time() - t0:.0f} s)", *te[:2], P.numpy(), te[2])
    if a.model:
        from kalm.llm.generate import predict_next_states
        from kalm.llm.train import load_grounded

        model = load_grounded(a.model)
        P = np.concatenate([predict_next_states(model, te[0][i:i + 64], te[2][i:i + 64])
                            for i in range(0, len(te[2]), 64)])
        _score(f"grounded model {a.model}", *te[:2], P, te[2])


if __name__ == "__main__":
    main()
