"""The environment interface's contract, checked on every registered environment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kalm.envs import env_names, get_env
from kalm.envs.base import Environment, GoalsFileError

ENVS = env_names()


@pytest.fixture(params=ENVS)
def env(request) -> Environment:
    return get_env(request.param)


def test_registry_finds_clevr_by_default():
    assert get_env().name == "clevr"
    assert get_env("clevr") is get_env(None)
    with pytest.raises(ValueError, match="unknown environment"):
        get_env("atari")


def test_spaces_are_named(env):
    assert env.state.dim == len(env.state.names) > 0
    covered = sorted(i for _, a, b in env.state.groups for i in range(a, b))
    assert covered == sorted(set(covered)) and all(0 <= i < env.state.dim for i in covered)
    assert len(env.action.names) == env.action.size


def test_reset_step_success_and_rewards(env):
    item = env.suite_items("train")[0]
    sim = env.make()
    obs, info = sim.reset(seed=3, options={"goal": item.goal})
    assert obs.shape == (env.state.dim,) and "success" in info
    again, _ = sim.reset(seed=3, options={"goal": item.goal})
    np.testing.assert_array_equal(obs, again)  # seeded resets are deterministic
    expert = env.expert(seed=0, noise=0.0)
    expert.reset(item.goal, sim.get_obs(), item.text)
    states, success = [sim.get_obs()], False
    for _ in range(env.goal_horizon(item.goal)):
        _, _, terminated, truncated, info = sim.step(expert.act(sim.get_obs()))
        states.append(sim.get_obs())
        assert bool(info["success"]) == env.success(item.goal, states[-1], states[0])
        if terminated or truncated:
            success = bool(info["success"])
            break
    assert success, "the expert solves a training goal without noise"
    dense, sparse = env.reward_labels(item.goal, np.stack(states))
    assert dense.shape == sparse.shape == (len(states) - 1,)
    assert sparse[-1] == 1.0 and not sparse[:-1].any()
    sim.close()


def test_set_state_round_trip_and_simulate(env):
    if not env.can_set_state:
        pytest.skip(f"{env.title} cannot be set to a state vector")
    sim = env.make()
    obs, _ = sim.reset(seed=5)
    other, _ = sim.reset(seed=6)
    env.set_state(sim, obs)
    np.testing.assert_allclose(sim.get_obs(), obs, atol=1e-5)
    rng = np.random.default_rng(0)
    nxt = env.simulate(sim, obs, env.action.sample(rng))
    assert nxt.shape == (env.state.dim,) and np.all(np.isfinite(nxt))
    sim.close()


def test_rendering_real_and_imagined_states(env):
    sim = env.make()
    obs, _ = sim.reset(seed=1)
    imagined = obs + 0.05  # a state no simulator produced
    frames = env.episode_frames(np.stack([obs, imagined]), None, width=160, height=128)
    assert len(frames) >= 2
    for f in frames:
        assert f.shape == (128, 160, 3) and f.dtype == np.uint8 and f.std() > 1.0
    assert not np.array_equal(frames[0], frames[-1])
    sim.close()


def test_goal_language_parses_every_suite(env):
    for suite in env.suites:
        items = env.suite_items(suite)
        assert items, suite
        for it in items:
            assert it.category == suite
            parsed = env.parse_goal(it.text)
            assert env.goals_equivalent(parsed, it.goal), (suite, it.text)
            assert env.goals_equivalent(env.goal_from_dict(it.goal.to_dict()), it.goal)
    assert env.parse_goal("sing me a song") is None
    rng = np.random.default_rng(0)
    goal, text = env.sample_goal(rng, "train")
    assert env.goals_equivalent(env.parse_goal(text), goal)


def test_goals_file_round_trip_and_errors(env, tmp_path):
    items = env.suite_items("easy")[:3]
    path = tmp_path / "goals.jsonl"
    path.write_text("".join(json.dumps(it.to_dict()) + "\n" for it in items) + "\n")
    back = env.read_goals_file(path)
    assert [b.text for b in back] == [it.text for it in items]
    path.write_text('{"text": "sing me a song"}\nnot json\n')
    with pytest.raises(GoalsFileError, match="line 1.*\n.*line 2"):
        env.read_goals_file(path)


def test_random_policy_acts_in_the_action_space(env):
    pol = env.random_policy(seed=0)
    obs = np.zeros(env.state.dim)
    a = [pol.act(obs) for _ in range(20)]
    checked = env.action.check(np.array(a))
    assert len(checked) == 20
