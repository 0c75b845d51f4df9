"""Offline RL on continuous actions (Meta-World): every continuous algorithm trains, resumes, saves
and loads without pickles, acts in the action range, and runs in the CLI and the harness."""

import csv
import json

import numpy as np
import pytest

from kalm.cli import main
from kalm.data.collect import collect_dataset
from kalm.data.episodes import Dataset, Episode, load_dataset, make_meta, save_dataset
from kalm.envs import get_env
from kalm.rl.config import ALGOS, TrainConfig
from kalm.rl.policy import TrainedPolicy
from kalm.rl.train import train_policy

MW = get_env("metaworld")
CONTINUOUS = ["bc", "cql", "iql", "td3_plus_bc", "awac"]
TINY = dict(env="metaworld", embedder="hash:32", steps=4, steps_per_epoch=2, batch_size=16,
            hidden_units=[16, 16], state_units=8, goal_units=8)
TINY_ARGS = ["--embedder", "hash:32", "--steps", "4", "--steps-per-epoch", "2", "--batch-size",
             "16", "--hidden-units", "16", "16", "--state-units", "8", "--goal-units", "8"]


@pytest.fixture(scope="module")
def mw_path(tmp_path_factory):
    """6 expert Meta-World episodes (a few seconds to collect)."""
    path = tmp_path_factory.mktemp("mw-data") / "mw.npz"
    collect_dataset(episodes=6, seed=0, out=path, env="metaworld", progress=False)
    return path


@pytest.fixture(scope="module")
def mw_imagined(mw_path, tmp_path_factory):
    """Imagined look-alikes of the real episodes (their own goal texts)."""
    real = load_dataset(mw_path)
    eps = [Episode(text=f"IMAGINED {i} {ep.text}", goal=ep.goal, category="rephrase", seed=ep.seed,
                   observations=ep.observations, actions=ep.actions, rewards=ep.rewards,
                   rewards_sparse=ep.rewards_sparse, terminals=ep.terminals, success=ep.success,
                   imagined=True, env="metaworld", info={"index": i})
           for i, ep in enumerate(real.episodes[:4])]
    path = tmp_path_factory.mktemp("mw-imagined") / "imagined.npz"
    save_dataset(Dataset(eps, make_meta(kind="imagine", env="metaworld")), path)
    return path


def _cfg(path, **kw):
    return TrainConfig(real=str(path), **{**TINY, **kw})


def _item():
    return MW.suite_items("train")[0]


@pytest.mark.parametrize("algo", CONTINUOUS)
def test_each_continuous_algorithm_trains_loads_and_acts_in_range(mw_path, tmp_path, algo):
    out = tmp_path / algo
    s = train_policy(_cfg(mw_path, algo=algo), out, progress=False)
    assert s["state"] == "done" and s["step"] == 4
    meta = json.loads((out / "policy" / "policy.json").read_text())
    assert (meta["env"], meta["discrete"], meta["action_size"], meta["state_dim"]) == \
        ("metaworld", False, 4, 91)
    assert not list(out.rglob("*.pkl"))
    p = TrainedPolicy.load(out)
    assert p.env == "metaworld"
    item = _item()
    obs = load_dataset(mw_path).episodes[0].observations
    p.reset(item.goal, obs[0], item.text)
    for o in obs[:3]:
        a = p.act(o)
        assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (4,)
        assert np.all(a >= -1.0) and np.all(a <= 1.0)
    batch = p.act_batch(obs[:3], [item.text] * 3)
    assert batch.shape == (3, 4) and batch.dtype == np.float32
    # reloading gives the same greedy actions (no pickles: config.json + safetensors)
    p2 = TrainedPolicy.load(out / "policy")
    p2.reset(item.goal, obs[0], "")  # no text: the goal's training phrasing
    p.reset(item.goal, obs[0], "")
    np.testing.assert_allclose(p.act(obs[1]), p2.act(obs[1]), rtol=1e-6, atol=1e-6)


def test_paper_hyperparameters_reach_d3rlpy(mw_path, tmp_path):
    from kalm.rl.algos import build_algo

    def conf(algo):
        cfg = _cfg(mw_path, algo=algo).validate()
        return build_algo(cfg, 91 + 32, 4, discrete=False).config

    assert conf("cql").conservative_weight == 10.0
    assert conf("td3_plus_bc").alpha == 0.5
    assert conf("awac").lam == 1.0
    assert ALGOS["awac"].d3rlpy_class == "AWAC" and not ALGOS["awac"].discrete


def test_actions_are_clipped_to_the_action_range():
    from kalm.rl.embed import make_embedder

    class Wild:
        def predict(self, x):
            return np.tile(np.array([[5.0, -5.0, 0.25, 1.5]], np.float32), (len(x), 1))

    p = TrainedPolicy(Wild(), make_embedder("hash:8"), env="metaworld")
    item = _item()
    p.reset(item.goal, np.zeros(91), item.text)
    a = p.act(np.zeros(91))
    assert a.dtype == np.float32 and a.tolist() == [1.0, -1.0, 0.25, 1.0]


def test_another_action_range_maps_the_actor_output_into_it(mw_path):
    from kalm.rl.algos import build_algo

    algo = build_algo(_cfg(mw_path, algo="bc").validate(), 91 + 32, 4, discrete=False,
                      action_range=(0.0, 2.0))
    a = algo.predict(np.random.default_rng(0).normal(size=(8, 91 + 32)).astype(np.float32))
    assert a.shape == (8, 4) and a.min() >= 0.0 and a.max() <= 2.0


@pytest.mark.parametrize("algo", ["td3_plus_bc", "awac"])
def test_an_interrupted_continuous_run_resumes_to_the_same_weights(mw_path, tmp_path, algo):
    from safetensors.numpy import load_file

    cfg = dict(algo=algo, steps=6, steps_per_epoch=3)
    train_policy(_cfg(mw_path, **cfg), tmp_path / "full", progress=False)
    calls = []

    def stop_after_4():
        calls.append(1)
        return len(calls) >= 4

    out = tmp_path / "resumed"
    first = train_policy(_cfg(mw_path, **cfg), out, progress=False, should_stop=stop_after_4)
    assert first["state"] == "stopped" and first["step"] == 4
    assert train_policy(_cfg(mw_path, **cfg), out, progress=False)["step"] == 6
    with open(out / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [3, 4, 6]
    a = load_file(str(tmp_path / "full" / "policy" / "policy.safetensors"))
    b = load_file(str(out / "policy" / "policy.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert "already trained" in train_policy(_cfg(mw_path, **cfg), out, progress=False)["message"]


def test_imagined_rollouts_are_mixed_in_at_the_configured_ratio(mw_path, mw_imagined, tmp_path):
    out = tmp_path / "run"
    s = train_policy(_cfg(mw_path, algo="bc", imagined=[str(mw_imagined)], imagined_ratio=0.5,
                          steps=20, steps_per_epoch=10, batch_size=32), out, progress=False)
    assert s["data"]["imagined"][0]["kept"] == 4 and s["data"]["goal_texts"] > 4
    with open(out / "metrics.csv") as f:
        fr = [float(r["imagined_fraction"]) for r in csv.DictReader(f)]
    assert np.mean(fr) == pytest.approx(0.5, abs=0.08)


def test_mismatched_environments_and_algorithms_are_refused(mw_path, tmp_path):
    clevr = tmp_path / "clevr.npz"
    collect_dataset(episodes=2, seed=0, out=clevr, progress=False)
    with pytest.raises(ValueError, match="holds metaworld episodes.*--env metaworld"):
        train_policy(_cfg(mw_path, env="clevr", algo="discrete_bc", state_features="raw"),
                     tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="holds clevr episodes.*--env clevr"):
        train_policy(_cfg(clevr, algo="bc"), tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="needs discrete actions but Meta-World.*bc, cql"):
        train_policy(_cfg(mw_path, algo="discrete_cql"), tmp_path / "c", progress=False)
    assert json.loads((tmp_path / "c" / "status.json").read_text())["state"] == "failed"
    with pytest.raises(ValueError, match="imagined rollouts.*holds clevr episodes"):
        train_policy(_cfg(mw_path, algo="bc", imagined=[str(clevr)]), tmp_path / "d",
                     progress=False)
    with pytest.raises(ValueError, match="pairwise"):
        TrainConfig(real="x.npz", env="metaworld", state_features="pairwise").validate()
    assert TrainConfig(real="x.npz", env="metaworld").validate().state_features == "raw"
    assert TrainConfig(real="x.npz").validate().state_features == "pairwise"  # CLEVR as before
    with pytest.raises(ValueError, match="unknown env"):
        TrainConfig(real="x.npz", env="atari").validate()
    # configs saved before the env option are CLEVR-Robot's
    old = TrainConfig(real="x.npz").validate().to_dict()
    for k in ("env", "td3bc_alpha", "awac_lambda"):
        del old[k]
    assert TrainConfig.from_dict(old).env == "clevr"


def test_cli_trains_then_evaluates_a_metaworld_policy(mw_path, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--env", "metaworld", "--real", str(mw_path), "--algo", "TD3+BC",
            "--out", str(run), *TINY_ARGS, "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["state"] == "done" and summary["step"] == 4
    assert json.loads((run / "config.json").read_text())["env"] == "metaworld"
    assert main(args) == 0 and "already trained" in capsys.readouterr().out  # resumes: done
    assert main(["evaluate", "--env", "metaworld", "--policy", str(run), "--suite", "train",
                 "--episodes", "1", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["categories"]["train"]["episodes"] == 1
    acts = np.array(report["episodes"][0]["actions"])
    assert acts.ndim == 2 and acts.shape[1] == 4 and np.abs(acts).max() <= 1.0
    # a Meta-World policy in CLEVR-Robot, a discrete algorithm on Meta-World: one-line errors
    assert main(["evaluate", "--policy", str(run), "--suite", "train", "--episodes", "1"]) == 2
    assert "trained for metaworld" in capsys.readouterr().err
    assert main(["train", "--env", "metaworld", "--real", str(mw_path), "--algo", "DiscreteBC",
                 "--out", str(tmp_path / "bad"), *TINY_ARGS]) == 2
    assert "needs discrete actions" in capsys.readouterr().err
    assert main(["train", "--real", str(mw_path), "--algo", "bc", "--out", str(tmp_path / "bad2"),
                 *TINY_ARGS]) == 2
    assert "--env metaworld" in capsys.readouterr().err
