"""The background preload (``kalm.ui.preload``) and the live Imagine page, with the tiny model:
the pages use the model loaded in the background (one load), the rollout is drawn while it is
generated, and the LM explains it only after the rollout, its checks and its video are shown."""

import numpy as np
import pytest

import kalm.ui.home as home_ui
import kalm.ui.imagine as imagine_ui
import kalm.ui.plots as plots
from kalm.goals.parser import parse_goal_text
from kalm.ui import preload

from .conftest import elements, page, run_ok

TINY = "runs/tiny-ground"
GOAL = "Put the red ball to the left of the blue ball"


@pytest.fixture
def preloading(runs_dir, monkeypatch):
    """Preload on (as in the served app), the tiny model as the one preloaded, and load counting."""
    import kalm.ui.paths as paths

    monkeypatch.setenv(preload.PRELOAD_ENV, "1")
    # the pages' default model is the tiny one (a page starts loading the model it shows)
    tiny = next(m.path for m in paths.find_grounded_models() if m.label == TINY)
    monkeypatch.setattr(paths, "DEFAULT_GROUNDED", tiny)
    loads = []
    real = preload._load_grounded
    monkeypatch.setattr(preload, "_load_grounded", lambda p: loads.append(p) or real(p))
    return runs_dir / "tiny-ground", loads


def test_registry_loads_each_model_once_in_the_background(preloading):
    folder, loads = preloading
    preload.start(model=folder / "model", render=False, embed=False)
    preload.start(model=folder / "model", render=False, embed=False)  # idempotent
    res = preload.grounded(folder)  # the run folder names the same model as its model/
    waited = []
    model = preload.wait(res, on_wait=waited.append, every=0.05)
    assert model is preload.grounded(folder / "model").future.result()
    assert len(loads) == 1 and preload.load_counts() == {res.name: 1}
    assert preload.status(res.name)[0] == "ready"
    assert all(w >= 0 for w in waited)


def test_a_failed_load_is_reported_and_retried_only_on_demand(tmp_path, monkeypatch):
    monkeypatch.setenv(preload.PRELOAD_ENV, "1")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "grounded.json").write_text("{}")
    res = preload.grounded(bad)
    with pytest.raises(Exception):
        preload.wait(res, every=0.05)
    assert preload.grounded(bad, retry=False) is res and res.state == "failed"
    retry = preload.grounded(bad)
    assert retry is not res  # a page that needs it tries again
    with pytest.raises(Exception):  # (waited for: no load of this test outlives it)
        preload.wait(retry, every=0.05)


def test_imagine_page_uses_the_background_load_and_draws_the_rollout_live(preloading,
                                                                          monkeypatch):
    folder, loads = preloading
    preload.start(model=folder / "model", render=False, embed=False)
    drawn = []
    real_draw = plots.topview_image
    monkeypatch.setattr(plots, "topview_image", lambda o, *a, **k: drawn.append(len(o))
                        or real_draw(o, *a, **k))
    monkeypatch.setattr(imagine_ui, "throttled", lambda draw, every=0.15, final=True: _unthrottled(draw))
    preload.wait(preload.grounded(folder))
    at = run_ok(page("imagine"))
    assert at.selectbox(key="im_model").value == TINY
    assert any("grounded model is ready" in c.value for c in at.caption)
    at.number_input(key="im_max_steps").set_value(3)
    at.text_input(key="im_text").set_value(GOAL)
    at.number_input(key="im_seed").set_value(5)
    at.button(key="im_go").click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert len(loads) == 1, "the page loaded the model a second time"
    steps = next(m for m in at.metric if "Realistic transitions" in m.label).value.split(" / ")[1]
    # one live drawing per generated step, each with one state more
    assert drawn == list(range(2, int(steps) + 2)), drawn
    assert any("drawn live as the LM wrote them" in c.value for c in at.caption)
    assert len(elements(at, "video")) == 1
    assert at.info  # the explanation


def _unthrottled(draw):
    def on_step(t, observations, actions, done):
        draw(t, observations, actions)
    return on_step


def test_the_explanation_runs_after_the_rollout_checks_and_video(runs_dir, monkeypatch):
    seen = {}
    real = imagine_ui.explain_rollout

    def explain(model, r, **kw):
        import streamlit as st

        seen["validity"] = r.validity is not None and r.validity.cycle_consistent is None
        seen["explanation"] = r.explanation
        seen["video"] = bool(st.session_state.get("im_rendered"))
        seen["result"] = st.session_state.get("im_result") is r
        return real(model, r, **kw)

    order = []
    real_topview = plots.topview_figure
    monkeypatch.setattr(plots, "topview_figure", lambda *a, **k: order.append("plots")
                        or real_topview(*a, **k))
    monkeypatch.setattr(imagine_ui, "explain_rollout",
                        lambda model, r, **kw: order.append("explain") or explain(model, r, **kw))
    at = _imagine_click(3)
    assert not at.error, [e.value for e in at.error]
    # when the LM was asked, the checked rollout was already kept and its video rendered
    assert seen == {"validity": True, "explanation": None, "video": True, "result": True}
    # the plots are drawn after the explanation (they would slow the video and it)
    assert order == ["explain", "plots"], order
    assert len(elements(at, "plotly_chart")) == 4
    r = at.session_state["im_result"]
    assert r.explanation is not None and r.validity.cycle_consistent is not None
    assert any("The LM explains" in m.value for m in at.markdown)
    cycle = next(m for m in at.metric if "Cycle consistent" in m.label)
    assert cycle.value in ("yes", "no")
    assert any("to the LM's explanation" in c.value for c in at.caption)


def _imagine_click(max_steps: int):
    """The Imagine page with the tiny model, GOAL typed in, after one click on Imagine."""
    at = run_ok(page("imagine"))
    at.selectbox(key="im_model").set_value(TINY)
    at.number_input(key="im_max_steps").set_value(max_steps)
    at.text_input(key="im_text").set_value(GOAL)
    at.button(key="im_go").click()
    return run_ok(at)


def test_home_demo_and_imagine_share_one_load(preloading, monkeypatch):
    folder, loads = preloading
    monkeypatch.setattr(home_ui, "DEMO_MODEL", folder / "model")
    monkeypatch.setattr(home_ui, "DEMO_MAX_STEPS", 3)
    at = run_ok(page("home"))
    at.button(key="home_demo_go").click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert len(elements(at, "video")) == 1
    assert "The LM explains its rollout" in "\n".join(m.value for m in at.markdown)
    at = _imagine_click(2)
    assert not at.error
    assert len(loads) == 1


def test_imagine_rollout_then_explain_equals_imagine_one(runs_dir):
    from kalm.llm.train import load_grounded

    model = load_grounded(runs_dir / "tiny-ground" / "model")
    steps = []
    r = imagine_ui.imagine_rollout(model, GOAL, 5, max_steps=3,
                                   on_step=lambda t, o, a, d: steps.append((t, o.shape, a.shape)))
    assert r.explanation is None and r.validity.cycle_consistent is None
    assert steps and all(o == (t + 2, 10) and a == (t + 1,) for t, o, a in steps)
    full = imagine_ui.explain_rollout(model, r)
    one = imagine_ui.imagine_one(model, GOAL, 5, goal=parse_goal_text(GOAL), max_steps=3)
    assert full.reset_seed == one.reset_seed and full.explanation == one.explanation
    np.testing.assert_array_equal(full.observations, one.observations)
    np.testing.assert_array_equal(full.actions, one.actions)
    assert full.validity.to_dict() == one.validity.to_dict()


def test_throttled_draws_the_first_and_last_steps_and_at_most_every_interval():
    calls = []
    cb = imagine_ui.throttled(lambda t, o, a: calls.append(t), every=3600)
    for t in range(5):
        cb(t, np.zeros((t + 2, 10)), np.zeros(t + 1), t == 4)
    assert calls == [0, 4]
    calls.clear()
    cb = imagine_ui.throttled(lambda t, o, a: calls.append(t), every=0, final=False)
    for t in range(5):
        cb(t, np.zeros((t + 2, 10)), np.zeros(t + 1), t == 4)
    assert calls == [0, 1, 2, 3]  # the page replaces the drawing with the finished rollout


def test_topview_image_is_an_rgb_array():
    img = plots.topview_image(np.random.default_rng(0).uniform(-0.3, 0.3, (4, 10)))
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


def test_lm_goal_embedder_uses_the_preloaded_model_not_a_copy(preloading, monkeypatch):
    from kalm.rl import embed

    folder, loads = preloading
    monkeypatch.setattr(embed, "_SHARED_MODELS", None)
    preload.start(model=folder / "model", render=False, embed=False)
    model = preload.wait(preload.grounded(folder))
    emb = embed.make_embedder(f"lm:{folder}", disk_cache=False)
    vecs = emb.embed([GOAL, "Put the blue ball to the left of the red ball"])
    assert vecs.shape == (2, emb.dim) and np.isfinite(vecs).all()
    assert emb.inner._model is model
    assert len(loads) == 1
    # a folder the registry does not hold: the embedder loads its own
    assert preload.shared_grounded(folder / "nonexistent") is None


def test_two_models_asked_for_at_once_load_one_at_a_time(tmp_path, monkeypatch):
    """transformers' loading is not thread-safe: a second model asked for while the first loads
    (a user switching models on the Imagine page) waits for it, then loads."""
    import threading
    import time

    monkeypatch.setenv(preload.PRELOAD_ENV, "1")
    inside, most, lock = [0], [0], threading.Lock()

    def slow_load(path):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.3)
        with lock:
            inside[0] -= 1
        return path

    monkeypatch.setattr(preload, "_load_grounded", slow_load)
    folders = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "grounded.json").write_text("{}")
        folders.append(tmp_path / name)
    res = [preload.grounded(f) for f in folders]
    assert [preload.wait(r, every=0.02) for r in res] == [str(f.resolve()) for f in folders]
    assert most[0] == 1  # never two loads at once
