"""Validity checks of imagined rollouts: real simulator rollouts, and ones broken on purpose."""

import numpy as np
import pytest

from kalm.envs.clevr import ClevrRobotEnv, encode_action
from kalm.goals.spec import Move, Relation
from kalm.imagine.validity import (
    FAILURE_TYPES,
    OVERLAP_DISTANCE,
    REALISTIC_TOLERANCE,
    RolloutValidity,
    aggregate,
    check_rollout,
    filter_rollouts,
    replay_rollout,
)
from kalm.policy.expert import ExpertPolicy

GOAL = Relation("red", "blue", "left")


@pytest.fixture(scope="module")
def env():
    e = ClevrRobotEnv()
    yield e
    e.close()


def _record(goal, actions_from, seed=0, steps=50):
    """Observations (float32, as datasets store them) and actions of a real episode."""
    env = ClevrRobotEnv()
    obs, _ = env.reset(seed=seed, options={"goal": goal})
    observations, actions = [obs], []
    for t in range(steps):
        a = actions_from(t, obs)
        obs, _, terminated, truncated, _ = env.step(a)
        observations.append(obs)
        actions.append(a)
        if terminated or truncated:
            break
    return np.array(observations), np.array(actions)


@pytest.fixture(scope="module")
def expert_rollout():
    expert = ExpertPolicy(noise=0.0, seed=0)
    env = ClevrRobotEnv()
    s0, _ = env.reset(seed=0, options={"goal": GOAL})
    expert.reset(GOAL, s0)
    obs, acts = _record(GOAL, lambda t, o: expert.act(o), seed=0, steps=15)
    assert GOAL.holds(obs[-1]) and len(acts) >= 2, "the expert should meet this goal"
    return obs, acts


@pytest.fixture(scope="module")
def random_rollout():
    rng = np.random.default_rng(1)
    return _record(None, lambda t, o: int(rng.integers(40)), seed=1, steps=12)


def test_real_expert_rollout_is_fully_valid(env, expert_rollout):
    obs, acts = expert_rollout
    v = check_rollout(env, obs, acts, GOAL)
    assert v.goal_met and v.success_step == len(acts)
    assert v.realistic and v.realistic_transitions == v.transitions == len(acts)
    assert v.dynamics_error_max < 0.01  # the simulator reproduces its own steps
    assert v.replay_success and v.replay_final_error < 0.01
    assert not (v.out_of_workbench or v.overlap or v.absurd)
    assert v.failure_types() == []
    assert v.cycle_consistent is None  # not computed without an explanation


def test_real_random_rollout_is_realistic_and_replay_agrees_with_match(env, random_rollout):
    obs, acts = random_rollout
    for goal in (GOAL, Relation("green", "cyan", "behind")):
        v = check_rollout(env, obs, acts, goal)
        assert v.realistic and v.dynamics_error_max <= REALISTIC_TOLERANCE
        assert not (v.out_of_workbench or v.overlap or v.absurd)
        assert v.replay_success == v.goal_met


def test_replay_rollout_reproduces_the_recording(env, random_rollout):
    obs, acts = random_rollout
    replayed = replay_rollout(env, obs[0], acts)
    assert replayed.shape == obs.shape
    np.testing.assert_allclose(replayed, obs, atol=0.01)


def test_teleporting_ball_is_unrealistic(env, expert_rollout):
    obs, acts = expert_rollout
    bad = obs.copy()
    bad[1, 8] += 0.5  # cyan jumps 0.5 in one state
    v = check_rollout(env, bad, acts, GOAL)
    assert not v.realistic and v.first_unrealistic_step == 0
    assert v.step_errors[0] == pytest.approx(0.5, abs=0.01)
    assert v.transitions - v.realistic_transitions >= 1
    assert "unrealistic_transition" in v.failure_types()
    # the replay in the simulator does not care about the imagined states
    assert v.replay_success


def test_no_push_at_all_is_unrealistic(env, expert_rollout):
    obs, acts = expert_rollout
    frozen = np.repeat(obs[:1], len(obs), axis=0)
    v = check_rollout(env, frozen, acts, GOAL)
    assert v.realistic_transitions == 0 and not v.goal_met
    assert {"unmet_goal", "unrealistic_transition"} <= set(v.failure_types())


def test_out_of_workbench_state_is_flagged(env, expert_rollout):
    obs, acts = expert_rollout
    near = obs.copy()
    near[-1, 0] = 0.61  # within the margin: the walls let a centre reach the edge
    assert not check_rollout(env, near, acts, GOAL).out_of_workbench
    far = obs.copy()
    far[1, 3] = 0.8  # blue behind the back wall (y > 0.7)
    v = check_rollout(env, far, acts, GOAL)
    assert v.out_of_workbench and v.out_of_workbench_states == 1
    assert "out_of_workbench" in v.failure_types()


def test_overlapping_balls_are_flagged(env):
    # red, blue, green, purple, cyan spread over the table, at rest
    spread = np.array([-0.4, 0.0, 0.0, 0.0, 0.4, 0.0, -0.4, 0.5, 0.4, 0.5])
    push = encode_action("cyan", 1)

    def with_blue_at(x):
        s1 = spread.copy()
        s1[2:4] = [x, 0.0]
        return check_rollout(env, np.stack([spread, s1]), np.array([push]), GOAL)

    inside = with_blue_at(-0.4 + OVERLAP_DISTANCE - 0.05)  # blue inside red
    assert inside.overlap and inside.overlap_states == 1 and "overlap" in inside.failure_types()
    assert not with_blue_at(-0.4 + 0.26).overlap  # touching is fine
    assert not with_blue_at(-0.4 + 0.255).overlap  # the simulator's soft contacts squeeze this far


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e3])
def test_nan_and_absurd_values_are_flagged(env, expert_rollout, value):
    obs, acts = expert_rollout
    bad = obs.copy()
    bad[1, 5] = value
    v = check_rollout(env, bad, acts, GOAL)
    assert v.absurd and v.absurd_states == 1 and "absurd" in v.failure_types()
    # transitions into and out of the absurd state are unrealistic and not measured
    assert v.step_errors[0] is None and not v.realistic
    assert not v.out_of_workbench  # an absurd state is counted as absurd only
    d = v.to_dict()
    assert RolloutValidity.from_dict(d) == v


def test_move_goal_is_judged_after_the_single_step(env):
    s0, _ = env.reset(seed=3)
    s0 = s0.astype(np.float64)
    push_right = encode_action("red", 0)
    s1 = env.simulate(s0, push_right)
    v = check_rollout(env, np.stack([s0, s1]), np.array([push_right]), Move("red", "right"))
    assert v.goal_met and v.replay_success and v.realistic
    # met only on the second state: a move goal is not met
    push_left = encode_action("red", 2)
    s1b = env.simulate(s0, push_left)
    s2 = env.simulate(s1b, push_right)
    s3 = env.simulate(s2, push_right)
    acts = np.array([push_left, push_right, push_right])
    v = check_rollout(env, np.stack([s0, s1b, s2, s3]), acts, Move("red", "right"))
    assert v.realistic and not v.goal_met and not v.replay_success


def test_cycle_consistency_from_an_explanation(env, expert_rollout):
    obs, acts = expert_rollout
    text = "Put the blue ball to the right of the red ball"  # the same goal, flipped
    same = check_rollout(env, obs, acts, GOAL, explanation=text)
    assert same.cycle_consistent is True and same.failure_types() == []
    assert same.explanation_true is True
    other = check_rollout(env, obs, acts, GOAL, explanation="put the green ball behind cyan")
    assert other.cycle_consistent is False and other.failure_types() == ["cycle_mismatch"]
    assert other.explanation_true is False  # neither ball moved: nothing about them became true
    garbled = check_rollout(env, obs, acts, GOAL, explanation="!!")
    assert garbled.cycle_consistent is False and garbled.explanation_true is False
    assert check_rollout(env, obs, acts, GOAL).explanation_true is None


def test_rollout_shapes_are_checked(env, expert_rollout):
    obs, acts = expert_rollout
    with pytest.raises(ValueError, match="observations of shape"):
        check_rollout(env, obs[:-1], acts, GOAL)


def test_aggregate_and_filter(env, expert_rollout):
    obs, acts = expert_rollout
    good = check_rollout(env, obs, acts, GOAL, explanation="put red left of blue")
    bad_obs = obs.copy()
    bad_obs[1, 8] += 0.5
    bad_obs[2, 0] = 5.5
    bad = check_rollout(env, bad_obs, acts, GOAL, explanation="line up the balls")
    agg = aggregate([good, bad, good], ["rephrase", "hard", "rephrase"])
    assert list(agg) == ["rephrase", "hard"]
    r, h = agg["rephrase"], agg["hard"]
    assert r["rollouts"] == 2 and r["match_rate"] == 1.0 and r["realistic_transition_rate"] == 1.0
    assert r["cycle_consistency"] == 1.0 and r["out_of_workbench_rate"] == 0.0
    assert r["mean_dynamics_error"] < 0.01 and r["replay_success_rate"] == 1.0
    assert h["absurd_rate"] == 1.0 and h["cycle_consistency"] == 0.0
    assert r["explanation_true_rate"] == 1.0 and h["explanation_true_rate"] == 0.0
    assert 0 < h["realistic_transition_rate"] < 1
    no_cycle = aggregate([check_rollout(env, obs, acts, GOAL)], ["x"])["x"]
    assert no_cycle["cycle_consistency"] is None and no_cycle["explanation_true_rate"] is None
    assert set(FAILURE_TYPES) >= set(bad.failure_types())

    eps = ["good", "bad", "good2"]
    assert filter_rollouts(eps, [good, bad, good]) == ["good", "good2"]
    assert filter_rollouts(eps, [good, bad, good], require=()) == eps
    assert filter_rollouts(eps, [good, bad, good], require=("goal_met",)) == eps
    with pytest.raises(ValueError, match="unknown requirement"):
        filter_rollouts(eps, [good, bad, good], require=("pretty",))
    with pytest.raises(ValueError, match="one category per validity"):
        aggregate([good], [])
