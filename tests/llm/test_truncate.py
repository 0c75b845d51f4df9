"""Keeping the first N decoder layers of the base LM (``lm_layers``): a cheaper LM on a CPU."""

import numpy as np
import pytest

from kalm.llm.base import decoder_layers, tiny_lm, truncate_layers
from kalm.llm.config import GroundConfig, PRESETS
from kalm.llm.generate import generate_rollouts
from kalm.llm.train import load_grounded, train_grounding
from kalm.data.collect import collect_dataset


def test_truncate_keeps_the_first_layers_and_still_runs():
    import torch

    lm, _ = tiny_lm(layers=4)
    first = [p.clone() for p in decoder_layers(lm)[0].parameters()]
    truncate_layers(lm, 2)
    assert len(decoder_layers(lm)) == 2 and lm.config.num_hidden_layers == 2
    for a, b in zip(first, decoder_layers(lm)[0].parameters()):
        assert torch.equal(a, b)
    ids = torch.tensor([[5, 6, 7]])
    out = lm(input_ids=ids, output_hidden_states=True)
    assert len(out.hidden_states) == 3  # embeddings + 2 layers
    with pytest.raises(ValueError, match="between 1 and 2"):
        truncate_layers(lm, 3)
    with pytest.raises(ValueError, match="lm_layers"):
        GroundConfig(lm_layers=-1).validate()


def test_a_truncated_grounded_model_trains_saves_and_reloads_truncated(tmp_path):
    data = tmp_path / "d.npz"
    collect_dataset(episodes=8, seed=0, out=data, progress=False)
    lm, tok = tiny_lm(layers=4)
    cfg = GroundConfig(data=str(data), lm_layers=2, **{**PRESETS["tiny"], "steps": 3})
    model = train_grounding(cfg, tmp_path / "run", lm=lm, tokenizer=tok, progress=False)
    assert len(decoder_layers(model.lm)) == 2
    lm2, tok2 = tiny_lm(layers=4)
    loaded = load_grounded(tmp_path / "run", lm=lm2, tokenizer=tok2)  # config.json says 2 layers
    assert len(decoder_layers(loaded.lm)) == 2
    obs = np.random.default_rng(0).uniform(-0.4, 0.4, size=(2, 10)).astype(np.float32)
    r1 = generate_rollouts(model, ["put red left of blue"] * 2, obs, max_steps=3)
    r2 = generate_rollouts(loaded, ["put red left of blue"] * 2, obs, max_steps=3)
    for a, b in zip(r1, r2):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_allclose(a.observations, b.observations, atol=1e-6)
    # continuing it needs the same layer count
    with pytest.raises(ValueError, match="lm_layers"):
        build_model_cfg = GroundConfig(data=str(data), init_from=str(tmp_path / "run"),
                                       **{**PRESETS["tiny"], "steps": 1})
        train_grounding(build_model_cfg, tmp_path / "run2", lm=tiny_lm(layers=4)[0],
                        tokenizer=tok, progress=False)
