"""The Train page (AppTest): job forms, the job list with progress and curves, Stop and Resume."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kalm import jobs

PAGE = Path(__file__).resolve().parents[2] / "pages" / "train.py"


def run_page(monkeypatch, runs: Path) -> AppTest:
    monkeypatch.setenv("KALM_RUNS_DIR", str(runs))
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def fake_job(runs: Path, name: str, state: str = "done") -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / jobs.JOB_FILE).write_text(json.dumps({
        "kind": "ground", "argv": ["ground", "--data", "d.npz", "--out", str(run)],
        "command": f"python -m kalm ground --data d.npz --out {run}", "run_dir": str(run),
        "stdout": None, "pid": 0, "pgid": 0, "create_time": None,
        "started": time.time() - 60, "state": state, "returncode": 0, "ended": time.time()}))
    (run / "status.json").write_text(json.dumps({"stage": "ground", "state": state, "step": 20,
                                                 "total": 20, "message": "finished"}))
    rows = ["step,loss,loss_action,lr,val_rollout_action"]
    rows += [f"{s},{2.0 / s},{1.0 / s},0.0003,{'' if s % 5 else 0.5 / s}" for s in range(1, 21)]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    (run / jobs.LOG_FILE).write_text("ground: 100%| 20/20 [00:05<00:00]\ngrounded model in x\n")
    return run


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, [b.label for b in at.button]
    return found[0]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_forms_render_without_jobs(monkeypatch, tmp_path):
    at = run_page(monkeypatch, tmp_path / "runs")
    assert at.title[0].value == "Train"
    labels = [b.label for b in at.button]
    assert "Start grounding" in labels and "Start imagination" in labels
    assert any("No jobs yet" in i.value for i in at.info)
    # The grounding form offers the GroundConfig fields, with the preset's defaults.
    from kalm.llm.config import PRESETS

    steps = at.number_input(key="ground-cpu-steps")
    assert steps.value == PRESETS["cpu"]["steps"]
    at.selectbox(key="ground-preset").set_value("tiny").run()
    assert at.number_input(key="ground-tiny-steps").value == PRESETS["tiny"]["steps"]
    # Offline RL: its form when kalm.rl and the `train` command exist, else a message.
    if "Start training" not in labels:
        assert any("Offline RL cannot be started" in i.value for i in at.info)


def test_job_list_shows_state_progress_curves_and_log(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    fake_job(runs, "ground-old", "done")
    at = run_page(monkeypatch, runs)
    labels = [e.label for e in at.expander]
    assert "ground-old · ground · done" in labels
    assert len(at.get("plotly_chart")) == 1
    bars = at.get("progress")
    assert bars and bars[0].value == 100
    assert any("grounded model in x" in c.value for c in at.code)
    # A finished job has nothing to resume or stop; a failed or stopped one can be resumed.
    assert not any(b.label in ("Resume", "Stop") for b in at.button)
    fake_job(runs, "ground-failed", "failed")
    at.run()
    assert "ground-failed · ground · failed" in [e.label for e in at.expander]
    assert [b.label for b in at.button].count("Resume") == 1


def test_bad_names_and_existing_folders_give_messages(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    at = run_page(monkeypatch, runs)
    at.text_input(key="ground-name").set_value("../escape")
    button(at, "Start grounding").click().run()
    assert not at.exception
    assert any("'..' is not allowed" in e for e in errors(at)), errors(at)
    assert not (tmp_path / "escape").exists()

    (runs / "taken").mkdir(parents=True)
    (runs / "taken" / "keep.txt").write_text("x")
    at.text_input(key="ground-name").set_value("taken")
    button(at, "Start grounding").click().run()
    assert any("Use it even if it exists" in e for e in errors(at)), errors(at)
    assert not (runs / "taken" / jobs.JOB_FILE).exists()

    at.text_input(key="ground-name").set_value("ok-name")
    at.text_input(key="ground-cpu-objective_weights").set_value("{not json")
    button(at, "Start grounding").click().run()
    assert any("not valid JSON" in e for e in errors(at)), errors(at)
    assert not (runs / "ok-name").exists()


def test_start_from_the_form_then_stop_and_resume(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    at = run_page(monkeypatch, runs)
    at.text_input(key="ground-name").set_value("g1")
    button(at, "Start grounding").click().run()
    assert not errors(at), errors(at)
    assert any("Started ground job **g1**" in s.value for s in at.success)
    rec = json.loads((runs / "g1" / jobs.JOB_FILE).read_text())
    assert rec["argv"][:2] == ["ground", "--data"] and "--preset" in rec["argv"]
    assert rec["state"] == "running"

    button(at, "Stop").click().run()
    assert not at.exception
    st = jobs.job_status(runs / "g1")
    assert st["state"] == "stopped" and not st["alive"]
    assert "g1 · ground · stopped" in [e.label for e in at.expander]

    button(at, "Resume").click().run()
    assert jobs.job_status(runs / "g1")["state"] == "running"
    assert jobs.stop_job(runs / "g1")["state"] == "stopped"


def test_imagine_form_builds_the_imagine_command(monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    at = run_page(monkeypatch, runs)
    at.text_input(key="imagine-name").set_value("im")
    at.multiselect(key="imagine-suites").set_value(["easy"])
    at.number_input(key="imagine-limit").set_value(3)
    at.number_input(key="imagine-per-goal").set_value(2)
    at.checkbox(key="imagine-explain").set_value(False)
    button(at, "Start imagination").click().run()
    assert not errors(at), errors(at)
    try:
        argv = json.loads((runs / "im" / jobs.JOB_FILE).read_text())["argv"]
        model = at.selectbox(key="imagine-model").value
        assert argv == ["imagine", "--model", model, "--suite", "easy", "--per-goal", "2",
                        "--seed", "0", "--out", str(runs / "im"), "--batch-size", "32",
                        "--limit", "3", "--no-explain"]
    finally:
        jobs.stop_job(runs / "im")
    at.multiselect(key="imagine-suites").set_value([])
    at.text_input(key="imagine-name").set_value("im2")
    button(at, "Start imagination").click().run()
    assert any("at least one suite" in e for e in errors(at)), errors(at)


@pytest.mark.slow
def test_offline_rl_form_trains_a_policy(monkeypatch, tmp_path):
    """The offline RL form's command runs to a trained policy (a short run, hashed goal texts)."""
    runs = tmp_path / "runs"
    at = run_page(monkeypatch, runs)
    if not any(b.label == "Start training" for b in at.button):
        pytest.skip("offline RL (kalm.rl and the `train` command) is not in this version")
    at.text_input(key="train-name").set_value("rl")
    at.number_input(key="train-steps").set_value(100)
    at.number_input(key="train-steps_per_epoch").set_value(50)
    at.text_input(key="train-embedder").set_value("hash:32")
    button(at, "Start training").click().run()
    assert not errors(at), errors(at)
    argv = json.loads((runs / "rl" / jobs.JOB_FILE).read_text())["argv"]
    assert argv[:3] == ["train", "--real", str(Path(at.selectbox(key="train-real").value))]
    assert "--hidden-units" not in argv  # unchanged options stay off the command line
    deadline = time.time() + 300
    while jobs.job_status(runs / "rl")["state"] == "running" and time.time() < deadline:
        time.sleep(1)
    st = jobs.job_status(runs / "rl")
    assert st["state"] == "done", jobs.tail_log(runs / "rl")
    assert (runs / "rl" / "policy" / "policy.json").is_file()
    at.run()
    assert "rl · train · done" in [e.label for e in at.expander]
    assert len(at.get("plotly_chart")) == 1
