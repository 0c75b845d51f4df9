"""kalm.ui: path confinement, discovery, filters, plots and in-memory imagination."""

import os

import numpy as np
import pandas as pd
import pytest

from kalm.data.episodes import load_dataset
from kalm.envs.clevr import ClevrRobotEnv, encode_action
from kalm.goals.spec import Move, Relation
from kalm.ui import paths
from kalm.ui.episodes import filter_episodes
from kalm.ui.imagine import GoalTextProblem, check_goal_text, imagine_one, validity_checks
from kalm.ui.plots import BALL_HEX, actions_figure, positions_figure, topview_figure
from kalm.ui.report import filter_rollouts_table, load_imagined_set, worst_rollouts


def test_confine_accepts_runs_and_assets_only(runs_dir, tmp_path):
    assert paths.confine("assets/data/relation4k.npz") == paths.DEFAULT_DATASET.resolve()
    assert paths.confine(str(runs_dir / "x" / "y.npz")) == (runs_dir / "x" / "y.npz").resolve()
    link = runs_dir / "escape"
    os.symlink(tmp_path, link)  # a symlink out of the runs folder is resolved, then refused
    for bad in ("", "  ", "/etc/passwd", "assets/../pages/data.py", str(link / "f.npz"),
                "~/.ssh/id_rsa", "a\x00b"):
        with pytest.raises(paths.PathNotAllowed):
            paths.confine(bad)


def test_discovery_finds_datasets_models_and_imagined_sets(runs_dir):
    unfinished = runs_dir / "collect-tiny" / "more.npz.partial"
    unfinished.mkdir()
    (unfinished / "chunk-000.npz").write_bytes(b"")
    ds = [f.label for f in paths.find_datasets()]
    assert not any(".partial" in d for d in ds)
    assert ds[:4] == ["assets/data/aim4k.npz", "assets/data/direct4k.npz", "assets/data/metaworld1k.npz",
                      "assets/data/relation4k.npz"]
    assert "runs/collect-tiny/data.npz" in ds and "runs/imagine-tiny/imagined.npz" in ds
    assert not any("parts" in d for d in ds)
    models = paths.find_grounded_models()
    assert [m.label for m in models][:4] == ["assets/grounded/clevr", "assets/grounded/clevr_contact",
                                             "assets/grounded/metaworld",
                                             "assets/grounded/metaworld_history"]
    tiny = next(m for m in models if m.label == "runs/tiny-ground")
    assert (tiny.path / "grounded.json").is_file()
    shipped = sorted(f"assets/imagined/{p.name}" for p in (paths.ASSETS_DIR / "imagined").iterdir()
                     if p.is_dir())
    assert shipped == ["assets/imagined/easy", "assets/imagined/rephrase",
                       "assets/imagined/rephrase_guided"]
    assert [f.label for f in paths.find_imagined_sets()] == ["runs/imagine-tiny", *shipped]


def test_episode_filters(runs_dir):
    ds = load_dataset(runs_dir / "collect-tiny" / "data.npz")
    assert filter_episodes(ds) == list(range(len(ds)))
    assert filter_episodes(ds, kinds=["gather"]) == []
    ok = filter_episodes(ds, outcome="success")
    assert ok == [i for i, e in enumerate(ds) if e.success]
    word = ds[0].text.split()[-2]
    assert 0 in filter_episodes(ds, text=word.upper())
    with pytest.raises(ValueError):
        filter_episodes(ds, outcome="maybe")


def test_report_filters_and_worst_order():
    t = pd.DataFrame({
        "category": ["a", "a", "b", "b"],
        "failure_types": [[], ["unmet_goal"], ["unmet_goal", "overlap"], ["absurd"]],
        "dynamics_error_max": [0.01, 0.2, 0.05, np.nan],
        "absurd_states": [0, 0, 0, 2],
    })
    assert len(filter_rollouts_table(t)) == 4
    assert list(filter_rollouts_table(t, ["unmet_goal"]).index) == [1, 2]
    assert list(filter_rollouts_table(t, ["unmet_goal", "overlap"], match="all").index) == [2]
    assert list(filter_rollouts_table(t, ["unmet_goal"], ["b"]).index) == [2]
    assert list(worst_rollouts(t, 3).index) == [3, 1, 2]  # unmeasurable (absurd) first
    with pytest.raises(ValueError):
        filter_rollouts_table(t, ["nope"])


def test_imagined_set_reads_back_like_the_cli_wrote_it(runs_dir):
    s = load_imagined_set(runs_dir / "imagine-tiny")
    assert not s.problems and len(s.table) == 4 and s.dataset is not None
    assert list(s.table["category"]) == ["easy", "easy", "rephrase", "rephrase"]
    # the same validities come back from validity.csv alone
    (runs_dir / "imagine-tiny" / "imagined.npz").unlink()
    s2 = load_imagined_set(runs_dir / "imagine-tiny")
    assert s2.dataset is None
    assert list(s2.table["text"]) == list(s.table["text"])
    for a, b in zip(s2.validities, s.validities):
        assert a.failure_types() == b.failure_types()
        assert (a.steps, a.goal_met, a.replay_success, a.realistic_transitions) == (
            b.steps, b.goal_met, b.replay_success, b.realistic_transitions)
        assert a.dynamics_error_max == pytest.approx(b.dynamics_error_max, rel=1e-5)
        assert a.explanation == b.explanation


def test_plots_use_the_ball_colours_and_mark_the_step():
    env = ClevrRobotEnv()
    s0, _ = env.reset(seed=1)
    acts = [encode_action("red", 0), encode_action("cyan", 5)]
    obs = [s0]
    for a in acts:
        obs.append(env.simulate(obs[-1], a))
    obs = np.array(obs)
    assert BALL_HEX[0].startswith("#d9") and len(BALL_HEX) == 5  # red first
    pos = positions_figure(obs, step=1)
    assert len(pos.data) == 10 and pos.data[0].line.color == BALL_HEX[0]
    assert [s.x0 for s in pos.layout.shapes] == [1, 1]
    act = actions_figure(acts, step=0)
    assert list(act.data[0].y) == ["red", "cyan"]
    # arrows: red pushed right (tail left of the tip), cyan left-behind (tail right of and below it)
    (a0, a1) = act.layout.annotations
    assert a0.ax < 0 and a0.ay == pytest.approx(0) and a0.arrowcolor == BALL_HEX[0]
    assert a1.ax > 0 and a1.ay > 0 and a1.arrowcolor == BALL_HEX[4]
    top = topview_figure(obs, step=2, compare=obs + 0.01)
    assert sum(s.type == "circle" for s in top.layout.shapes) == 5


def test_imagine_one_with_a_tiny_model(runs_dir):
    from kalm.llm.train import load_grounded

    model = load_grounded(runs_dir / "tiny-ground")
    with pytest.raises(GoalTextProblem):
        check_goal_text("  ")
    with pytest.raises(GoalTextProblem):
        check_goal_text("x" * 400)
    r = imagine_one(model, "Push the red ball to the left", seed=3, max_steps=4)
    assert r.goal == Move("red", "left").to_dict() and r.steps == 1  # a move is one push
    assert r.validity is not None and r.observations.shape == (2, 10)
    assert r.replay.shape == (2, 10) and r.per_ball_errors.shape == (1, 5)
    assert {c.name for c in validity_checks(r.validity)} >= {"Goal met (match)", "Replay success"}
    again = imagine_one(model, "Push the red ball to the left", seed=3, max_steps=4)
    np.testing.assert_array_equal(r.actions, again.actions)  # deterministic
    free = imagine_one(model, "dance please", seed=3, max_steps=2, explain=False)
    assert free.goal is None and free.validity is None and free.steps == 2
    assert free.explanation is None
    rel = imagine_one(model, "x", seed=0, goal=Relation("red", "blue", "left"), max_steps=2)
    assert rel.goal["kind"] == "relation" and rel.validity.steps == rel.steps <= 2


def test_stage_note_names_the_environments_a_stage_is_built_for(monkeypatch):
    from kalm.envs import get_env
    from kalm.ui.paths import stage_note

    assert stage_note("collect") is None  # every environment collects
    assert stage_note("imagine") is None
    assert stage_note("reproduce") is None  # every environment has every stage now
    # a stage an environment lacks is still reported
    env = get_env("metaworld")
    monkeypatch.setattr(env, "stages", ("collect", "evaluate"))
    note = stage_note("reproduce")
    assert "CLEVR-Robot" in note and "Meta-World has collect, evaluate" in note


def test_guided_decoding_look_ahead_is_offered_for_continuous_actions_only():
    from kalm.ui.imagine import guide_horizon_choices, guide_label, horizon_label

    assert guide_horizon_choices("clevr") == (1,)
    assert guide_horizon_choices("metaworld") == (1, 5)
    assert [horizon_label(h) for h in (1, 5)] == ["the next state", "5 predicted steps on"]
    assert guide_label(8, "metaworld", 5) == ("goal-guided: best of the LM's action and 7 "
                                              "perturbations, scored 5 predicted steps on")
    assert guide_label(8, "metaworld") == "goal-guided: best of the LM's action and 7 perturbations"
    assert guide_label(0, "metaworld", 5) == "greedy (as published)"


def test_keeping_paths_off_walls_is_offered_where_the_scene_states_its_obstacles():
    from kalm.ui.imagine import obstacle_choice_available

    assert obstacle_choice_available("metaworld") is True
    assert obstacle_choice_available("clevr") is False  # discrete pushes; no obstacles stated
