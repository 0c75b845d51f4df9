"""Physical decoding: generated steps that break the world's geometry are re-planned with the LM's
next best action; CLEVR-Robot's rule flags a ball pushed through another, off-bench states and
overlaps, and never a real push."""

import numpy as np
import pytest

from kalm.envs import get_env
from kalm.envs.clevr.sim import (PUSH_DIRECTIONS, ClevrRobotEnv, encode_action,
                                 random_push_transitions)
from kalm.envs.clevr.validity import check_rollout, implausible_transitions
from kalm.goals.spec import Relation
from kalm.llm.generate import generate_rollouts, physical_replan_available

RIGHT = int(np.argmax(PUSH_DIRECTIONS @ np.array([1.0, 0.0])))


def _scene(red, blue):
    """Red and blue where given, the other three balls far off in the back corners."""
    return np.array([*red, *blue, -0.45, 0.55, 0.0, 0.6, 0.45, 0.55], dtype=np.float64)


def test_a_ball_pushed_through_another_is_flagged_and_a_real_push_is_not():
    s = _scene((0.0, 0.0), (0.3, 0.0))
    through = s.copy()
    through[0] = 0.45                                  # red ends beyond blue, blue did not move
    push = encode_action(0, RIGHT)
    assert implausible_transitions(s[None], through[None], [push]).tolist() == [True]
    # the same push in the simulator: red stops at blue or shoves it; that is not flagged
    real = ClevrRobotEnv().simulate(s, push)
    assert implausible_transitions(s[None], real[None], [push]).tolist() == [False]
    # and the validity checks judge the passing-through rollout unrealistic
    v = check_rollout(ClevrRobotEnv(), np.stack([s, through]), np.array([push]),
                      Relation("red", "blue", "right"))
    assert v.realistic_transitions == 0
    # off the workbench, balls inside each other, absurd numbers
    off, inside, nan = s.copy(), s.copy(), s.copy()
    off[1] = 1.5
    inside[2:4] = (0.05, 0.0)
    nan[4] = np.nan
    other = encode_action(3, RIGHT)  # a ball elsewhere, so no path crosses
    flags = implausible_transitions(np.stack([s] * 3), np.stack([off, inside, nan]), [other] * 3)
    assert flags.tolist() == [True, True, True]


def test_real_pushes_are_never_flagged():
    S, N, A = random_push_transitions(320, seed=0, per_reset=8)
    assert len(A) == 320 and not implausible_transitions(S, N, A).any()


@pytest.mark.parametrize("precision", ["fp32", "reference"])
def test_replanning_avoids_flagged_actions_and_leaves_other_rows_alone(grounded, monkeypatch,
                                                                       precision):
    assert physical_replan_available(grounded)
    texts = ["put red left of blue", "push the green ball", "x y", "put red left of blue"]
    s0 = np.random.default_rng(1).uniform(-0.4, 0.4, (4, 10)).astype(np.float32)
    plain = generate_rollouts(grounded, texts, s0, max_steps=6, precision=precision)
    banned = {int(plain[0].actions[0]), int(plain[0].actions[2])}
    env = get_env("clevr")
    monkeypatch.setattr(type(env), "implausible_steps",
                        lambda self, o, n, a: np.isin(np.asarray(a), list(banned)))
    stats: dict = {}
    got = generate_rollouts(grounded, texts, s0, max_steps=6, precision=precision, replan=3,
                            stats=stats)
    for p, g in zip(plain, got):
        assert not set(g.actions.tolist()) & banned
        if not set(p.actions.tolist()) & banned:  # never flagged: the same rollout as greedy
            assert g.actions.tolist() == p.actions.tolist()
            np.testing.assert_allclose(g.observations, p.observations, atol=1e-5)
    assert stats["implausible_steps"] >= 1 and stats["replans"] >= stats["implausible_steps"]
    assert "unfixed_steps" not in stats
    # the re-planned first step is the LM's second choice for row 0
    assert got[0].actions[0] != plain[0].actions[0]


def test_replanning_gives_up_after_its_tries_and_fast_equals_reference(grounded, monkeypatch):
    env = get_env("clevr")
    monkeypatch.setattr(type(env), "implausible_steps",
                        lambda self, o, n, a: np.ones(len(a), dtype=bool))  # nothing is allowed
    texts = ["put red left of blue", "move green"]
    s0 = np.random.default_rng(2).uniform(-0.4, 0.4, (2, 10)).astype(np.float32)
    stats: dict = {}
    ref = generate_rollouts(grounded, texts, s0, max_steps=3, precision="reference", replan=2)
    got = generate_rollouts(grounded, texts, s0, max_steps=3, precision="fp32", replan=2,
                            stats=stats)
    assert stats["unfixed_steps"] == stats["implausible_steps"] == 6
    assert stats["replans"] == 12
    for a, b in zip(ref, got):
        assert a.actions.tolist() == b.actions.tolist()
        np.testing.assert_allclose(a.observations, b.observations, atol=1e-4)
