"""Training runs: a loadable policy the evaluation harness runs, resume, refusals, algorithms."""

import csv
import json

import numpy as np
import pytest

from kalm.evaluate import evaluate
from kalm.goals.suites import suite_items
from kalm.policy import Policy, make_policy
from kalm.rl.config import ALGOS, TrainConfig, canonical_algo
from kalm.rl.policy import TrainedPolicy
from kalm.rl.train import train_policy

TINY = dict(embedder="hash:32", steps=30, steps_per_epoch=10, batch_size=32,
            hidden_units=[32, 32], state_units=16, goal_units=16, target_update_interval=10)


def _cfg(real_path, **kw):
    return TrainConfig(real=str(real_path), **{**TINY, **kw})


def _metrics(out):
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_trained_policy_loads_and_runs_in_the_evaluation_harness(real_path, tmp_path):
    out = tmp_path / "run"
    summary = train_policy(_cfg(real_path, eval_episodes=1), out, progress=False)
    assert summary["state"] == "done" and summary["step"] == 30
    status = json.loads((out / "status.json").read_text())
    assert status["stage"] == "train" and status["state"] == "done" and status["step"] == 30
    assert json.loads((out / "config.json").read_text())["algo"] == "discrete_bc"
    rows = _metrics(out)
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    assert {"loss", "imitation_loss", "steps_per_s", "imagined_fraction"} <= set(rows[0])
    assert all(0.0 <= float(r["eval_success"]) <= 1.0 for r in rows)  # per-epoch simulator check
    data = json.loads((out / "data.json").read_text())
    assert data["real"]["episodes"] == 36 and data["imagined_transitions"] == 0

    policy = make_policy(str(out))
    assert isinstance(policy, TrainedPolicy) and isinstance(policy, Policy)
    items = suite_items("train")[:3]
    res = evaluate(policy, items, episodes=3, seed=0)
    assert res.categories["train"]["episodes"] == 3
    assert all(0 <= a < 40 for e in res.episodes for a in e.actions)
    # greedy and rebuilt from the files alone: same actions on a reload
    again = evaluate(TrainedPolicy.load(out / "policy"), items, episodes=3, seed=0)
    assert [e.actions for e in again.episodes] == [e.actions for e in res.episodes]


def test_interrupted_run_resumes_where_it_stopped(real_path, tmp_path):
    full = tmp_path / "full"
    train_policy(_cfg(real_path), full, progress=False)
    out = tmp_path / "resumed"
    calls = []

    def stop_after_12():
        calls.append(1)
        return len(calls) >= 12

    first = train_policy(_cfg(real_path), out, progress=False, should_stop=stop_after_12)
    assert first["state"] == "stopped" and first["step"] == 12
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["step"] == 12
    second = train_policy(_cfg(real_path), out, progress=False)
    assert second["step"] == 30
    steps = [int(r["step"]) for r in _metrics(out)]
    assert steps == [10, 12, 20, 30]  # continued, not restarted
    # the same batches and updates as the uninterrupted run: identical weights
    from safetensors.numpy import load_file

    a = load_file(str(full / "policy" / "policy.safetensors"))
    b = load_file(str(out / "policy" / "policy.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    # finished: the same command does nothing; more steps train on
    assert "already trained" in train_policy(_cfg(real_path), out, progress=False)["message"]
    assert train_policy(_cfg(real_path, steps=40), out, progress=False)["step"] == 40


def test_a_changed_config_or_data_is_refused_on_resume(real_path, tmp_path):
    out = tmp_path / "run"
    train_policy(_cfg(real_path, steps=10), out, progress=False)
    with pytest.raises(ValueError, match="another config.*lr"):
        train_policy(_cfg(real_path, steps=10, lr=1e-3), out, progress=False)
    # --restart (resume=False) starts over with the new config
    s = train_policy(_cfg(real_path, steps=10, lr=1e-3), out, progress=False, resume=False)
    assert s["step"] == 10 and len(_metrics(out)) == 1


def test_imagined_data_is_mixed_in_at_the_configured_ratio(real_path, imagined_dir, tmp_path):
    out = tmp_path / "run"
    s = train_policy(_cfg(real_path, imagined=[str(imagined_dir)], imagined_ratio=0.25,
                          filter="replay", steps=20), out, progress=False)
    im = s["data"]["imagined"][0]
    assert (im["kept"], im["dropped_nonfinite"], im["dropped_filter"]) == (6, 1, 5)
    assert s["data"]["goal_texts"] == 36 + 6  # imagined rollouts bring their own texts
    fr = [float(r["imagined_fraction"]) for r in _metrics(out)]
    assert np.mean(fr) == pytest.approx(0.25, abs=0.05)


def test_a_filter_that_leaves_nothing_is_an_error(real_path, tmp_path, make_imagined):
    from kalm.data.episodes import load_dataset, save_dataset

    save_dataset(make_imagined(load_dataset(real_path), 2), tmp_path / "im.npz")
    with pytest.raises(ValueError, match="no imagined rollout is left"):
        train_policy(_cfg(real_path, imagined=[str(tmp_path / "im.npz")], filter="realistic"),
                     tmp_path / "run", progress=False)


@pytest.mark.parametrize("algo", ["DiscreteCQL", "double_dqn", "discrete-sac", "NFQ"])
def test_other_discrete_algorithms_train_and_load(real_path, tmp_path, algo):
    out = tmp_path / "run"
    train_policy(_cfg(real_path, algo=algo, steps=4, steps_per_epoch=2), out, progress=False)
    p = TrainedPolicy.load(out)
    items = suite_items("train")[:1]
    p.reset(items[0].goal, np.zeros(10), items[0].text)
    assert 0 <= p.act(np.zeros(10)) < 40


def test_algorithm_registry_names_and_continuous_algorithms_refuse_discrete_data(real_path, tmp_path):
    assert {"discrete_bc", "discrete_cql", "bc", "cql", "iql", "td3_plus_bc"} <= set(ALGOS)
    assert canonical_algo("TD3+BC") == "td3_plus_bc" and canonical_algo("DiscreteBC") == "discrete_bc"
    with pytest.raises(ValueError, match="unknown algorithm"):
        canonical_algo("ppo")
    with pytest.raises(ValueError, match="continuous actions.*discrete_bc"):
        train_policy(_cfg(real_path, algo="CQL", steps=2), tmp_path / "c", progress=False)
    assert json.loads((tmp_path / "c" / "status.json").read_text())["state"] == "failed"


def test_ctrl_c_saves_a_checkpoint_and_the_rerun_continues(real_path, tmp_path):
    out = tmp_path / "run"
    calls = []

    def interrupt_at_7():
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        train_policy(_cfg(real_path, steps=20), out, progress=False, should_stop=interrupt_at_7)
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped" and "rerun" in status["message"]
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["step"] == 7
    assert train_policy(_cfg(real_path, steps=20), out, progress=False)["step"] == 20
    assert [int(r["step"]) for r in _metrics(out)] == [7, 10, 20]


def test_the_last_5_epoch_ends_are_kept_as_loadable_policy_snapshots(real_path, tmp_path):
    from kalm.rl.policy import snapshot_dirs

    out = tmp_path / "run"
    calls = []

    def stop_at_45():
        calls.append(1)
        return len(calls) >= 45

    # 70 steps, an epoch every 10, stopped at 45 and resumed: snapshots survive the stop
    first = train_policy(_cfg(real_path, steps=70), out, progress=False, should_stop=stop_at_45)
    assert first["step"] == 45
    assert [p.name for p in snapshot_dirs(out)] == [f"step-{n}" for n in (10, 20, 30, 40)]
    s = train_policy(_cfg(real_path, steps=70), out, progress=False)
    snaps = snapshot_dirs(out)
    assert [p.name for p in snaps] == [f"step-{n}" for n in (30, 40, 50, 60, 70)]
    assert s["snapshots"] == [str(p) for p in snaps]
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == sorted(p.name for p in snaps)
    items = suite_items("train")[:1]
    steps = []
    for p in snaps:
        pol = TrainedPolicy.load(p)
        assert pol.name.endswith(f"@{p.name[5:]}")
        steps.append(json.loads((p / "policy.json").read_text())["step"])
        pol.reset(items[0].goal, np.zeros(10), items[0].text)
        assert 0 <= pol.act(np.zeros(10)) < 40
    assert steps == [30, 40, 50, 60, 70]
    # the last snapshot is the final policy
    from safetensors.numpy import load_file

    a = load_file(str(out / "policy" / "policy.safetensors"))
    b = load_file(str(snaps[-1] / "policy.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # a restart clears them
    train_policy(_cfg(real_path, steps=10), out, progress=False, resume=False)
    assert [p.name for p in snapshot_dirs(out)] == ["step-10"]


def test_augment_adds_relabelled_copies_of_real_and_imagined_episodes(real_path, imagined_dir,
                                                                       tmp_path):
    from kalm.data.episodes import load_dataset
    from kalm.envs import get_env
    from kalm.rl.train import augment_episodes, prepare_data

    cfg = _cfg(real_path, imagined=[str(imagined_dir)], augment=2).validate()
    data = prepare_data(cfg)
    # 36 real episodes x 2 copies; 11 finite imagined ones x 2
    assert data.info["augmented"] == {"real": 72, "imagined": 22}
    assert data.info["real"]["episodes"] == 36 * 3  # trained on: the source episodes and copies
    real = load_dataset(real_path).episodes
    out, added = augment_episodes(get_env("clevr"), real[:3], 2, np.random.default_rng(0))
    assert added == 6 and out[:3] == real[:3]
    for k, copy in enumerate(out[3:]):
        src = real[k // 2]
        assert copy.text != src.text and copy.info["relabelled"]
        np.testing.assert_array_equal(copy.rewards, src.rewards)
        assert sorted(copy.observations[0].round(6).tolist()) == \
            sorted(src.observations[0].round(6).tolist())
    with pytest.raises(ValueError, match="augment"):
        _cfg(real_path, augment=-1).validate()
    with pytest.raises(ValueError, match="symmetry"):
        TrainConfig(env="metaworld", algo="bc", real="x.npz", augment=2).validate()


def test_mentions_train_and_the_policy_rebuilds_them_on_load(real_path, tmp_path):
    out = tmp_path / "mentions"
    train_policy(_cfg(real_path, arch="roles", mentions=3), out, progress=False)
    data = json.loads((out / "data.json").read_text())
    assert data["goal_dim"] == 32 + 3 * 5 and data["embedder"].endswith("+mentions:3")
    policy = TrainedPolicy.load(out / "policy")
    assert policy.embedder.dim == 47
    items = suite_items("train")[:3]
    a = evaluate(policy, items, episodes=3, seed=0)
    b = evaluate(make_policy(str(out)), items, episodes=3, seed=0)
    assert [e.actions for e in a.episodes] == [e.actions for e in b.episodes]
    with pytest.raises(ValueError, match="mentions"):
        _cfg(real_path, mentions=-1).validate()
    with pytest.raises(ValueError, match="mentions"):
        TrainConfig(env="metaworld", algo="bc", real="x.npz", mentions=2).validate()
