"""The evaluation harness and the `evaluate` command."""

import json

import numpy as np
import pytest

from kalm.cli import main
from kalm.evaluate import episode_plan, evaluate, initial_state
from kalm.envs.clevr import ClevrRobotEnv
from kalm.goals.suites import GoalItem, suite_items
from kalm.goals.spec import Move, Relation
from kalm.policy import ExpertPolicy, RandomPolicy


def test_expert_high_random_low_on_train():
    items = suite_items("train", 0)
    ex = evaluate(ExpertPolicy(seed=0), items, episodes=12, seed=0)
    rnd = evaluate(RandomPolicy(seed=0), items, episodes=12, seed=0)
    assert ex.categories["train"]["success_rate"] >= 0.9
    assert rnd.categories["train"]["success_rate"] <= 0.5
    assert ex.categories["train"]["episodes"] == 12
    # same goals and same initial states for both policies
    assert [(e.text, e.reset_seed) for e in ex.episodes] == [(e.text, e.reset_seed) for e in rnd.episodes]
    # successes end early, failures run the full 50 steps
    for e in rnd.episodes:
        assert e.steps == 50 or e.success


def test_move_episodes_are_one_step_and_start_where_goal_fails():
    items = suite_items("easy", 0)
    res = evaluate(RandomPolicy(seed=1), items, episodes=10, seed=3)
    assert all(e.steps == 1 for e in res.episodes)
    env = ClevrRobotEnv()
    g = Relation("red", "blue", "left")
    for s in range(5):
        obs, used = initial_state(env, g, s)
        assert not g.holds(obs)


def test_plan_is_deterministic_and_groups_categories():
    items = suite_items("train", 0)[:5] + suite_items("easy", 0)[:5]
    p1, p2 = episode_plan(items, 7, seed=4), episode_plan(items, 7, seed=4)
    assert p1 == p2
    assert [it.category for it, _ in p1] == ["train"] * 7 + ["easy"] * 7
    assert episode_plan(items, 7, seed=5) != p1


def test_cli_evaluate_json_with_goals_file(tmp_path, capsys):
    goals = tmp_path / "goals.jsonl"
    goals.write_text(
        json.dumps({"text": "push red left", "goal": {"kind": "move", "ball": "red", "dir": "left"},
                    "category": "easy"}) + "\n"
        + json.dumps({"text": "red left of blue", "goal": {"kind": "relation", "src": "red",
                                                          "dst": "blue", "dir": "left"}}) + "\n"
    )
    rc = main(["evaluate", "--policy", "expert", "--goals", str(goals), "--episodes", "3",
               "--seed", "0", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["categories"]) == {"easy", "custom"}
    for m in out["categories"].values():
        assert {"success_rate", "episodes", "stderr"} <= set(m)
        assert m["episodes"] == 3
    assert len(out["episodes"]) == 6


def test_cli_rejects_bad_goals_file_with_line_number(tmp_path, capsys):
    goals = tmp_path / "bad.jsonl"
    goals.write_text('{"text": "ok", "goal": {"kind": "gather", "center": "green"}}\n{"text": "x", "goal": {"kind": "move", "ball": "pink", "dir": "left"}}\n')
    rc = main(["evaluate", "--policy", "random", "--goals", str(goals), "--episodes", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "line 2" in err and "pink" in err


def test_cli_unknown_policy_and_suite(capsys):
    assert main(["evaluate", "--policy", "nope", "--suite", "train", "--episodes", "1"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["evaluate", "--policy", "random", "--suite", "medium", "--episodes", "1"]) == 2
    assert "medium" in capsys.readouterr().err


def test_cli_evaluate_writes_videos(tmp_path, capsys):
    rc = main(["evaluate", "--policy", "expert", "--suite", "easy", "--episodes", "2", "--json",
               "--video", str(tmp_path / "v"), "--video-episodes", "1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    vids = list((tmp_path / "v").glob("*.mp4"))
    assert len(vids) == 1 and vids[0].stat().st_size > 1000
    assert sum("video" in e for e in out["episodes"]) == 1


@pytest.mark.parametrize("mode", ["direct", "aim"])
def test_direct_and_aim_experts_push_the_named_ball_and_succeed(mode):
    from kalm.goals.spec import COLORS

    items = suite_items("train", 0)
    res = evaluate(ExpertPolicy(seed=0, mode=mode), items, episodes=12, seed=0)
    assert res.categories["train"]["success_rate"] >= 0.9
    pushes = [(e.goal["src"], COLORS[a // 8]) for e in res.episodes for a in e.actions]
    assert np.mean([src == ball for src, ball in pushes]) >= 0.8
    with pytest.raises(ValueError, match="mode"):
        ExpertPolicy(mode="lazy")


def test_aim_expert_prefers_the_push_that_lands_nearest_the_target_point():
    """Among pushes that all complete the goal, direct takes the first listed, aim the best placed."""
    from kalm.envs.clevr import ClevrRobotEnv
    from kalm.goals.spec import Relation
    from kalm.policy.expert import _relation_aim

    env = ClevrRobotEnv()
    goal = Relation("red", "blue", "left")
    # red a little too far left of blue and in front of its left side; others in the corners.
    obs = np.array([-0.23, -0.09, 0.2, 0.0, 0.6, 0.6, -0.6, 0.6, 0.6, -0.45], dtype=np.float32)
    experts = {m: ExpertPolicy(seed=0, mode=m, env=env) for m in ("direct", "aim")}
    for e in experts.values():
        e.reset(goal, obs)
    completing = [a for a in range(8) if goal.holds(env.simulate(obs, a))]
    assert not goal.holds(obs) and len(completing) >= 2  # a real choice between completing pushes
    best = min(completing, key=lambda a: _relation_aim(goal, env.simulate(obs, a)))
    assert best != completing[0]
    assert experts["direct"].act(obs) == completing[0]
    assert experts["aim"].act(obs) == best
