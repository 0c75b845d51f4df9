"""CLEVR-Robot's colour symmetry (``kalm.envs.clevr.symmetry``): a relabelled episode is one the
simulator would play, its text and goal relabelled with it."""

import numpy as np
import pytest

from kalm.data.collect import collect_dataset
from kalm.data.episodes import load_dataset
from kalm.envs import get_env
from kalm.envs.clevr.symmetry import colour_mentions, recolour, recolour_text

ENV = get_env("clevr")


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    path = tmp_path_factory.mktemp("sym") / "hard.npz"
    collect_dataset(episodes=6, seed=2, out=path, progress=False, suite="hard", noise=0.0)
    return load_dataset(path).episodes


def test_a_relabelled_episode_is_what_the_simulator_plays(episodes):
    sim = ENV.make()
    rng = np.random.default_rng(0)
    for ep in episodes:
        perm = rng.permutation(5)
        text, goal, obs, actions = recolour(ep.text, ep.goal, ep.observations, ep.actions, perm)
        # ball i's track is now in colour perm[i]'s slot, and its pushes follow it
        for i in range(5):
            np.testing.assert_array_equal(obs[:, 2 * perm[i]: 2 * perm[i] + 2],
                                          ep.observations[:, 2 * i: 2 * i + 2])
        assert np.array_equal(actions % 8, ep.actions % 8)
        state = obs[0].astype(np.float64)
        for k, a in enumerate(actions):
            state = ENV.simulate(sim, state, int(a))
            np.testing.assert_allclose(state, obs[k + 1], atol=1e-4)
        g = ENV.goal_from_dict(goal)
        assert g.holds(obs[-1]) == ENV.goal_from_dict(ep.goal).holds(ep.observations[-1])
        parsed = ENV.parse_goal(text)
        assert parsed is not None and parsed.to_dict() == goal


def test_text_and_goal_are_relabelled_together():
    perm = np.array([1, 0, 2, 3, 4])  # red <-> blue
    assert recolour_text("Red ball left of the BLUE ball, not the bluest", perm) == \
        "Blue ball left of the RED ball, not the bluest"
    obs = np.arange(20, dtype=np.float32).reshape(2, 10)
    text, goal, new_obs, actions = recolour(
        "Put the red ball to the left of the blue ball",
        {"kind": "relation", "src": "red", "dst": "blue", "dir": "left"}, obs,
        np.array([3]), perm)
    assert text == "Put the blue ball to the left of the red ball"
    assert goal == {"kind": "relation", "src": "blue", "dst": "red", "dir": "left"}
    np.testing.assert_array_equal(new_obs[:, 0:2], obs[:, 2:4])
    assert actions.tolist() == [1 * 8 + 3]


def test_a_text_that_leaves_a_goal_colour_implicit_is_not_relabelled():
    obs = np.zeros((2, 10), np.float32)
    perm = np.array([1, 2, 3, 4, 0])
    assert recolour("Line the balls up from left to right", {"kind": "line", "order": None},
                    obs, np.array([0]), perm) is None
    assert recolour("Put it to the left of the blue ball",
                    {"kind": "relation", "src": "red", "dst": "blue", "dir": "left"},
                    obs, np.array([0]), perm) is None
    with pytest.raises(ValueError, match="permutation"):
        recolour("red", {"kind": "move", "ball": "red", "dir": "left"}, obs, np.array([0]),
                 np.array([0, 0, 1, 2, 3]))


def test_the_environment_hook_never_returns_the_episode_itself(episodes):
    ep = episodes[0]
    rng = np.random.default_rng(5)
    assert ENV.provides("relabel_episode") and not get_env("metaworld").provides("relabel_episode")
    for _ in range(20):
        text, goal, obs, actions = ENV.relabel_episode(ep.text, ep.goal, ep.observations,
                                                       ep.actions, rng)
        assert not np.array_equal(obs, ep.observations)


def test_colour_mentions_are_the_named_balls_in_reading_order():
    assert colour_mentions("Put the Red ball left of the blue ball; red again") == [0, 1, 0]
    assert colour_mentions("Gather the balls") == []
    assert get_env("clevr").goal_mentions("cyan, then green") == [4, 2]
    assert get_env("metaworld").goal_mentions("press the red button") is None
