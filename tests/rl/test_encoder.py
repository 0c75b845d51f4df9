"""The goal encoder's state features, and policies saved before the state_features option."""

import json

import numpy as np
import pytest
import torch

from kalm.rl.config import TrainConfig
from kalm.rl.encoder import GoalEncoderFactory, pairwise_features, state_feature_dim
from kalm.rl.policy import TrainedPolicy
from kalm.rl.train import train_policy

TINY = dict(embedder="hash:32", steps=6, steps_per_epoch=3, batch_size=16,
            hidden_units=[16], state_units=8, goal_units=8)


def test_pairwise_features_are_offsets_and_distances_of_every_ball_pair():
    s = torch.tensor(np.random.default_rng(0).uniform(-0.5, 0.5, (3, 10)), dtype=torch.float32)
    f = pairwise_features(s)
    assert f.shape == (3, state_feature_dim(10, "pairwise")) == (3, 40)
    assert torch.equal(f[:, :10], s)
    pts = s.view(3, 5, 2)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    off = f[:, 10:30].view(3, 10, 2)
    for k, (i, j) in enumerate(pairs):
        assert torch.allclose(off[:, k], pts[:, j] - pts[:, i])
        assert torch.allclose(f[:, 30 + k], (pts[:, j] - pts[:, i]).norm(dim=1), atol=1e-4)
    assert state_feature_dim(10, "raw") == 10
    with pytest.raises(ValueError, match="state_features"):
        state_feature_dim(10, "polar")


@pytest.mark.parametrize("features", ["raw", "pairwise"])
@pytest.mark.parametrize("fusion", ["concat", "film"])
def test_encoder_keeps_the_flat_observation_layout(features, fusion):
    enc = GoalEncoderFactory(state_units=8, goal_units=8, hidden_units=[16], fusion=fusion,
                             state_features=features).create((10 + 32,))
    assert enc(torch.zeros(4, 42)).shape == (4, 16)
    assert enc.net.state_net[0].in_features == state_feature_dim(10, features)


def test_bad_state_features_are_refused():
    with pytest.raises(ValueError, match="state_features"):
        TrainConfig(real="x.npz", state_features="polar").validate()


def test_a_policy_saved_before_the_option_loads_with_raw_features(real_path, tmp_path):
    out = tmp_path / "old"
    train_policy(TrainConfig(real=str(real_path), state_features="raw", **TINY), out,
                 progress=False)
    meta_path = out / "policy" / "policy.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["state_features"]  # as written before the option existed
    meta_path.write_text(json.dumps(meta))
    cfg = json.loads((out / "config.json").read_text())
    del cfg["state_features"]
    (out / "config.json").write_text(json.dumps(cfg))
    policy = TrainedPolicy.load(out)
    policy.reset(None, np.zeros(10), text="put the red ball left of the blue ball")
    assert 0 <= policy.act(np.zeros(10)) < 40
    # resuming that run with the same options (raw features) is accepted
    summary = train_policy(TrainConfig(real=str(real_path), state_features="raw",
                                       **{**TINY, "steps": 9}), out, progress=False)
    assert summary["step"] == 9
