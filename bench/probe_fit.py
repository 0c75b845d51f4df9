"""Shared by the learnability yardsticks: fit a classifier with early stopping on held-out rows."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn


def fit_classifier(apply: Callable[[torch.Tensor], torch.Tensor], params, Y: torch.Tensor,
                   val: torch.Tensor, steps: int,
                   score: Callable[[torch.Tensor], dict]) -> dict:
    """Adam (lr 1e-3, batches of 256 training rows) on the cross-entropy of ``apply(rows)`` against
    ``Y[rows]``; every 250 steps the held-out loss (rows where ``val``), and at its best so far
    ``score(held-out logits)``. Returns that best: ``val_loss``, ``step`` and the score's keys."""
    opt = torch.optim.Adam(params, 1e-3)
    idx = torch.where(~val)[0]
    best: dict = {"val_loss": np.inf}
    for step in range(1, steps + 1):
        b = idx[torch.randint(len(idx), (256,))]
        loss = nn.functional.cross_entropy(apply(b), Y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            with torch.no_grad():
                logits = apply(val)
                vl = float(nn.functional.cross_entropy(logits, Y[val]))
            if vl < best["val_loss"]:
                best = {"val_loss": round(vl, 3), **score(logits), "step": step}
    return best
