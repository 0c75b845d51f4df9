"""Collection with the expert: deterministic, goal-consistent, resumable, suite data."""

from __future__ import annotations

import numpy as np
import pytest

from kalm.data import collect as collect_mod
from kalm.data.collect import CollectError, collect_dataset, load_partial, partial_dir
from kalm.data.episodes import Dataset, load_dataset
from kalm.goals.language import all_phrasings
from kalm.goals.spec import MAX_EPISODE_STEPS, goal_from_dict, goal_reward
from kalm.goals.suites import suite_items

N = 6


def assert_same(a: Dataset, b: Dataset) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.header() == y.header()
        for name in ("observations", "actions", "rewards", "rewards_sparse", "terminals"):
            u, v = getattr(x, name), getattr(y, name)
            assert u.dtype == v.dtype
            np.testing.assert_array_equal(u, v)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("collect")
    a = collect_dataset(N, seed=3, out=folder / "a.npz", progress=False)
    b = collect_dataset(N, seed=3, out=folder / "b.npz", progress=False)
    return folder, a, b


def test_same_arguments_give_the_same_dataset(runs):
    folder, a, b = runs
    assert_same(a, b)
    assert_same(a, load_dataset(folder / "a.npz"))
    assert not partial_dir(folder / "a.npz").exists()
    assert a.meta["config"]["seed"] == 3 and a.meta["kind"] == "collect"
    assert len({ep.seed for ep in a}) == N  # every episode starts from its own reset


def test_episodes_follow_the_goal_rules(runs):
    _, a, _ = runs
    assert sum(ep.success for ep in a) >= N - 1
    for ep in a:
        goal = goal_from_dict(ep.goal)
        obs = ep.observations.astype(np.float64)
        assert ep.category == "train" and ep.goal["kind"] == "relation"
        assert ep.text in all_phrasings(goal, "train")
        assert 1 <= ep.length <= MAX_EPISODE_STEPS
        assert not goal.holds(obs[0], obs[0])  # never a start where the goal already holds
        assert goal.holds(obs[-1], obs[0]) == ep.success
        assert ep.terminals[-1] == ep.success and not ep.terminals[:-1].any()
        assert ep.success or ep.length == MAX_EPISODE_STEPS
        expected_sparse = np.zeros(ep.length, np.float32)
        expected_sparse[-1] = float(ep.success)
        np.testing.assert_array_equal(ep.rewards_sparse, expected_sparse)
        dense = [goal_reward(goal, obs[t], obs[t + 1], obs[0], "dense") for t in range(ep.length)]
        np.testing.assert_allclose(ep.rewards, dense, atol=1e-3)


def test_existing_output_needs_overwrite(runs):
    folder, _, _ = runs
    with pytest.raises(CollectError, match="already exists"):
        collect_dataset(2, seed=3, out=folder / "a.npz", suite="easy", progress=False)


def test_an_interrupted_run_resumes_to_the_same_dataset(runs, tmp_path, monkeypatch):
    _, a, _ = runs
    out = tmp_path / "r.npz"
    real = collect_mod.collect_episode
    played: list[int] = []

    def interrupt_at_3(env, expert, goal, text, category, seed, index):
        if index == 3:
            raise KeyboardInterrupt
        played.append(index)
        return real(env, expert, goal, text, category, seed, index)

    monkeypatch.setattr(collect_mod, "collect_episode", interrupt_at_3)
    with pytest.raises(KeyboardInterrupt):
        collect_dataset(N, seed=3, out=out, chunk=2, progress=False)
    assert not out.exists()
    parts = sorted(p.name for p in partial_dir(out).iterdir())
    # a part every 2 episodes, and the episode collected since the last part saved on interrupt
    assert parts == ["episodes-0000000-0000001.npz", "episodes-0000002-0000002.npz"]
    assert [ep.info["index"] for ep in load_partial(out)] == [0, 1, 2]

    played.clear()

    def count(env, expert, goal, text, category, seed, index):
        played.append(index)
        return real(env, expert, goal, text, category, seed, index)

    monkeypatch.setattr(collect_mod, "collect_episode", count)
    resumed = collect_dataset(N, seed=3, out=out, chunk=2, progress=False)
    assert played == [3, 4, 5]  # nothing already collected is played again
    assert_same(resumed, a)
    assert_same(load_dataset(out), a)
    assert not partial_dir(out).exists()


def test_a_partial_run_with_other_settings_is_not_mixed_in(tmp_path, monkeypatch):
    out = tmp_path / "m.npz"
    real = collect_mod.collect_episode

    def interrupt_at_1(env, expert, goal, text, category, seed, index):
        if index == 1:
            raise KeyboardInterrupt
        return real(env, expert, goal, text, category, seed, index)

    monkeypatch.setattr(collect_mod, "collect_episode", interrupt_at_1)
    with pytest.raises(KeyboardInterrupt):
        collect_dataset(3, seed=0, out=out, suite="easy", progress=False)
    monkeypatch.undo()
    with pytest.raises(CollectError, match="unfinished run"):
        collect_dataset(3, seed=1, out=out, suite="easy", progress=False)
    fresh = collect_dataset(3, seed=1, out=out, suite="easy", progress=False, overwrite=True)
    assert [ep.info["index"] for ep in fresh] == [0, 1, 2]
    assert not partial_dir(out).exists()


def test_easy_suite_gives_one_step_move_episodes(tmp_path):
    ds = collect_dataset(8, seed=0, out=tmp_path / "easy.npz", suite="easy", noise=0.0,
                         progress=False)
    items = suite_items("easy", 0)
    assert [(ep.text, ep.goal) for ep in ds] == [(it.text, it.goal.to_dict()) for it in items[:8]]
    for ep in ds:
        assert ep.length == 1 and ep.category == "easy" and ep.goal["kind"] == "move"
        obs = ep.observations.astype(np.float64)
        assert goal_from_dict(ep.goal).holds(obs[1], obs[0]) == ep.success
    assert sum(ep.success for ep in ds) >= 6


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown goal suite"):
        collect_dataset(1, 0, tmp_path / "x.npz", suite="nope", progress=False)
    with pytest.raises(ValueError, match="style"):
        collect_dataset(1, 0, tmp_path / "x.npz", style="fancy", progress=False)
    with pytest.raises(ValueError, match="episodes"):
        collect_dataset(0, 0, tmp_path / "x.npz", progress=False)
