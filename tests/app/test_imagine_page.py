"""The Imagine page with a tiny grounded model: one goal, free text, suite picks and batches."""

from kalm.goals.suites import suite_items

from .conftest import elements, page, run_ok

TINY = "runs/tiny-ground"


def tiny_page(max_steps: int = 3):
    at = run_ok(page("imagine"))
    at.selectbox(key="im_model").set_value(TINY)
    at.number_input(key="im_max_steps").set_value(max_steps)
    return run_ok(at)


def metric_labels(at) -> list[str]:
    return [m.label for m in at.metric]


def test_page_lists_models_with_the_shipped_one_by_default(runs_dir):
    at = run_ok(page("imagine"))
    assert at.title[0].value == "Imagine"
    box = at.selectbox(key="im_model")
    assert box.value == "assets/grounded/clevr"
    assert TINY in box.options
    assert at.text_input(key="im_text").value == ""
    assert at.button(key="im_go")
    assert not at.error and not elements(at, "video")


def test_empty_goal_text_gives_an_error_not_a_traceback(runs_dir):
    at = tiny_page()
    at.button(key="im_go").click()
    run_ok(at)
    assert at.error and "empty" in at.error[0].value
    at.text_input(key="im_text").set_value("   ")
    at.button(key="im_go").click()
    run_ok(at)
    assert at.error and "empty" in at.error[0].value
    assert not elements(at, "video")


def test_imagining_a_goal_shows_video_plots_validity_and_explanation(runs_dir):
    at = tiny_page()
    at.text_input(key="im_text").set_value("Put the red ball to the left of the blue ball")
    run_ok(at)
    assert '"relation"' in at.json[0].value  # the parsed spec, before generating
    at.number_input(key="im_seed").set_value(5)
    at.button(key="im_go").click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    labels = metric_labels(at)
    for name in ("Goal met (match)", "Realistic transitions", "Per-ball error (mean / max)",
                 "Out of workbench", "Overlap", "Replay success", "Cycle consistent",
                 "Explanation true of the rollout"):
        assert any(name in lab for lab in labels), (name, labels)
    realistic = next(m for m in at.metric if "Realistic transitions" in m.label)
    done, total = realistic.value.split(" / ")
    assert 1 <= int(total) <= 3 and 0 <= int(done) <= int(total)
    assert len(elements(at, "video")) == 1
    assert len(elements(at, "plotly_chart")) == 4  # top view, positions, actions, errors
    assert any("The LM explains" in m.value for m in at.markdown)
    assert at.info  # the explanation text
    # the step slider drives the frame
    if at.slider:
        at.slider[0].set_value(at.slider[0].max)
        run_ok(at)
        (img,) = elements(at, "image")
        assert "final state" in img.proto.imgs[0].caption
    # the result survives a rerun (it is kept in the session)
    run_ok(at)
    assert len(elements(at, "video")) == 1


def test_unparseable_text_warns_and_still_imagines_without_validity(runs_dir):
    at = tiny_page(max_steps=2)
    at.text_input(key="im_text").set_value("do a little dance")
    run_ok(at)
    assert any("parses to no goal spec" in w.value for w in at.warning)
    at.button(key="im_go").click()
    run_ok(at)
    assert not at.error
    assert any("No validity checks" in w.value for w in at.warning)
    assert not any("Goal met" in lab for lab in metric_labels(at))
    assert len(elements(at, "video")) == 1


def test_suite_pick_fills_the_goal_text(runs_dir):
    at = tiny_page()
    item = suite_items("hard")[0]
    at.selectbox(key="im_pick").set_value("hard:0")
    run_ok(at)
    assert at.text_input(key="im_text").value == item.text
    assert f'"{item.goal.kind}"' in at.json[0].value


def batch_click(suite: str, guide: int = 0):
    """Batch mode with the tiny model: the first 2 goals of ``suite``, 2 steps, no
    explanations, decoded with ``guide``, after one click."""
    at = run_ok(page("imagine"))
    at.selectbox(key="im_model").set_value(TINY)
    at.radio(key="im_mode").set_value("Batch of goals")
    run_ok(at)
    at.selectbox(key="imb_suite").set_value(suite)
    run_ok(at)
    at.number_input(key=f"imb_n_{suite}").set_value(2)
    at.number_input(key="imb_max_steps").set_value(2)
    at.checkbox(key="imb_explain").uncheck()
    at.selectbox(key="imb_guide").set_value(guide)
    at.button(key="imb_go").click()
    return run_ok(at)


def test_batch_mode_tabulates_validity_and_shows_a_chosen_rollout(runs_dir):
    at = batch_click("easy")
    assert not at.error, [e.value for e in at.error]
    assert {"Match", "Realistic transitions", "Replay success",
            "True explanation"} <= set(metric_labels(at))
    table = at.dataframe[-1].value
    assert len(table) == 2 and {"match", "realistic", "failures"} <= set(table.columns)
    view = at.selectbox(key="imb_view")
    assert len(view.options) == 2
    view.set_value(1)
    run_ok(at)
    assert at.subheader[-1].value == f"“{suite_items('easy')[1].text}”"
    assert len(elements(at, "video")) == 1


def test_batch_of_typed_goals_skips_unparseable_lines(runs_dir):
    at = run_ok(page("imagine"))
    at.radio(key="im_mode").set_value("Batch of goals")
    run_ok(at)
    at.radio(key="imb_src").set_value("My goal texts")
    run_ok(at)
    at.text_area(key="imb_lines").set_value("gibberish words\n\n")
    run_ok(at)
    assert any("Skipped" in w.value for w in at.warning)
    at.button(key="imb_go").click()
    run_ok(at)
    assert at.error and "No goal to imagine" in at.error[0].value


def _top_level_index(at, predicate) -> int:
    def has(node) -> bool:
        return predicate(node) or any(has(c) for c in getattr(node, "children", {}).values())

    return next(i for i, node in sorted(at.main.children.items()) if has(node))


def test_the_live_view_and_the_result_share_one_place_right_below_the_button(runs_dir,
                                                                              monkeypatch):
    """The live frames are drawn into the placeholder that holds the result, as single elements
    (so a click drops the last result at once), and the result then fills that same place."""
    import kalm.ui.imagine as imagine_ui

    placed = []

    def unthrottled(draw, every=0.15, final=True):
        return lambda t, observations, actions, done: draw(t, observations, actions)

    monkeypatch.setattr(imagine_ui, "throttled", unthrottled)
    at = tiny_page()
    at.text_input(key="im_text").set_value("Put the red ball to the left of the blue ball")
    for seed in (5, 6):
        at.number_input(key="im_seed").set_value(seed)
        at.button(key="im_go").click()
        run_ok(at)
        assert not at.error, [e.value for e in at.error]
        assert len(elements(at, "video")) == 1
        placed.append((_top_level_index(at, lambda n: getattr(n, "key", None) == "im_go"),
                       _top_level_index(at, lambda n: getattr(n, "type", None) == "video")))
    # the same place in both runs (the model's status line keeps its place while it is not
    # loaded yet), so the second click's placeholder replaces the first result
    (b1, v1), (b2, v2) = placed
    assert v1 == b1 + 1 and (b2, v2) == (b1, v1), placed
    assert any("drawn live as the LM wrote them" in c.value for c in at.caption)


def test_no_stray_text_above_the_title(runs_dir):
    """Streamlit draws a bare module-level string: the page's first element is its title."""
    at = run_ok(page("imagine"))
    first = at.main.children[min(at.main.children)]
    assert getattr(first, "type", None) == "title", first


def test_goal_guided_decoding_is_offered_and_recorded(runs_dir):
    at = tiny_page(2)
    box = at.selectbox(key="im_guide")
    assert box.value == 0 and box.options[-1] == "goal-guided: every action (40)"  # greedy first
    at.text_input(key="im_text").set_value("Put the red ball to the left of the blue ball")
    box.set_value(8)
    at.button(key="im_go").click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    r = at.session_state["im_result"]
    assert r.guide == 8 and 1 <= r.steps <= 2
    assert any("goal-guided: best of the LM's 8 likeliest" in c.value for c in at.caption)
    # a text that parses to no goal has nothing to guide by: greedy
    at.text_input(key="im_text").set_value("do a little dance")
    at.button(key="im_go").click()
    run_ok(at)
    assert at.session_state["im_result"].guide == 0


def test_batch_mode_imagines_goal_guided_when_asked(runs_dir):
    at = batch_click("rephrase", guide=4)
    assert not at.error, [e.value for e in at.error]
    batch = at.session_state["imb_result"]
    assert len(batch) == 2 and all(r.guide == 4 for r in batch)


def test_explanations_among_true_goals_are_offered_and_recorded(runs_dir):
    from kalm.envs import get_env

    at = tiny_page(3)
    box = at.selectbox(key="im_explain_mode")
    assert box.value is False and box.options == ["free text (as published)",
                                                  "among the goals the rollout made true"]
    at.text_input(key="im_text").set_value("Put the red ball to the left of the blue ball")
    box.set_value(True)
    for seed in range(10):  # until the tiny LM's rollout makes some relation true
        at.number_input(key="im_seed").set_value(seed)
        at.button(key="im_go").click()
        run_ok(at)
        assert not at.error, [e.value for e in at.error]
        r = at.session_state["im_result"]
        assert r.explain_constrained
        cands = get_env("clevr").explanation_candidates(r.observations)
        if cands:
            assert r.explanation in cands and r.validity.explanation_true
            assert any("made true" in c.value for c in at.caption)
            break
    else:
        raise AssertionError("no tiny rollout made a relation true: the check above never ran")
    # unticking the explanation greys the choice out
    at.checkbox(key="im_explain").uncheck()
    run_ok(at)
    assert at.selectbox(key="im_explain_mode").disabled
