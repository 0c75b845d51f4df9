"""Shared fixtures of the offline RL tests: a small expert dataset and imagined look-alikes."""

import numpy as np
import pytest

from kalm.data.collect import collect_dataset
from kalm.data.episodes import Dataset, Episode, make_meta, save_dataset
from kalm.imagine.validity import RolloutValidity


@pytest.fixture(autouse=True)
def _embedding_cache(tmp_path, monkeypatch):
    """Embedding caches go to the test's folder, never to ~/.cache."""
    monkeypatch.setenv("KALM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def real_path(tmp_path_factory):
    """36 expert episodes of relation goals (collected once per session)."""
    path = tmp_path_factory.mktemp("rl-data") / "real.npz"
    collect_dataset(episodes=36, seed=3, out=path, progress=False)
    return path


def validity(replay: bool, realistic: bool = True, steps: int = 3) -> dict:
    return RolloutValidity(
        steps=steps, goal_met=True, success_step=steps, transitions=steps,
        realistic_transitions=steps if realistic else 0,
        first_unrealistic_step=None if realistic else 0, dynamics_error_mean=0.01,
        dynamics_error_max=0.02, out_of_workbench_states=0, overlap_states=0, absurd_states=0,
        replay_success=replay, replay_final_error=0.01).to_dict()


def imagined_copy(real: Dataset, n: int, prefix: str = "IMAGINED") -> Dataset:
    """``n`` episodes like the real ones, marked imagined, with their own goal texts; every other
    one fails its open-loop replay, and one holds a NaN state (always dropped)."""
    eps = []
    for i, ep in enumerate(real.episodes[:n]):
        obs = ep.observations.copy()
        if i == n - 1:
            obs[-1, 0] = np.nan
        eps.append(Episode(
            text=f"{prefix} {i} {ep.text}", goal=ep.goal, category="rephrase", seed=ep.seed,
            observations=obs, actions=ep.actions, rewards=ep.rewards,
            rewards_sparse=ep.rewards_sparse, terminals=ep.terminals, success=ep.success,
            imagined=True,
            info={"index": i, "validity": validity(replay=i % 2 == 0, realistic=i % 3 != 0,
                                                   steps=ep.length)}))
    return Dataset(eps, make_meta(kind="imagine"))


@pytest.fixture(scope="session")
def imagined_dir(tmp_path_factory, real_path):
    """An imagine-like run folder holding imagined.npz (12 rollouts)."""
    from kalm.data.episodes import load_dataset

    folder = tmp_path_factory.mktemp("rl-imagined")
    save_dataset(imagined_copy(load_dataset(real_path), 12), folder / "imagined.npz")
    return folder


@pytest.fixture
def make_imagined():
    """The ``imagined_copy`` helper, for tests that build their own imagined sets."""
    return imagined_copy
