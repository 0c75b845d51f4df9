"""Smoke tests of the Streamlit app: the real entry point, run headless with AppTest.

The Home page's demo with a tiny grounded model is in ``tests/app/test_home_page.py``."""

import json
from pathlib import Path

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "app.py"


def run_app(monkeypatch: pytest.MonkeyPatch, runs_dir: Path) -> AppTest:
    monkeypatch.setenv("KALM_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_text(at: AppTest) -> str:
    parts = [e.value for e in (*at.title, *at.header, *at.subheader, *at.markdown, *at.caption)]
    parts += [e.value for e in (*at.info, *at.warning)]
    parts += [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


def tree_elements(at: AppTest, kind: str) -> list:
    found = []

    def walk(node) -> None:
        if getattr(node, "type", None) == kind:
            found.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def frame(at: AppTest, first_column: str):
    """The table whose first column is ``first_column`` (Home's tables: dataset, model, ...)."""
    for d in at.dataframe:
        if list(d.value.columns[:1]) == [first_column]:
            return d.value
    raise AssertionError(f"no table of {first_column!r}: "
                         f"{[list(d.value.columns[:1]) for d in at.dataframe]}")


def test_home_shows_title_three_steps_demo_and_runs(monkeypatch, tmp_path):
    at = run_app(monkeypatch, tmp_path / "missing")

    assert at.title[0].value == "KALM"
    steps = [s.value for s in at.subheader]
    for step in ("Ground", "Imagine", "Learn"):
        assert any(step in s for s in steps), steps
    headers = [h.value for h in at.header]
    assert "Try it: one click" in headers and "Local runs" in headers
    assert at.button(key="home_demo_go").label == "Imagine a novel goal"
    assert [m.label for m in at.metric] == ["Datasets", "Grounded models", "Imagined sets",
                                            "Trained policies", "Jobs"]
    assert "No runs yet" in page_text(at)
    # the links to the other pages resolve inside the app's navigation
    links = {e.proto.label: e.proto.page for e in tree_elements(at, "page_link")}
    assert links["More goals, seeds and batches on the Imagine page"] == "imagine"
    assert links["Policies compared on the same goals on the Compare page"] == "compare"
    assert {"data", "validity", "train"} <= set(links.values())


def test_home_lists_shipped_assets(monkeypatch, tmp_path):
    at = run_app(monkeypatch, tmp_path / "missing")

    datasets = frame(at, "dataset")
    assert "assets/data/relation4k.npz" in list(datasets["dataset"])
    row = datasets[datasets["dataset"] == "assets/data/relation4k.npz"].iloc[0]
    assert row["where"] == "shipped" and row["episodes"] > 0 and row["transitions"] > 0
    grounded = frame(at, "model")
    assert "assets/grounded/clevr" in list(grounded["model"])
    assert int(at.metric[0].value) >= 1 and int(at.metric[1].value) >= 1


def test_home_lists_runs_with_their_status(monkeypatch, tmp_path):
    (tmp_path / "collect-001").mkdir()
    (tmp_path / "collect-001" / "status.json").write_text(json.dumps({"state": "done"}))
    (tmp_path / "train-002").mkdir()  # no status.json yet
    (tmp_path / "eval-003").mkdir()
    (tmp_path / "eval-003" / "status.json").write_text("{not json")
    for nested in ("bench/easy", "compare-cache/expert-abc"):  # a group of runs; Compare's cache
        (tmp_path / nested).mkdir(parents=True)
        (tmp_path / nested / "status.json").write_text(json.dumps({"state": "done", "step": 4,
                                                                    "total": 4}))

    at = run_app(monkeypatch, tmp_path)

    folders = frame(at, "run folder")
    states = dict(zip(folders["run folder"], folders["state"]))
    assert states == {"collect-001": "done", "train-002": "", "eval-003": "unreadable",
                      "bench/easy": "done"}
    assert list(folders[folders["run folder"] == "bench/easy"]["step"]) == ["4/4"]
    assert any("could not be read" in w.value and "eval-003" in w.value for w in at.warning)
    assert "No runs yet" not in page_text(at)


def test_home_lists_jobs_policies_and_imagined_sets(monkeypatch, tmp_path):
    job = tmp_path / "ground-a"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({
        "kind": "ground", "argv": ["ground"], "command": "python -m kalm ground",
        "run_dir": str(job), "pid": 0, "pgid": 0, "create_time": None, "started": 1.0,
        "state": "done", "returncode": 0, "ended": 2.0}))
    (job / "status.json").write_text(json.dumps({"stage": "ground", "state": "done", "step": 4,
                                                 "total": 4}))
    policy = tmp_path / "train-b" / "policy"
    policy.mkdir(parents=True)
    (policy / "policy.json").write_text(json.dumps({"format": "kalm-policy", "algo": "cql",
                                                    "embedder": "hash", "step": 100}))
    (tmp_path / "train-b" / "status.json").write_text(json.dumps({"stage": "train",
                                                                  "state": "done"}))
    imagined = tmp_path / "imagine-c"
    imagined.mkdir()
    (imagined / "status.json").write_text(json.dumps({"stage": "imagine", "state": "running"}))
    (imagined / "summary.json").write_text(json.dumps({"overall": {
        "rollouts": 8, "match_rate": 0.5, "fully_valid_rate": 0.25}}))

    at = run_app(monkeypatch, tmp_path)

    jobs = frame(at, "job")
    assert list(jobs["job"]) == ["ground-a"] and list(jobs["state"]) == ["done"]
    assert list(jobs["progress %"]) == [100]
    policies = frame(at, "policy")
    shipped_policies = [f"assets/policies/{n}"
                        for n in ("dt", "kalm", "kalm_augment", "kalm_contact", "kalm_filtered", "kalm_guided",
                                  "kalm_mentions", "oracle", "real_only")]
    assert list(policies["policy"]) == ["runs/train-b", *shipped_policies]
    assert list(policies["algorithm"])[0] == "cql" and list(policies["state"])[0] == "done"
    sets = frame(at, "imagined set")
    shipped_sets = ["assets/imagined/easy", "assets/imagined/rephrase",
                    "assets/imagined/rephrase_guided"]
    assert list(sets["imagined set"]) == ["runs/imagine-c", *shipped_sets]
    assert list(sets["match %"])[0] == 50.0 and list(sets["fully valid %"])[0] == 25.0
    assert [m.value for m in at.metric][2:] == ["4", "10", "1"]


def test_home_demo_without_the_shipped_model_says_so(monkeypatch, tmp_path):
    import kalm.ui.home as home_ui

    monkeypatch.setattr(home_ui, "DEMO_MODEL", tmp_path / "no-model")
    at = run_app(monkeypatch, tmp_path / "missing")

    assert any("shipped grounded model is missing" in w.value for w in at.warning)
    assert at.button(key="home_demo_go").disabled
    assert not at.error


def test_home_and_imagine_share_one_model_registry():
    # Both pages take their grounded model from kalm.ui.preload (loaded once per server, in the
    # background, for both; tests/app/test_preload.py counts the loads): no loader of their own.
    for name in ("home", "imagine"):
        text = (REPO / "pages" / f"{name}.py").read_text()
        assert "preload.grounded(" in text, name
        assert "load_grounded" not in text and "cache_resource" not in text, name


def test_direct_link_to_a_page_runs_inside_the_app_navigation(monkeypatch, tmp_path):
    # AppTest starts each run in Streamlit's old `pages/` mode, as a fresh server does: opening a
    # page first runs that page's file alone, until ensure_app_navigation() reruns through app.py.
    at = run_app(monkeypatch, tmp_path / "missing")
    at.switch_page("pages/home.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert PagesManager.uses_pages_directory is False  # app.py's st.navigation ran
    assert at.title[0].value == "KALM"
    assert [m.label for m in at.metric][0] == "Datasets"


def test_server_binds_to_localhost_by_default():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert "--server.address 127.0.0.1" in (root / "scripts" / "app.sh").read_text()
