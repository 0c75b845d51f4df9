"""The Data page: browse a dataset's episodes, with video, synced step view and plots."""

import json

from kalm.data.episodes import load_dataset

from .conftest import elements, page, run_ok


def test_default_dataset_shows_an_episode_with_video_plots_and_step_view(runs_dir):
    at = run_ok(page("data"))
    assert at.title[0].value == "Data"
    assert at.selectbox(key="data_dataset").value == "assets/data/relation4k.npz"
    assert {m.label for m in at.metric} >= {"Episodes", "Transitions", "Success rate"}
    assert at.metric[0].value == "4,000"
    # the tiny run's dataset and the imagined set are offered too
    options = at.selectbox(key="data_dataset").options
    assert "runs/collect-tiny/data.npz" in options and "runs/imagine-tiny/imagined.npz" in options
    ds = load_dataset("assets/data/relation4k.npz")
    assert at.subheader[-1].value == f"“{ds[0].text}”"
    assert [j for j in at.json if j.value and '"kind"' in j.value]  # the goal spec
    assert len(elements(at, "video")) == 1
    assert len(elements(at, "plotly_chart")) == 3  # top view, positions, actions
    images = elements(at, "image")
    assert images
    assert image_caption(at).startswith("step 0 / ")
    # the step slider moves the frame and the plot markers
    i = next(i for i, ep in enumerate(ds) if ep.length >= 3)
    at.selectbox(key="data_episode").set_value(i)
    run_ok(at)
    slider = at.slider[0]
    assert slider.max == ds[i].length and slider.value == 0
    slider.set_value(2)
    run_ok(at)
    assert at.slider[0].value == 2
    assert image_caption(at).startswith(f"step 2 / {ds[i].length} · next: push ")
    for chart in elements(at, "plotly_chart"):  # a marker at step 2 on every plot
        fig = json.loads(chart.proto.spec)
        shapes = fig["layout"].get("shapes", [])
        circles = sum(s["type"] == "circle" for s in shapes)
        assert any(s.get("x0") == 2 for s in shapes) or circles == 5


def image_caption(at) -> str:
    (img,) = elements(at, "image")
    return img.proto.imgs[0].caption


def test_filters_and_episode_picker_on_a_runs_dataset(runs_dir):
    ds = load_dataset(runs_dir / "collect-tiny" / "data.npz")
    at = run_ok(page("data"))
    at.selectbox(key="data_dataset").set_value("runs/collect-tiny/data.npz")
    run_ok(at)
    assert at.metric[0].value == str(len(ds))
    assert at.selectbox(key="data_episode").label == f"Episode ({len(ds)} match)"
    at.selectbox(key="data_episode").set_value(3)
    run_ok(at)
    assert at.subheader[-1].value == f"“{ds[3].text}”"
    n_fail = sum(not ep.success for ep in ds)
    at.radio(key="data_outcome").set_value("failure")
    run_ok(at)
    if n_fail:
        assert at.selectbox(key="data_episode").label == f"Episode ({n_fail} match)"
    else:
        assert any("No episode matches" in w.value for w in at.warning)
    at.radio(key="data_outcome").set_value("success")
    at.multiselect(key="data_kinds").set_value(["relation"])
    run_ok(at)
    n = sum(ep.success and ep.goal["kind"] == "relation" for ep in ds)
    assert at.selectbox(key="data_episode").label == f"Episode ({n} match)"
    at.text_input(key="data_text").set_value("zzz no such words")
    run_ok(at)
    assert any("No episode matches" in w.value for w in at.warning)


def test_typed_paths_are_confined_and_bad_files_explained(runs_dir, tmp_path):
    (runs_dir / "junk.npz").write_bytes(b"not a zip file at all")
    outside = tmp_path / "outside.npz"
    outside.write_bytes(b"x")
    at = run_ok(page("data"))
    at.selectbox(key="data_dataset").set_value("Other path…")
    run_ok(at)
    assert at.info  # asks for a path
    for bad in (str(outside), "/etc/passwd", "assets/../../etc/passwd"):
        at.text_input(key="data_path").set_value(bad)
        run_ok(at)
        assert at.error and "outside" in at.error[0].value, bad
    at.text_input(key="data_path").set_value(str(runs_dir / "junk.npz"))
    run_ok(at)
    assert at.error and "Could not read the dataset" in at.error[0].value
    at.text_input(key="data_path").set_value(str(runs_dir / "nope.npz"))
    run_ok(at)
    assert at.error and "Could not read the dataset" in at.error[0].value
    # a good file typed by path (relative to the repository)
    at.text_input(key="data_path").set_value("assets/data/relation4k.npz")
    run_ok(at)
    assert not at.error and at.metric[0].value == "4,000"


def test_a_metaworld_dataset_shows_its_episode_video_and_generic_plots(runs_dir):
    from kalm.data.collect import collect_dataset
    from kalm.envs import get_env

    out = runs_dir / "collect-mw" / "data.npz"
    collect_dataset(episodes=2, seed=0, out=out, progress=False, env=get_env("metaworld"))
    ds = load_dataset(out)
    at = run_ok(page("data"))
    at.selectbox(key="data_dataset").set_value("runs/collect-mw/data.npz")
    run_ok(at)
    assert at.metric[0].value == "2"
    assert at.subheader[-1].value == f"“{ds[0].text}”"
    assert len(elements(at, "video")) == 1
    charts = elements(at, "plotly_chart")
    assert len(charts) == 2  # positions (gripper, target, objects) and the 4 action channels
    names = {t.get("name") for t in json.loads(charts[0].proto.spec)["data"]}
    layout = get_env("metaworld").state
    present = {g for g, a, b in layout.groups if ds[0].observations[:, a:b].any()}
    assert {"gripper", "target"} <= names == present and len(present) < 14  # absent ones left out
    actions = {t.get("name") for t in json.loads(charts[1].proto.spec)["data"]}
    assert actions == {"dx", "dy", "dz", "grip"}
    assert image_caption(at).startswith("step 0 / ") and "dx " in image_caption(at)
