"""Meta-World's mocap-target dynamics context (``MocapCodec``): it follows the simulator's mocap,
the state head reads it, and training and windowed generation carry it (tiny LM)."""

import json

import numpy as np
import pytest
import torch

from kalm.data.collect import collect_dataset
from kalm.envs import get_env
from kalm.envs.metaworld.codec import ENTITY_SLOTS, MOCAP_OFFSET, MocapCodec
from kalm.envs.metaworld.state import STATE_DIM
from kalm.llm.base import tiny_lm
from kalm.llm.codec import VectorCodec
from kalm.llm.config import PRESETS, GroundConfig
from kalm.llm.generate import generate_rollouts
from kalm.llm.sequences import collate, rollout_sequence
from kalm.llm.train import GroundingData, load_grounded, train_grounding

ENV = get_env("metaworld")


def test_the_context_follows_the_simulators_mocap_target():
    """Replayed over an episode's actions (clipped ones and ones pushing into the mocap's box
    included), the context moves exactly as Meta-World's mocap body does; it starts within the
    reset's offset of it."""
    from kalm.envs.metaworld.sim import MetaWorldSim
    from kalm.envs.metaworld.tasks import TaskGoal

    codec = MocapCodec(16, codec_hidden=16, slots=ENTITY_SLOTS, history=True)
    rng = np.random.default_rng(0)
    sim = MetaWorldSim()
    try:
        for task in ("reach", "door-open", "button-press-wall"):
            o0, _ = sim.reset(seed=3, options={"goal": TaskGoal(task)})
            acts = rng.uniform(-1.6, 1.6, (40, 4)).astype(np.float32)
            acts[:15, 1] = -1.0  # into the box's y floor (0.4): the mocap is clipped there
            mocap = [sim.env.data.mocap_pos[0].copy()]
            for a in acts:
                sim.step(a)
                mocap.append(sim.env.data.mocap_pos[0].copy())
            ctx = codec.context_replay(o0, acts)
            assert ctx.shape == (41, 3)
            err = ctx - np.stack(mocap)
            assert np.abs(err[0]).max() < 0.02, task  # the reset's offset, as estimated
            # every step moves it as the simulator's: the start's error is all there is
            assert np.abs(err - err[0]).max() < 1e-4, task
    finally:
        sim.close()


def test_a_context_head_reads_the_targets_lead_and_tolerates_none():
    torch.manual_seed(0)
    codec = MocapCodec(16, codec_hidden=32, slots=ENTITY_SLOTS, history=True)
    assert codec.design()["dynamics_context"] is True and codec.context_dim == 7
    assert "dynamics_context" not in VectorCodec(16, STATE_DIM, 4, codec_hidden=32).design()
    assert VectorCodec(16, STATE_DIM, 4).context_start(torch.zeros(1, STATE_DIM)) is None
    obs = torch.zeros(2, STATE_DIM)
    obs[:, :3] = torch.tensor([0.0, 0.6, 0.2])
    h, a = torch.randn(2, 16), torch.zeros(2, 4)
    ctx = codec.context_start(obs)
    torch.testing.assert_close(ctx[0], obs[0, :3] + torch.tensor(MOCAP_OFFSET))
    ahead = ctx.clone()
    ahead[:, 0] += 0.05  # the target 5 cm ahead of the hand in x
    f = codec.context_features(obs, a, ahead)
    assert f[0, 6] == 1 and f[0, 0] > f[0, 1] and torch.allclose(f[:, 0], f[:, 3])
    assert not torch.allclose(codec.next_state(h, obs, a, obs, ahead),
                              codec.next_state(h, obs, a, obs, ctx))
    unknown = torch.full_like(ctx, float("nan"))
    torch.testing.assert_close(codec.next_state(h, obs, a, obs),
                               codec.next_state(h, obs, a, obs, unknown))
    assert torch.all(codec.context_features(obs, a, None) == 0)
    # collate carries a window's contexts to its state targets
    rs = rollout_sequence("reach the goal", np.stack([obs[0].numpy()] * 3),
                          np.zeros((2, 4), np.float32), prev=obs[0].numpy(),
                          contexts=np.stack([ctx[0].numpy(), ahead[0].numpy()]))
    b = collate([rs, rollout_sequence("reach", np.stack([obs[0].numpy()] * 2),
                                      np.zeros((1, 4), np.float32))], tiny_lm()[1])
    torch.testing.assert_close(b.st_ctx[:2], torch.stack([ctx[0], ahead[0]]))
    assert torch.isnan(b.st_ctx[2]).all()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("mwctx") / "d.npz"
    collect_dataset(episodes=4, seed=0, out=path, progress=False, env="metaworld")
    return path


def test_grounding_with_a_context_head_trains_saves_and_carries_it_across_windows(data, tmp_path,
                                                                               monkeypatch):
    cfg = GroundConfig(**{**PRESETS["tiny"], **ENV.grounding_defaults, "env": "metaworld",
                          "data": str(data), "steps": 3, "val_fraction": 0.0,
                          "dynamics_history": True, "dynamics_context": True})
    out = tmp_path / "ctx"
    lm, tok = tiny_lm()
    train_grounding(cfg, out, lm=lm, tokenizer=tok, progress=False)
    model = load_grounded(out / "model", *tiny_lm())
    assert isinstance(model.codec, MocapCodec)
    assert json.loads((out / "model" / "grounded.json").read_text())["dynamics_context"] is True
    # training windows carry each step's context, replayed from the episode's start
    from kalm.data.episodes import load_dataset

    ds = load_dataset(data)
    gd = GroundingData.from_dataset(ds.episodes, np.arange(len(ds.episodes)), cfg)
    gd.codec = model.codec
    seq = gd.sample(np.random.default_rng(0), "rollout")
    ctxs = [s.ctx for s in seq if getattr(s, "target", False) and getattr(s, "ctx", None) is not None]
    assert ctxs and all(c.shape == (3,) for c in ctxs)
    # generation: each step's head is given the context its actions so far lead to, across
    # windows (window 5 here: 12 steps are three prompts)
    model.window = 5
    seen = []
    real_next = type(model.codec).next_state

    def spy(self, h, obs, action=None, prev=None, ctx=None):
        if ctx is not None and len(ctx) == 1:
            seen.append(ctx[0].numpy().copy())
        return real_next(self, h, obs, action, prev, ctx)

    monkeypatch.setattr(type(model.codec), "next_state", spy)
    item = ENV.suite_items("easy")[0]
    s0 = ENV.imagine_start(item.goal, 3)[None]
    r = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=12)[0]
    want = model.codec.context_replay(r.observations[0], r.actions)
    assert len(seen) == len(r.actions) == 12
    np.testing.assert_allclose(np.stack(seen), want[:12], atol=1e-6)
    assert not np.allclose(want[0], want[-1])
