"""Shared fixtures of the grounding and decoding tests."""

import pytest
import torch

from kalm.llm.base import tiny_lm
from kalm.llm.config import GroundConfig
from kalm.llm.train import build_model


@pytest.fixture(scope="module")
def grounded():
    lm, tok = tiny_lm(layers=2)
    cfg = GroundConfig(model="tiny", adapter="lora", action_head="geometric",
                       dynamics_head="physics", explain_balls=True, prompt_style="short")
    model = build_model(cfg, lm, tok)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for name, p in model.lm.named_parameters():
            if "lora_B" in name:  # a trained-looking adapter: merging it must matter
                p.data.normal_(0, 0.05)
    return model.eval()
