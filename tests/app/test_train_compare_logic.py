"""kalm.ui.train and kalm.ui.compare: the Train and Compare pages' logic, without Streamlit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kalm import jobs
from kalm.ui import compare as cmp
from kalm.ui import train as tr


def _spec(dest, kind, default=None, **kw) -> jobs.OptionSpec:
    return jobs.OptionSpec(dest=dest, flag="--" + dest.replace("_", "-"), kind=kind,
                           default=default, help=kw.pop("help", ""), **kw)


def test_option_inputs_by_kind_and_their_parsing():
    inp = tr.option_input(_spec("quiet_log", "flag", False))
    assert inp.widget == "checkbox" and inp.kwargs["label"] == "quiet log"
    inp = tr.option_input(_spec("algo", "choice", "iql", choices=["bc", "iql"]))
    assert inp.widget == "selectbox" and inp.kwargs["index"] == 1
    inp = tr.option_input(_spec("steps", "int", 100))
    assert inp.widget == "number_input" and inp.parse(3.0) == 3 and isinstance(inp.parse(3.0), int)
    inp = tr.option_input(_spec("lr", "float", 0.001))
    assert inp.kwargs["format"] == "%g" and inp.kwargs["step"] == pytest.approx(1e-4)
    inp = tr.option_input(_spec("hidden", "list", [256, 256], item_type=int))
    assert inp.kwargs["value"] == "256 256" and inp.parse("64, 32") == [64, 32]
    with pytest.raises(ValueError, match="is not a list of int"):
        inp.parse("64 x")
    inp = tr.option_input(_spec("weights", "json", {"a": 1}))
    assert inp.parse('{"b": 2}') == {"b": 2}
    with pytest.raises(ValueError, match="not valid JSON"):
        inp.parse("{not json")
    assert tr.option_input(_spec("name", "str", None)).kwargs["value"] == ""


def test_split_options_puts_the_main_ones_first_and_hides_the_form_s_own():
    specs = [_spec(d, "int", 0) for d in ("seed", "out", "steps", "lr", "data")]
    first, rest = tr.split_options(specs, ("steps", "seed"))
    assert [s.dest for s in first] == ["steps", "seed"] and [s.dest for s in rest] == ["lr"]


def test_imagine_command_and_its_problems(tmp_path):
    argv = tr.imagine_argv("M", tmp_path / "im", suites=["easy"], per_goal=2, seed=0, batch=32,
                           limit=3, explain=False)
    assert argv == ["--model", "M", "--suite", "easy", "--per-goal", "2", "--seed", "0",
                    "--out", str(tmp_path / "im"), "--batch-size", "32", "--limit", "3",
                    "--no-explain"]
    argv = tr.imagine_argv("M", tmp_path, goals=tmp_path / "g.jsonl", per_goal=1, seed=1, batch=4,
                           max_steps=5, videos=2)
    assert argv[2:4] == ["--goals", str(tmp_path / "g.jsonl")] and argv[-4:] == [
        "--max-steps", "5", "--videos", "2"]
    assert tr.imagine_problems(None, True, ["easy"], None) == ["choose a grounded model first"]
    assert tr.imagine_problems("M", True, [], None) == ["choose at least one suite"]
    assert tr.imagine_problems("M", False, [], None)[0].startswith("upload a goals file")
    assert tr.imagine_problems("M", False, [], b"{bad")[0].startswith("goals file: ")
    good = json.dumps({"text": "Push the red ball to the left"}).encode()
    assert tr.imagine_problems("M", False, [], good) == []
    assert {n for _, _, n, _, _ in tr.IMAGINE_NUMBERS} == {
        "limit", "seed", "per_goal", "batch", "max_steps", "videos"}


def test_ground_and_train_problems():
    from kalm.llm.config import PRESETS, GroundConfig

    defaults = jobs.config_defaults(GroundConfig, PRESETS["tiny"])
    assert tr.ground_problems(["x: bad"], "d.npz", defaults, {}) == ["x: bad"]
    assert tr.ground_problems([], None, defaults, {}) == ["choose a dataset first"]
    assert tr.ground_problems([], "d.npz", defaults, {"max_steps_per_episode": 0})[0].startswith(
        "bad grounding options")
    assert tr.ground_problems([], "d.npz", defaults, {}) == []
    assert tr.train_problems([], True, None, {}, {}, None) == ["choose a real dataset first"]


def test_job_texts():
    job = {"name": "g1", "kind": "ground", "state": "done", "started": 1_000.0, "ended": 1_060.0,
           "returncode": 0, "progress": 1.0, "step": 20, "total": 20, "message": "finished"}
    assert tr.job_summary(job).startswith(":green[**done**] · ground · started ")
    assert tr.job_summary(job).endswith(" · 60 s · return code 0")
    assert tr.job_progress_text(job) == "20 / 20 · finished"
    assert not tr.resumable(job) and tr.resumable({**job, "state": "failed"})
    assert tr.resumable({**job, "message": "rerun to finish"})
    running = {**job, "state": "running", "progress": 0.5}
    assert tr.job_label(running) == "g1 · ground · running · 50%"
    assert tr.jobs_caption([job, running], 2.0) == "2 job(s), 1 running; refreshing every 2 s"


def test_curves_pick_losses_and_rates():
    rows = [{"step": s, "loss": 1 / s, "lr": 3e-4, "val_x": None if s % 2 else 0.5, "note": "a"}
            for s in range(1, 5)]
    df, x, numeric, default = tr.curve_columns(rows)
    assert x == "step" and "note" not in numeric and default == ["loss", "val_x"]
    assert len(tr.curves_figure(df, x, default).data) == 2
    assert tr.curve_columns([]) is None


def test_compare_cache_keys_commands_and_results(tmp_path, monkeypatch):
    monkeypatch.setenv("KALM_RUNS_DIR", str(tmp_path / "runs"))
    a = cmp.cache_dir("expert", ["train"], 5, 0)
    assert a == cmp.cache_dir("expert", ["train"], 5, 0) != cmp.cache_dir("expert", ["train"], 5, 1)
    assert a != cmp.cache_dir("expert", ["train"], 5, 0, "metaworld")
    assert a.parent == tmp_path / "runs" / cmp.CACHE and a.name.startswith("expert-")
    assert cmp.evaluate_argv("random", ["easy", "hard"], 3, 1) == [
        "--policy", "random", "--suite", "easy,hard", "--episodes", "3", "--seed", "1", "--json"]
    assert cmp.evaluate_argv("random", ["easy"], 3, 1, "metaworld")[-2:] == ["--env", "metaworld"]
    mw, clevr = cmp.policy_choices("metaworld"), cmp.policy_choices("clevr")
    assert {"expert", "random"} <= set(mw) and {"expert", "random"} <= set(clevr)
    # each environment lists only its own trained policies and grounded LMs
    assert any("assets/policies/metaworld/kalm-bc" in v for v in mw.values())
    assert any(k.startswith("llm:") and k.endswith("assets/grounded/metaworld") for k in mw)
    assert not any("metaworld" in v for v in clevr.values())
    assert any(v == "trained: assets/policies/kalm" for v in clevr.values())

    res = {"categories": {"train": {"success_rate": 0.5, "stderr": 0.1}},
           "episodes": [{"success": True, "text": "t0", "category": "train"},
                        {"success": False, "text": "t1", "category": "train"}]}
    a.mkdir(parents=True)
    (a / "result.json").write_text("progress...\n" + json.dumps(res) + "\n")
    found = cmp.gather({"expert": a, "random": tmp_path / "none"})
    assert found.results == {"expert": res} and found.missing(["expert", "random"]) == ["random"]
    other = {**res, "episodes": [{"success": True}, {"success": True}]}
    eps, n, first = cmp.shared_episodes({"expert": res, "random": other})
    assert n == 2 and first == 1
    labels = {"expert": "expert (scripted oracle)", "random": "random"}
    assert cmp.episode_label(1, eps, labels) == "#1 · train · t1 · expert ✗ random ✓"
    assert list(cmp.results_table({"expert": res}, labels).index) == ["expert"]
    assert cmp.video_path({"expert": a}, ["expert"], 0).suffix == ".mp4"


def test_side_by_side_episodes_holds_the_shorter_clips():
    def clip(n, v):
        return [np.full((4, 6, 3), v, np.uint8) for _ in range(n)]

    frames = cmp.side_by_side_episodes([("a", clip(3, 10)), ("b", clip(1, 20)), ("c", clip(2, 30))])
    assert len(frames) == 3 and frames[0].shape == (4, 18, 3)
    assert cmp.side_by_side_episodes([("a", clip(2, 1))])[1].shape == (4, 6, 3)


def test_failure_messages():
    assert cmp.failure_message(ValueError("no such policy")) == "no such policy"
    assert cmp.failure_message(OSError("gone")) == "OSError: gone"
    assert isinstance(cmp.Gathered().results, dict) and Path(cmp.CACHE).name == "compare-cache"


def test_the_train_page_s_commands_follow_the_environment_of_the_data_and_model(tmp_path):
    root = Path(__file__).resolve().parents[2]
    mw_data, clevr_data = root / "assets/data/metaworld1k.npz", root / "assets/data/aim4k.npz"
    assert tr.dataset_env(mw_data) == "metaworld" and tr.dataset_env(clevr_data) == "clevr"
    assert tr.dataset_env(tmp_path / "missing.npz") is None
    ground = jobs.cli_options("ground")
    argv = tr.ground_argv(str(mw_data), tmp_path / "g", "cpu", ground, {"env": "clevr"})
    assert argv[argv.index("--env") + 1] == "metaworld"
    assert "--env" not in tr.ground_argv(str(clevr_data), tmp_path / "g", "cpu", ground,
                                         {"env": "clevr"})
    train = jobs.cli_options("train")
    argv = tr.train_argv(tmp_path / "t", str(mw_data), None, train, {"env": "clevr"})
    assert argv[argv.index("--env") + 1] == "metaworld"
    # a model grounded on Meta-World imagines with --env metaworld; a goals file is read by its
    # environment's language
    model = root / "assets/grounded/metaworld"
    argv = tr.imagine_argv(str(model), tmp_path / "im", suites=["easy"], per_goal=1, seed=0,
                           batch=8, explain_constrained=True)
    assert argv[argv.index("--env") + 1] == "metaworld" and "--explain-constrained" in argv
    assert "--env" not in tr.imagine_argv(str(root / "assets/grounded/clevr"), tmp_path, suites=["easy"],
                                          per_goal=1, seed=0, batch=8)
    wall = json.dumps({"text": "Reach the target, with a wall in the way."}).encode()
    assert tr.imagine_problems(str(model), False, [], wall) == []
    assert tr.imagine_problems(str(root / "assets/grounded/clevr"), False, [], wall) != []
