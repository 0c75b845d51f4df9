"""The Imagine page with a tiny Meta-World grounded model: suite goals (the wall variants), free
text parsed by the environment, a rollout with its checks and its side-by-side video."""

from kalm.envs import get_env

from .conftest import elements, page, run_ok

TINY_MW = "runs/tiny-mw"
ENV = get_env("metaworld")


def mw_page(max_steps: int = 3):
    at = run_ok(page("imagine"))
    at.selectbox(key="im_model").set_value(TINY_MW)
    run_ok(at)
    at.number_input(key="im_max_steps_metaworld").set_value(max_steps)
    return run_ok(at)


def test_metaworld_model_offers_its_suites_with_the_wall_variants(mw_runs_dir):
    at = mw_page()
    assert any("Meta-World" in c.value for c in at.caption)
    pick = at.selectbox(key="im_pick_metaworld")
    assert "easy · Reach the target, with a wall in the way." in pick.options
    assert any("Push the puck to the goal past the wall." in o for o in pick.options)
    assert len(pick.options) == 1 + sum(len(ENV.suite_items(s)) for s in
                                        ("train", "rephrase", "easy", "hard"))
    wall = ENV.suite_items("easy")[0]
    assert wall.goal.task == "reach-wall"
    pick.set_value("easy:0")
    run_ok(at)
    assert at.text_input(key="im_text_metaworld").value == wall.text
    assert '"reach-wall"' in at.json[0].value
    # the decoding choice: greedy first (as published), then goal-guided with continuous
    # candidates (the LM's action and K - 1 perturbations)
    box = at.selectbox(key="im_guide_metaworld")
    assert box.value == 0 and box.options[0] == "greedy (as published)"
    assert box.options[-1] == "goal-guided: best of the LM's action and 15 perturbations"
    # its look-ahead is offered once decoding is guided: the next state, or 5 steps on
    assert not any(b.key == "im_guide_horizon_metaworld" for b in at.selectbox)
    assert not any(c.key == "im_guide_obstacles_metaworld" for c in at.checkbox)
    box.set_value(8)
    run_ok(at)
    ahead = at.selectbox(key="im_guide_horizon_metaworld")
    assert ahead.value == 1 and ahead.options == ["the next state", "5 predicted steps on"]
    # and keeping the predicted paths off the walls, off by default (the LM's own knowledge)
    assert at.checkbox(key="im_guide_obstacles_metaworld").value is False


def test_metaworld_free_text_is_parsed_by_the_environment(mw_runs_dir):
    at = mw_page()
    at.text_input(key="im_text_metaworld").set_value("Open the door")
    run_ok(at)
    assert '"door-open"' in at.json[0].value
    at.text_input(key="im_text_metaworld").set_value("do a little dance")
    run_ok(at)
    assert any("parses to no goal spec" in w.value for w in at.warning)


def test_imagining_a_metaworld_goal_shows_checks_figures_and_a_video(mw_runs_dir):
    at = mw_page(max_steps=3)
    at.text_input(key="im_text_metaworld").set_value("Reach the target, with a wall in the way.")
    at.checkbox(key="im_explain_metaworld").uncheck()
    at.selectbox(key="im_guide_metaworld").set_value(4)
    run_ok(at)
    at.selectbox(key="im_guide_horizon_metaworld").set_value(5)
    at.checkbox(key="im_guide_obstacles_metaworld").check()
    assert at.number_input(key="im_settle_metaworld").value == 0  # stops at the goal, as published
    at.number_input(key="im_settle_metaworld").set_value(3)
    run_ok(at)
    at.button(key="im_go_metaworld").click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    result = at.session_state["im_result_metaworld"]
    assert (result.guide, result.guide_horizon, result.guide_obstacles) == (4, 5, True)
    assert result.settle == 3
    assert any("best of the LM's action and 3 perturbations, scored 5 predicted steps on, "
               "kept off the walls, 3 steps past the goal" in c.value for c in at.caption)
    labels = [m.label for m in at.metric]
    for name in ("Goal met (match)", "Replay success", "Realistic transitions",
                 "Floating objects", "Gripper jumps", "Out of workspace",
                 "Hand error vs replay (mean / max)", "Through the wall"):
        assert any(name in lab for lab in labels), (name, labels)
    assert not any("Overlap" in lab or "Per-ball" in lab for lab in labels)
    realistic = next(m for m in at.metric if "Realistic transitions" in m.label)
    done, total = realistic.value.split(" / ")
    assert 1 <= int(total) <= 3
    assert len(elements(at, "video")) == 1
    assert len(elements(at, "plotly_chart")) == 3  # positions, actions, distance to the replay
    # a rollout written on past its goal marks where the goal first held on every figure; one
    # that stopped there (or never met it) has no mark
    from dataclasses import replace

    from kalm.ui.imagine import rollout_figures

    def marks(r):
        return [sum(a.text == "goal met" for a in fig.layout.annotations)
                for _, fig, _ in rollout_figures(r)]

    assert set(marks(result)) == {0}
    settled = replace(result, validity=replace(result.validity, goal_met=True, success_step=1))
    assert set(marks(settled)) == {1} and len(marks(settled)) == 3
    assert set(marks(replace(settled, settle=0))) == {0}
    assert any("open loop from the same seeded reset" in c.value for c in at.caption)
    if at.slider:
        at.slider[0].set_value(at.slider[0].max)
        run_ok(at)
        (img,) = elements(at, "image")
        assert "final state" in img.proto.imgs[0].caption
    # the CLEVR model's widgets are untouched by the Meta-World rollout
    at.selectbox(key="im_model").set_value("runs/tiny-ground")
    run_ok(at)
    assert at.text_input(key="im_text").value == "" and not elements(at, "video")


def test_metaworld_batch_from_the_easy_suite(mw_runs_dir):
    at = run_ok(page("imagine"))
    at.selectbox(key="im_model").set_value(TINY_MW)
    at.radio(key="im_mode").set_value("Batch of goals")
    run_ok(at)
    at.number_input(key="imb_n_easy_metaworld").set_value(2)
    at.number_input(key="imb_max_steps_metaworld").set_value(2)
    at.checkbox(key="imb_explain_metaworld").uncheck()
    at.selectbox(key="imb_guide_metaworld").set_value(4)
    run_ok(at)
    at.selectbox(key="imb_guide_horizon_metaworld").set_value(5)
    at.checkbox(key="imb_guide_obstacles_metaworld").check()
    at.number_input(key="imb_settle_metaworld").set_value(2)
    run_ok(at)
    at.button(key="imb_go_metaworld").click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert {(r.guide, r.guide_horizon, r.guide_obstacles, r.settle)
            for r in at.session_state["imb_result_metaworld"]} == {(4, 5, True, 2)}
    table = at.dataframe[-1].value
    assert len(table) == 2 and {"match", "floating", "gripper_jumps"} <= set(table.columns)
    assert "through_wall" in table.columns  # the easy suite's first goals have a wall
    assert "overlap" not in table.columns
    assert len(elements(at, "video")) == 1


def test_metaworld_text_naming_no_task_is_imagined_without_checks(mw_runs_dir):
    at = mw_page(max_steps=2)
    at.text_input(key="im_text_metaworld").set_value("do a little dance")
    at.checkbox(key="im_explain_metaworld").uncheck()
    run_ok(at)
    at.button(key="im_go_metaworld").click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert any("No validity checks" in w.value for w in at.warning)
    assert not any("Goal met" in m.label for m in at.metric)
    assert len(elements(at, "video")) == 1  # from the reset of the data task the seed drew
