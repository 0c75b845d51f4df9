"""The structured numeric heads: geometric action head, physics dynamics head, explanation summary."""

import numpy as np
import pytest
import torch

from kalm.envs.clevr import PUSH_DIRECTIONS
from kalm.llm.base import tiny_lm
from kalm.llm.codec import GeometricActionHead, NumericCodec, PhysicsHead, summary_features
from kalm.llm.config import GroundConfig
from kalm.llm.generate import explain_rollouts, generate_rollouts, predict_next_states
from kalm.llm.sequences import (
    collate,
    consequence_sequence,
    dynamics_sequence,
    explain_sequence,
    rollout_sequence,
)
from kalm.llm.train import build_model

from .fitting import assert_every_loss_falls

H = 16


def _set_point(head: GeometricActionHead, alpha, c, kappa_raw=3.0, ball=0) -> None:
    """Make the head ignore h: fixed target weights alpha, offset c, and a preferred ball."""
    if head.pointer:  # logits of a softmax over the balls and "no ball"
        alpha = [20.0 if a > 0.5 else -20.0 for a in alpha] + [-20.0]
    with torch.no_grad():
        last = head.point[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([*alpha, c[0] / 0.3, c[1] / 0.3, kappa_raw]))
        head.ball[-1].weight.zero_()
        bias = torch.full((5,), -5.0)
        bias[ball] = 5.0
        head.ball[-1].bias.copy_(bias)


@pytest.mark.parametrize("pointer", [False, True])
def test_geometric_head_picks_the_push_that_lands_nearest_the_target_point(pointer):
    torch.manual_seed(0)
    head = GeometricActionHead(H, 32, pointer=pointer)
    rng = np.random.default_rng(0)
    dirs = PUSH_DIRECTIONS / np.linalg.norm(PUSH_DIRECTIONS, axis=1, keepdims=True) * 0.145
    for trial in range(20):
        obs = rng.uniform(-0.5, 0.5, size=10).astype(np.float32)
        src, dst = rng.choice(5, size=2, replace=False)
        offset = rng.normal(size=2) * 0.3
        alpha = np.zeros(5)
        alpha[dst] = 1.0
        _set_point(head, alpha, offset, ball=int(src))
        logits = head(torch.randn(1, H), torch.from_numpy(obs)[None])
        a = int(logits.argmax())
        p = obs.reshape(5, 2)
        target = p[dst] + offset
        best = int(np.argmin(np.linalg.norm(p[src] + dirs - target, axis=1)))
        assert a == src * 8 + best, trial
        np.testing.assert_allclose(head.target_point(torch.randn(1, H), torch.from_numpy(obs)[None])[0].detach(),
                                   target, atol=1e-5)
    # log-probabilities: each ball's 8 directions sum to that ball's probability
    probs = logits.softmax(-1).reshape(5, 8).sum(-1)
    assert probs[src] > 0.99


def test_physics_head_depends_on_which_ball_is_pushed():
    torch.manual_seed(0)
    head = PhysicsHead(H, 32)
    obs = torch.rand(1, 10) - 0.5
    h = torch.randn(1, H)
    m, s = torch.zeros(10), torch.ones(10)
    red_left, blue_left = head(h, obs, torch.tensor([2]), m, s), head(h, obs, torch.tensor([8 + 2]), m, s)
    assert red_left.shape == (1, 10)
    assert not torch.allclose(red_left, blue_left)


def test_codec_uses_the_physics_head_only_where_an_action_is_known():
    torch.manual_seed(0)
    codec = NumericCodec(H, codec_hidden=32, dynamics_head="physics")
    h, obs = torch.randn(3, H), torch.rand(3, 10)
    plain = codec.predict_delta(h)
    mixed = codec.predict_delta(h, obs, torch.tensor([5, -1, 12]))
    torch.testing.assert_close(mixed[1], plain[1])
    assert not torch.allclose(mixed[0], plain[0])
    with pytest.raises(ValueError, match="action_head"):
        NumericCodec(H, action_head="arrow")


def test_batch_carries_the_state_of_each_action_and_the_push_of_each_state_target():
    _, tok = tiny_lm()
    obs = np.random.default_rng(1).uniform(-0.5, 0.5, size=(3, 10)).astype(np.float32)
    b = collate([rollout_sequence("put red left of blue", obs, [3, 17]),
                 dynamics_sequence(obs[0], 9, obs[1]),
                 consequence_sequence("put red left of blue", obs[0], obs[2])], tok, 1)
    # actions are chosen in s0 and s1; rollout targets follow pushes 3, 17; dynamics follows 9;
    # the consequence target has no push
    np.testing.assert_allclose(b.at_obs.numpy(), obs[:2])
    assert b.st_action.tolist() == [3, 17, 9, -1]


def test_explanation_summary_positions_follow_the_last_state():
    _, tok = tiny_lm()
    obs = np.random.default_rng(2).uniform(-0.5, 0.5, size=(3, 10)).astype(np.float32)
    plain = collate([explain_sequence("red left", obs, [3, 17])], tok, 1)
    b = collate([explain_sequence("red left", obs, [3, 17], summary=True)], tok, 1)
    assert b.input_ids.shape[1] == plain.input_ids.shape[1] + 5
    last_state = int(b.state_pos[-1])
    assert b.sm_pos.tolist() == [last_state + 1]
    np.testing.assert_allclose(b.sm_final.numpy(), obs[-1:])
    np.testing.assert_allclose(b.sm_initial.numpy(), obs[:1])
    # the text targets moved by the 5 positions
    assert (b.tt_pos - plain.tt_pos).tolist() == [5] * len(plain.tt_pos)
    f = summary_features(torch.from_numpy(obs[-1:]), torch.from_numpy(obs[:1]), torch.zeros(10), torch.ones(10))
    assert f.shape == (1, 5, 34)
    # ball k's own displacement over the rollout
    disp = (obs[-1] - obs[0]).reshape(5, 2) * 2.0
    np.testing.assert_allclose(f[0, :, 7:9].numpy(), disp, atol=1e-6)
    # with the mover block: each ball's offset from the ball that moved furthest, and which one it is
    fm = summary_features(torch.from_numpy(obs[-1:]), torch.from_numpy(obs[:1]), torch.zeros(10),
                          torch.ones(10), mover=True)
    assert fm.shape == (1, 5, 38)
    m = int(np.argmax(np.linalg.norm(disp, axis=1)))
    p = obs[-1].reshape(5, 2)
    np.testing.assert_allclose(fm[0, :, 34:36].numpy(), (p - p[m]) * 2.0, atol=1e-6)
    assert fm[0, :, 37].tolist() == [1.0 if k == m else 0.0 for k in range(5)]


def test_structured_heads_train_generate_and_explain():
    lm, tok = tiny_lm()
    torch.manual_seed(0)
    model = build_model(GroundConfig(action_head="pointer", dynamics_head="physics", explain_balls=True,
                                     summary_features="mover"), lm, tok)
    assert model.codec.geometric is not None and model.codec.physics is not None
    obs = np.random.default_rng(3).uniform(-0.5, 0.5, size=(4, 10)).astype(np.float32)
    batch = collate([rollout_sequence("put red left of blue", obs, [3, 17, 25]),
                     dynamics_sequence(obs[0], 3, obs[1]),
                     consequence_sequence("put red left of blue", obs[0], obs[3]),
                     explain_sequence("put red left of blue", obs, [3, 17, 25], summary=True)], tok, 1)
    assert_every_loss_falls(model, batch)
    r = generate_rollouts(model, ["put red left of blue"], obs[:1], max_steps=3)[0]
    assert len(r.actions) == 3 and np.isfinite(r.observations).all()
    assert predict_next_states(model, obs[:2], np.array([3, 9])).shape == (2, 10)
    assert len(explain_rollouts(model, [r.observations], [r.actions], max_new_tokens=3)) == 1


def test_configs_saved_before_the_structured_heads_load_with_the_plain_ones():
    old = GroundConfig().to_dict()
    for k in ("action_head", "dynamics_head", "explain_balls", "summary_features"):
        old.pop(k)
    cfg = GroundConfig.from_dict(old)
    assert (cfg.action_head, cfg.dynamics_head, cfg.explain_balls, cfg.summary_features) == (
        "mlp", "mlp", False, "plain")
    with pytest.raises(ValueError, match="dynamics_head"):
        GroundConfig(dynamics_head="newton").validate()


def test_contact_head_lets_the_pushed_ball_see_the_ball_in_its_way():
    """The per-ball physics head predicts the pushed ball's move from that ball alone; the contact
    head also reads the other balls, so a ball in its path changes its predicted move."""
    from kalm.envs.clevr.codec import ContactHead

    torch.manual_seed(0)
    right = int(np.argmax(PUSH_DIRECTIONS @ np.array([1.0, 0.0])))
    free = torch.tensor([[0.0, 0.0, -0.5, 0.5, 0.5, 0.5, -0.5, -0.2, 0.5, -0.2]])
    blocked = free.clone()
    blocked[0, 2:4] = torch.tensor([0.27, 0.0])  # blue right in red's way
    h, m, s = torch.randn(1, H), torch.zeros(10), torch.ones(10)
    a = torch.tensor([right])  # push red (ball 0) right
    phys, cont = PhysicsHead(H, 32), ContactHead(H, 32)
    torch.testing.assert_close(phys(h, free, a, m, s)[0, :2], phys(h, blocked, a, m, s)[0, :2])
    assert not torch.allclose(cont(h, free, a, m, s)[0, :2], cont(h, blocked, a, m, s)[0, :2])
    # a codec and a grounded model with it: every loss falls
    codec = NumericCodec(H, codec_hidden=32, dynamics_head="contact")
    assert isinstance(codec.physics, ContactHead)
    lm, tok = tiny_lm()
    model = build_model(GroundConfig(dynamics_head="contact"), lm, tok)
    obs = np.random.default_rng(4).uniform(-0.5, 0.5, size=(4, 10)).astype(np.float32)
    batch = collate([rollout_sequence("put red left of blue", obs, [3, 17, 25]),
                     dynamics_sequence(obs[0], 3, obs[1]),
                     explain_sequence("put red left of blue", obs, [3, 17, 25], summary=True)],
                    tok, 1)
    assert_every_loss_falls(model, batch)
    with pytest.raises(ValueError, match="dynamics_head"):
        GroundConfig(dynamics_head="magic").validate()
