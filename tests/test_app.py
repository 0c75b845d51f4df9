"""Smoke tests of the Streamlit app: the real entry point, run headless with AppTest."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "app.py"


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


def test_home_shows_title_and_three_steps(monkeypatch, tmp_path):
    at = run_app(monkeypatch, tmp_path / "missing")

    assert at.title[0].value == "KALM"
    steps = [s.value for s in at.subheader]
    for step in ("Ground", "Imagine", "Learn"):
        assert any(step in s for s in steps), steps
    assert "No runs yet" in page_text(at)


def test_home_lists_runs_with_their_status(monkeypatch, tmp_path):
    (tmp_path / "collect-001").mkdir()
    (tmp_path / "collect-001" / "status.json").write_text(json.dumps({"state": "done"}))
    (tmp_path / "train-002").mkdir()  # no status.json yet
    (tmp_path / "eval-003").mkdir()
    (tmp_path / "eval-003" / "status.json").write_text("{not json")

    at = run_app(monkeypatch, tmp_path)

    labels = [e.label for e in at.expander]
    assert "collect-001 · done" in labels
    assert "train-002" in labels
    assert "eval-003" in labels
    assert [json.loads(j.value) for j in at.json] == [{"state": "done"}]
    assert any("could not be read" in w.value for w in at.warning)
    assert "No runs yet" not in page_text(at)
