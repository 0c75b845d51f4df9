"""The Home page's one-click demo with a tiny grounded model, and its local-runs overview."""

import pytest

import kalm.ui.home as home_ui
from kalm.goals.suites import suite_items

from .conftest import elements, page, run_ok


@pytest.fixture
def tiny_demo(runs_dir, monkeypatch):
    """Home's demo pointed at the tiny grounded model, with short rollouts."""
    monkeypatch.setattr(home_ui, "DEMO_MODEL", runs_dir / "tiny-ground" / "model")
    monkeypatch.setattr(home_ui, "DEMO_MAX_STEPS", 3)
    return runs_dir


def test_the_demo_goal_is_a_novel_phrasing_from_the_rephrase_suite():
    item = next(it for it in suite_items("rephrase") if it.text == home_ui.DEMO_TEXT)
    assert item.goal.to_dict() == home_ui.DEMO_GOAL
    assert not any(it.text == home_ui.DEMO_TEXT for it in suite_items("train"))


def test_one_click_imagines_and_shows_video_and_validity(tiny_demo):
    at = run_ok(page("home"))
    assert not elements(at, "video")
    at.button(key="home_demo_go").click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert len(elements(at, "video")) == 1
    text = "\n".join(m.value for m in at.markdown)
    assert f"“{home_ui.DEMO_TEXT}”" in text
    for check in ("Goal met (match)", "Realistic transitions", "Replay success",
                  "Cycle consistent"):
        assert f"| {check} |" in text, check
    assert "The LM explains its rollout" in text
    assert any("from the click to the video" in c.value for c in at.caption)
    # the result stays on a rerun, without imagining again
    run_ok(at)
    assert len(elements(at, "video")) == 1


def _top_level_index(at, predicate) -> int:
    """The index, in the page's main column, of the first top-level block holding an element
    for which ``predicate`` holds."""
    def has(node) -> bool:
        return predicate(node) or any(has(c) for c in getattr(node, "children", {}).values())

    return next(i for i, node in sorted(at.main.children.items()) if has(node))


def test_the_demo_is_shown_in_its_place_though_the_script_fills_it_last(tiny_demo):
    at = run_ok(page("home"))
    at.button(key="home_demo_go").click()
    run_ok(at)
    video = _top_level_index(at, lambda n: getattr(n, "type", None) == "video")
    button = _top_level_index(at, lambda n: getattr(n, "key", None) == "home_demo_go")
    runs = _top_level_index(at, lambda n: getattr(n, "type", None) == "header"
                            and getattr(n, "value", "") == "Local runs")
    assert button < video < runs
    # a second click replaces the first demo (one video, in the same place)
    at.button(key="home_demo_go").click()
    run_ok(at)
    assert len(elements(at, "video")) == 1
    assert _top_level_index(at, lambda n: getattr(n, "type", None) == "video") == video


def test_demo_model_that_cannot_load_gives_a_message(tiny_demo, monkeypatch):
    broken = tiny_demo / "tiny-ground" / "model"
    (broken / "codec.safetensors").write_bytes(b"not weights")
    (broken / "config.json").write_text('{"model": "/nonexistent/base-lm"}')
    at = run_ok(page("home"))
    at.button(key="home_demo_go").click()
    run_ok(at)
    assert at.error and "Could not load the grounded model" in at.error[0].value
    assert not elements(at, "video")


def test_local_runs_list_the_fixture_runs(tiny_demo):
    at = run_ok(page("home"))
    tables = {list(d.value.columns)[0]: d.value for d in at.dataframe}
    assert "runs/collect-tiny/data.npz" in list(tables["dataset"]["dataset"])
    assert "runs/tiny-ground" in list(tables["model"]["model"])
    assert "runs/imagine-tiny" in list(tables["imagined set"]["imagined set"])
    folders = set(tables["run folder"]["run folder"])
    assert {"tiny-ground", "collect-tiny", "imagine-tiny"} <= folders
    # outside the app's navigation the page links become captions, not errors
    assert any("open it from the sidebar" in c.value for c in at.caption)
