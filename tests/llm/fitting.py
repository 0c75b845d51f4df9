"""Shared check for the grounding tests: a few optimizer steps on one batch lower every loss."""

import torch


def assert_every_loss_falls(model, batch, steps: int = 40) -> None:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    with torch.no_grad():
        first = {k: float(v) for k, v in model.losses(batch).items()}
    for _ in range(steps):
        L = model.losses(batch)
        opt.zero_grad()
        sum(L.values()).backward()
        opt.step()
    with torch.no_grad():
        last = {k: float(v) for k, v in model.losses(batch).items()}
    # numeric heads fit fast; text goes through the (zero-initialised) LoRA adapter, slower
    for k, factor in (("state", 0.5), ("action", 0.5), ("text", 0.9)):
        assert last[k] < factor * first[k], (k, first[k], last[k])
