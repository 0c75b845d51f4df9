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


# ----------------------------------------------------------------- the roles architecture
ROLES = dict(state_dim=10, goal_units=8, hidden_units=[16], arch="roles", entities=[5, 2, 8],
             roles=3, entity_units=8)


def test_role_encoder_scores_every_ball_push_then_global_features():
    enc = GoalEncoderFactory(**ROLES).create((10 + 32,))
    out = enc(torch.randn(4, 42))
    assert out.shape == (4, 40 + 16)


def test_role_encoder_is_equivariant_to_which_ball_is_where():
    """Swapping two balls' positions, and the goal's roles with them, swaps their push scores:
    what is learnt for one ball serves every ball."""
    torch.manual_seed(0)
    enc = GoalEncoderFactory(**ROLES).create((10 + 32,))
    trunk = enc.net
    x = torch.randn(2, 42)
    # Fix the roles to point at ball 0 and ball 1, so the goal's part is the same up to the swap.
    with torch.no_grad():
        trunk.role_logits.weight.zero_()
        trunk.role_logits.bias.copy_(torch.tensor([9.0, 0, 0, 0, 0] + [0, 9.0, 0, 0, 0] + [0.0] * 5))
        a = trunk(x)[:, :40].view(2, 5, 8)
        perm = [1, 0, 2, 3, 4]
        xs = x.clone()
        xs[:, :10] = x[:, :10].view(2, 5, 2)[:, perm].reshape(2, 10)
        trunk.role_logits.bias.copy_(torch.tensor([0, 9.0, 0, 0, 0] + [9.0, 0, 0, 0, 0] + [0.0] * 5))
        b = trunk(xs)[:, :40].view(2, 5, 8)
    torch.testing.assert_close(b[:, perm], a, atol=1e-5, rtol=1e-5)


def test_role_policy_output_layer_starts_as_the_identity_on_the_scores(real_path, tmp_path):
    from kalm.rl.algos import build_algo, algo_modules
    from kalm.rl.encoder import RoleTrunk

    for algo in ("discrete_bc", "discrete_cql"):
        cfg = TrainConfig(real=str(real_path), algo=algo, arch="roles", **TINY).validate()
        a = build_algo(cfg, 10 + 32, 40)
        fcs = [m._fc for mod in algo_modules(a).values() for m in mod.modules()
               if isinstance(getattr(getattr(m, "_encoder", None), "net", None), RoleTrunk)]
        assert fcs
        for fc in fcs:
            assert torch.equal(fc.weight[:, :40], torch.eye(40))
            assert not fc.weight[:, 40:].any() and not fc.bias.any()


def test_role_policy_fits_the_expert_pushes_of_a_tiny_dataset(real_path, tmp_path):
    """BC with the roles network on a few expert episodes reaches their actions."""
    from kalm.data.episodes import load_dataset

    cfg = TrainConfig(real=str(real_path), arch="roles", embedder="hash:32", steps=300,
                      steps_per_epoch=300, batch_size=64, goal_units=32, entity_units=32,
                      hidden_units=[32], lr=3e-3, bc_beta=0.0)
    train_policy(cfg, tmp_path / "roles", progress=False)
    policy = TrainedPolicy.load(tmp_path / "roles")
    ds = load_dataset(real_path)
    hits = total = 0
    for ep in ds.episodes[:12]:
        policy.reset(None, ep.observations[0], text=ep.text)
        for t in range(ep.length):
            hits += int(policy.act(ep.observations[t]) == int(ep.actions[t]))
            total += 1
    assert hits / total >= 0.9, hits / total


def test_roles_need_an_environment_of_entities():
    with pytest.raises(ValueError, match="roles"):
        TrainConfig(real="x.npz", env="metaworld", algo="bc", arch="roles").validate()
    assert TrainConfig(real="x.npz", arch="auto").validate().arch in ("mlp", "roles")


def test_mentions_reach_each_ball_as_its_own_input():
    """With mention_slots the goal's last M x 5 numbers say which mentions name each ball; ball i
    reads its own column, so swapping two balls with their columns swaps their push scores."""
    torch.manual_seed(0)
    m = 2
    enc = GoalEncoderFactory(**ROLES, mention_slots=m).create((10 + 32 + m * 5,))
    trunk = enc.net
    x = torch.randn(2, 10 + 32 + m * 5)
    block = torch.zeros(2, m, 5)
    block[:, 0, 0] = block[:, 1, 1] = 1.0  # mention 1 names ball 0, mention 2 ball 1
    x[:, -m * 5:] = block.reshape(2, -1)
    with torch.no_grad():
        trunk.role_logits.weight.zero_()
        trunk.role_logits.bias.zero_()
        trunk.goal_net[0].weight[:, -m * 5:] = 0.0  # the pooled goal features ignore the block
        a = trunk(x)[:, :40].view(2, 5, 8)
        perm = [1, 0, 2, 3, 4]
        xs = x.clone()
        xs[:, :10] = x[:, :10].view(2, 5, 2)[:, perm].reshape(2, 10)
        xs[:, -m * 5:] = block[:, :, perm].reshape(2, -1)
        b = trunk(xs)[:, :40].view(2, 5, 8)
        # and the columns matter: the same balls without the mentions score differently
        xn = x.clone()
        xn[:, -m * 5:] = 0.0
        c = trunk(xn)[:, :40].view(2, 5, 8)
    torch.testing.assert_close(b[:, perm], a, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(c[:, :2], a[:, :2])
    with pytest.raises(ValueError, match="mention_slots"):
        GoalEncoderFactory(**ROLES, mention_slots=7).create((10 + 32,))
