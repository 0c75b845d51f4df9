"""The Decision Transformer baseline: episode windows as d3rlpy cuts them, training, acting from
the episode so far, saving and loading, resume, refusals."""

import json

import numpy as np
import pytest

from kalm.data.episodes import load_dataset
from kalm.evaluate import evaluate
from kalm.goals.suites import suite_items
from kalm.rl.config import TrainConfig, canonical_algo
from kalm.rl.data import TrajectorySampler, TransitionTable
from kalm.rl.policy import TrainedPolicy
from kalm.rl.train import dt_target_return, train_policy

TINY_DT = dict(algo="discrete_dt", embedder="hash:32", steps=60, steps_per_epoch=20,
               batch_size=16, hidden_units=[32, 32], state_units=16, goal_units=16,
               context_size=4, dt_layers=1, dt_heads=2, lr=1e-3)


def _cfg(real_path, **kw):
    return TrainConfig(real=str(real_path), **{**TINY_DT, **kw})


def test_windows_are_the_episode_steps_before_a_transition_padded_at_the_front(real_path):
    """Each sampled row is the context steps ending at a transition of one episode, as d3rlpy's
    BasicTrajectorySlicer cuts it: padding (mask 0, zeros) before the episode's first step,
    returns to go summing the episode's rewards from that step, 1-based timesteps."""
    from d3rlpy.dataset import BasicTrajectorySlicer, EpisodeBase  # noqa: F401

    ds = load_dataset(real_path)
    eps = ds.episodes[:6]
    table = TransitionTable.from_episodes(eps, list(range(len(eps))))
    Z = np.eye(len(eps), dtype=np.float32)
    s = TrajectorySampler(table, None, Z, seed=0, context=4)
    starts = np.cumsum([0] + [ep.length for ep in eps])
    for e, ep in enumerate(eps):
        for t in range(ep.length):
            w = s._windows(table, np.array([starts[e] + t]))
            lo = max(0, t - 3)
            n = t - lo + 1
            pad = 4 - n
            assert w["masks"][0].tolist() == [0.0] * pad + [1.0] * n
            np.testing.assert_allclose(w["observations"][0, pad:, :10], ep.observations[lo:t + 1],
                                       rtol=0, atol=1e-6)
            assert np.all(w["observations"][0, pad:, 10:] == Z[e])
            assert np.all(w["observations"][0, :pad] == 0)
            assert w["actions"][0, pad:, 0].tolist() == [float(a) for a in ep.actions[lo:t + 1]]
            rtg = [float(np.sum(ep.rewards[k:])) for k in range(lo, t + 1)]
            np.testing.assert_allclose(w["returns_to_go"][0, pad:, 0], rtg, rtol=1e-5)
            assert w["timesteps"][0].tolist() == [0.0] * pad + [float(k + 1) for k in range(lo, t + 1)]
            last = w["terminals"][0, -1, 0]
            assert last == (1.0 if t == ep.length - 1 and ep.terminals[-1] else 0.0)
    batch = s.sample(8)
    assert batch.observations.shape == (8, 4, 10 + len(eps)) and batch.length == 4
    assert batch.actions.shape == (8, 4, 1) and batch.returns_to_go.shape == (8, 4, 1)


def test_the_target_return_is_the_median_return_of_successful_episodes(real_path):
    ds = load_dataset(real_path)
    table = TransitionTable.from_episodes(ds.episodes, [0] * len(ds.episodes))
    rets = [float(np.sum(ep.rewards)) for ep in ds.episodes if ep.terminals[-1]]
    assert dt_target_return(table) == pytest.approx(float(np.median(rets)), rel=1e-5)


def test_a_decision_transformer_trains_loads_and_acts_in_the_harness(real_path, tmp_path):
    assert canonical_algo("DiscreteDecisionTransformer") == "discrete_dt"
    out = tmp_path / "dt"
    summary = train_policy(_cfg(real_path), out, progress=False)
    assert summary["state"] == "done" and summary["step"] == 60
    import csv

    with open(out / "metrics.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert losses[-1] < losses[0]  # cross-entropy of the expert's next push falls
    meta = json.loads((out / "policy" / "policy.json").read_text())
    assert meta["algo"] == "discrete_dt" and meta["target_return"] > 0
    assert meta["config"]["arch"] == "mlp"  # auto: a DT embeds steps with the MLP
    p = TrainedPolicy.load(out)
    assert p.sequence
    items = suite_items("train")[:2]
    res = evaluate(p, items, episodes=2, seed=0)
    assert sum(m["episodes"] for m in res.categories.values()) == 2
    # reset forgets the episode: the first action from a state is the same after another episode
    obs = load_dataset(real_path).episodes[0].observations[0]
    p.reset(items[0].goal, obs, items[0].text)
    a1 = p.act(obs)
    for later in load_dataset(real_path).episodes[1].observations[:3]:
        p.act(later)
    assert len(p._wrapper._observations) == 4  # the window holds the episode so far
    p.reset(items[0].goal, np.zeros(10), items[0].text)
    assert p.act(obs) == a1 and 0 <= a1 < 40
    with pytest.raises(ValueError, match="one episode at a time"):
        p.act_batch(np.zeros((2, 10)), ["a", "b"])


def test_a_decision_transformer_run_resumes_with_its_learning_rate_clock(real_path, tmp_path):
    out = tmp_path / "dt"
    train_policy(_cfg(real_path, steps=20), out, progress=False)
    tokens = json.loads((out / "checkpoint" / "trainer.json").read_text())["dt_tokens"]
    assert tokens > 0
    summary = train_policy(_cfg(real_path, steps=40), out, progress=False)
    assert summary["step"] == 40
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["dt_tokens"] > tokens


def test_decision_transformer_settings_are_checked(real_path, tmp_path):
    with pytest.raises(ValueError, match="mlp"):
        _cfg(real_path, arch="roles").validate()
    with pytest.raises(ValueError, match="dt_heads"):
        _cfg(real_path, dt_heads=3).validate()
    with pytest.raises(ValueError, match="at least 1"):
        _cfg(real_path, context_size=0).validate()
