"""The Compare page (AppTest): policies on the same seeded episodes, cached results, videos."""

import json
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGE = Path(__file__).resolve().parents[2] / "pages" / "compare.py"


def run_page(monkeypatch, runs: Path) -> AppTest:
    monkeypatch.setenv("KALM_RUNS_DIR", str(runs))
    at = AppTest.from_file(str(PAGE), default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, starts: str):
    found = [b for b in at.button if b.label.startswith(starts)]
    assert found, [b.label for b in at.button]
    return found[0]


def choose(at: AppTest, suites: list[str], episodes: int) -> None:
    at.multiselect(key="cmp-suites").set_value(suites)
    at.number_input(key="cmp-episodes").set_value(episodes)
    at.run()


def success(cell: str) -> float:
    return float(str(cell).split()[0])


def test_expert_beats_random_and_results_are_cached(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    at = run_page(monkeypatch, runs)
    shipped = PAGE.parents[1] / "assets" / "policies"
    # the page opens on the shipped KALM and real-only policies
    assert at.multiselect(key="cmp-policies").value == [str((shipped / n).resolve())
                                                       for n in ("kalm", "real_only")]
    assert any("Press **Evaluate**" in i.value for i in at.info)
    at.multiselect(key="cmp-policies").set_value(["expert", "random"])
    choose(at, ["train"], 12)
    button(at, "Evaluate expert, random").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.warning, [w.value for w in at.warning]

    table = at.dataframe[0].value
    assert list(table.index) == ["expert", "random"]
    assert success(table.loc["expert", "train"]) > success(table.loc["random", "train"])
    assert len(at.get("plotly_chart")) == 1
    episodes = at.dataframe[1].value
    assert set(episodes.columns) >= {"policy", "category", "goal", "success", "length"}
    assert len(episodes) > 0 and not episodes["success"].any()  # failures only, by default
    at.toggle(key="cmp-failures").set_value(False).run()
    assert len(at.dataframe[1].value) == 24  # 12 episodes x 2 policies

    results = sorted((runs / "compare-cache").glob("*/result.json"))
    assert len(results) == 2
    assert all(json.loads(p.read_text())["episodes_per_category"] == 12 for p in results)

    # A fresh session (a reload) shows the cached results without evaluating again.
    monkeypatch.setenv("KALM_RUNS_DIR", str(runs))
    again = AppTest.from_file(str(PAGE), default_timeout=60)
    again.run()
    again.multiselect(key="cmp-policies").set_value(["expert", "random"])
    choose(again, ["train"], 12)
    t0 = time.perf_counter()
    again.run()
    assert time.perf_counter() - t0 < 10
    assert not any(b.label.startswith("Evaluate") for b in again.button)
    assert list(again.dataframe[0].value.index) == ["expert", "random"]


def test_side_by_side_video_of_the_same_episode(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    at = run_page(monkeypatch, runs)
    at.multiselect(key="cmp-policies").set_value(["expert", "random"])
    choose(at, ["easy"], 3)  # move goals: one-step episodes, quick to render
    button(at, "Evaluate").click().run()
    episode = at.selectbox(key="cmp-episode")
    assert "expert" in episode.format_func(episode.value)
    button(at, "Render video").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.get("video")) == 1
    videos = list((runs / "compare-cache" / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_a_policy_that_cannot_load_is_a_message(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    broken = runs / "broken-lm"
    broken.mkdir(parents=True)
    (broken / "grounded.json").write_text("{}")  # looks like a grounded model, is not one
    at = run_page(monkeypatch, runs)
    assert any("broken-lm" in o for o in at.multiselect(key="cmp-policies").options)
    spec = "llm:" + str(broken.resolve())
    at.multiselect(key="cmp-policies").set_value(["expert", spec])
    choose(at, ["easy"], 2)
    button(at, "Evaluate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("is not available" in w.value for w in at.warning), [w.value for w in at.warning]
    assert list(at.dataframe[0].value.index) == ["expert"]


def test_metaworld_expert_vs_random_with_a_side_by_side_video(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    at = run_page(monkeypatch, runs)
    at.selectbox(key="cmp-env").set_value("metaworld").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="cmp-policies").value == ["expert", "random"]
    options = at.multiselect(key="cmp-policies").options
    assert "trained: assets/policies/metaworld/kalm-bc" in options  # Meta-World's own policies
    assert "trained: assets/policies/kalm" not in options  # no CLEVR-trained policy
    choose(at, ["train"], 2)
    button(at, "Evaluate expert, random").click().run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    table = at.dataframe[0].value
    assert success(table.loc["expert", "train"]) > success(table.loc["random", "train"])
    results = [json.loads(p.read_text()) for p in (runs / "compare-cache").glob("*/result.json")]
    assert all(r["episodes"][0]["goal"]["kind"] == "task" for r in results)  # Meta-World goals
    button(at, "Render video").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.get("video")) == 1
