"""Success rules and rewards of every goal kind on hand-made states, boundaries included."""

import math

import numpy as np
import pytest

from kalm.goals.spec import (
    All,
    Gather,
    GoalSpecError,
    Line,
    Move,
    Relation,
    achieved_relations,
    describes,
    goal_from_dict,
    goal_horizon,
    goal_reward,
)


def state(**balls):
    """10-d observation: named balls where given, the rest parked far apart at y = 0.6."""
    default = {"red": (-0.5, 0.6), "blue": (-0.25, 0.6), "green": (0.0, 0.6),
               "purple": (0.25, 0.6), "cyan": (0.5, 0.6)}
    default.update(balls)
    return np.array([c for name in ("red", "blue", "green", "purple", "cyan") for c in default[name]])


def polar(center, r, deg):
    t = math.radians(deg)
    return (center[0] + r * math.cos(t), center[1] + r * math.sin(t))


@pytest.mark.parametrize("direction,angle", [("right", 0), ("behind", 90), ("left", 180), ("front", 270)])
def test_relation_directions_follow_kalm_convention(direction, angle):
    g = Relation("red", "blue", direction)
    blue = (0.0, 0.0)
    assert g.holds(state(blue=blue, red=polar(blue, 0.3, angle)))
    assert not g.holds(state(blue=blue, red=polar(blue, 0.3, angle + 180)))


def test_relation_boundaries():
    g = Relation("red", "blue", "right")
    blue = (0.0, 0.0)
    assert g.holds(state(blue=blue, red=polar(blue, 0.389, 0)))
    assert not g.holds(state(blue=blue, red=polar(blue, 0.391, 0)))   # too far
    assert g.holds(state(blue=blue, red=polar(blue, 0.3, 44.9)))
    assert g.holds(state(blue=blue, red=polar(blue, 0.3, -44.9)))
    assert not g.holds(state(blue=blue, red=polar(blue, 0.3, 45.2)))  # outside the cone
    assert not g.holds(state(blue=blue, red=polar(blue, 0.3, -45.2)))


def test_move_rule_counts_straight_and_diagonal_pushes_only():
    g = Move("green", "left")
    s0 = state(green=(0.0, 0.0))
    assert g.holds(state(green=(-0.145, 0.0)), s0)
    assert g.holds(state(green=(-0.1025, 0.1025)), s0)    # diagonal push, 45 degrees
    assert g.holds(state(green=(-0.081, 0.0)), s0)
    assert not g.holds(state(green=(-0.079, 0.0)), s0)    # below 0.08
    assert not g.holds(state(green=(0.0, 0.145)), s0)     # perpendicular
    far = 0.145
    assert not g.holds(state(green=polar((0, 0), far, 180 + 51)), s0)  # beyond 50 degrees
    assert g.holds(state(green=polar((0, 0), far, 180 + 49)), s0)
    assert not g.holds(state(green=(-0.145, 0.0), red=(0.3, 0.3)), state(green=(-0.145, 0.0)))
    with pytest.raises(GoalSpecError):
        g.holds(s0)


def test_line_rule():
    row = state(red=(-0.5, 0.1), blue=(-0.25, 0.1), green=(0.0, 0.1), purple=(0.25, 0.1), cyan=(0.5, 0.1))
    assert Line().holds(row)
    assert not Line(("blue", "red", "green", "purple", "cyan")).holds(row)
    # 29 vs 31 degrees between one consecutive pair
    rest = dict(green=(0.0, 0.23), purple=(0.25, 0.23), cyan=(0.5, 0.23))
    tilted_ok = state(red=(-0.5, 0.1), blue=polar((-0.5, 0.1), 0.25, 29), **rest)
    assert Line().holds(tilted_ok)
    tilted_bad = state(red=(-0.5, 0.1), blue=polar((-0.5, 0.1), 0.25, 31), **rest)
    assert not Line().holds(tilted_bad)


def test_gather_rule():
    c = (0.0, 0.2)
    around = dict(green=c, red=polar(c, 0.29, 0), blue=polar(c, 0.29, 90),
                  purple=polar(c, 0.29, 180), cyan=polar(c, 0.324, 270))
    assert Gather("green").holds(state(**around))
    around["cyan"] = polar(c, 0.326, 270)
    assert not Gather("green").holds(state(**around))
    assert not Gather("red").holds(state(**around))


def test_all_rule_and_rewards():
    blue = (0.0, 0.0)
    g = All((Relation("red", "blue", "left"), Relation("green", "blue", "right")))
    s_none = state(blue=blue)
    s_one = state(blue=blue, red=(-0.3, 0.0))
    s_both = state(blue=blue, red=(-0.3, 0.0), green=(0.3, 0.0))
    assert not g.holds(s_one) and g.holds(s_both)
    assert goal_reward(g, s_none, s_one, s_none) == 10.0
    assert goal_reward(g, s_one, s_both, s_none) == 110.0
    assert goal_reward(g, s_one, s_both, s_none, "sparse") == 1.0
    assert goal_reward(g, s_none, s_one, s_none, "sparse") == 0.0


def test_relation_dense_reward_is_progress_toward_target():
    g = Relation("red", "blue", "left")
    s0 = state(blue=(0.3, 0.0), red=(-0.4, 0.0))
    s1 = state(blue=(0.3, 0.0), red=(-0.255, 0.0))
    # target = blue + 0.195 * (-1, 0) = (0.105, 0); distance 0.505 -> 0.36
    assert goal_reward(g, s0, s1, s0) == pytest.approx(10 * 0.145)
    s2 = state(blue=(0.3, 0.0), red=(0.0, 0.0))
    assert goal_reward(g, s1, s2, s0) == pytest.approx(10 * (0.36 - 0.105) + 100)


def test_goal_dict_round_trip_and_errors():
    goals = [Relation("red", "blue", "left"), Move("green", "behind"), Line(), Gather("cyan"),
             All((Relation("red", "blue", "left"), Relation("green", "cyan", "behind")))]
    for g in goals:
        assert goal_from_dict(g.to_dict()) == g
    assert goal_horizon(Move("red", "left")) == 1 and goal_horizon(Line()) == 50
    for bad in [{"kind": "relation", "src": "red", "dst": "red", "dir": "left"},
                {"kind": "relation", "src": "pink", "dst": "red", "dir": "left"},
                {"kind": "move", "ball": "red", "dir": "up"},
                {"kind": "fly"}, {"kind": "relation", "src": "red"},
                {"kind": "all", "goals": [{"kind": "relation", "src": "red", "dst": "blue", "dir": "left"}]},
                {"kind": "line", "order": ["red", "red"]},
                {"kind": "gather", "center": "green", "extra": 1}, "relation"]:
        with pytest.raises(GoalSpecError):
            goal_from_dict(bad)


def test_describes_and_achieved_relations_of_a_rollout():
    start = state(red=(0.6, -0.6))  # red far from every ball; blue-green etc. already related
    one = state(red=(-0.25, 0.3))  # red now just in front of blue only
    assert achieved_relations(start, one) == [Relation("red", "blue", "front")]
    assert describes(Relation("blue", "red", "behind"), start, one)  # the same relation, flipped
    assert not describes(Relation("blue", "green", "left"), start, one)  # held at the start too
    assert not describes(Relation("red", "green", "front"), start, one)  # does not hold at the end
    two = state(red=(-0.125, 0.35))  # in front of blue and of green: an ambiguous rollout
    assert set(achieved_relations(start, two)) == {Relation("red", "blue", "front"),
                                                   Relation("red", "green", "front")}
    assert achieved_relations(start, start) == []
    assert describes(Move("red", "left"), start, state(red=(0.45, -0.6)))
    assert not describes(Move("red", "left"), start, start)
