"""The Validity page on a Meta-World imagine run folder: it loads, says which checks apply, and
renders a rollout's side-by-side video through the environment."""

from .conftest import elements, page, run_ok


def test_validity_page_reads_a_metaworld_imagined_set(mw_imagined_runs_dir):
    at = run_ok(page("validity"))
    at.selectbox(key="val_set").set_value("runs/imagine-mw")
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert any("**2 rollouts**" in m.value for m in at.markdown)
    assert any("Meta-World" in c.value and "open-loop replay" in c.value for c in at.caption)
    # the set was imagined goal-guided, looking 2 steps on, kept off the walls: the caption says so
    assert any("goal-guided decoding (K = 3, scored 2 predicted steps on, kept off the walls)"
               in c.value for c in at.caption), [c.value for c in at.caption]
    assert any("4 steps written past each goal's first success" in c.value for c in at.caption)
    # per goal, the checks Meta-World adds; through the wall only where the task has a wall
    extra = next(d.value for d in at.dataframe if "through the wall %" in d.value.columns)
    assert list(extra.index) == ["reach-wall", "reach", "all"]
    assert {"floating object %", "gripper jump %", "out of workspace %"} <= set(extra.columns)
    assert extra.loc["reach-wall", "rollouts"] == 1 and extra.loc["all", "rollouts"] == 2
    assert extra.loc["reach-wall", "through the wall %"] in (0.0, 100.0)
    assert extra["through the wall %"].isna()["reach"]
    assert any("the environment's own checks" in h.value for h in at.subheader)
    at.button[0].click()
    run_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert len(elements(at, "video")) == 1
    assert any("open loop from the same seeded reset" in c.value for c in at.caption)


def test_validity_page_says_nothing_of_metaworld_on_a_clevr_set(runs_dir):
    at = run_ok(page("validity"))
    at.selectbox(key="val_set").set_value("runs/imagine-tiny")
    run_ok(at)
    assert not any("Meta-World" in c.value for c in at.caption)
    assert not any("the environment's own checks" in h.value for h in at.subheader)
