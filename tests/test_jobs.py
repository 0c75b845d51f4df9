"""Background jobs (kalm.jobs): real detached CLI runs, stopping, locks, and safe run paths."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from kalm import jobs


@pytest.fixture
def runs(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("KALM_RUNS_DIR", str(root))
    return root


def wait_for(predicate, timeout=90.0, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def gone(pid: int) -> bool:
    jobs._reap()
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------------------- paths
def test_safe_run_path_accepts_names_inside_the_runs_folder(runs):
    assert jobs.safe_run_path("ground-1") == runs / "ground-1"
    assert jobs.safe_run_path("compare/abc_1.2") == runs / "compare" / "abc_1.2"
    assert jobs.safe_run_path(str(runs / "x")) == runs / "x"
    assert jobs.safe_run_path("  y  ") == runs / "y"


@pytest.mark.parametrize("name", [
    "", "   ", "..", "../escape", "a/../../escape", "a/..", ".hidden", "a/.git", "has space",
    "semi;colon", "$(rm -rf)", "/etc", "/tmp/elsewhere", ".",
])
def test_safe_run_path_refuses_escapes_and_odd_names(runs, name):
    with pytest.raises(jobs.JobError):
        jobs.safe_run_path(name)


def test_safe_run_path_refuses_the_root_itself_and_symlinks_out(runs, tmp_path):
    with pytest.raises(jobs.JobError, match="runs folder itself"):
        jobs.safe_run_path(str(runs))
    outside = tmp_path / "outside"
    outside.mkdir()
    (runs / "link").symlink_to(outside)
    with pytest.raises(jobs.JobError, match="outside the runs folder"):
        jobs.safe_run_path("link/run")
    with pytest.raises(jobs.JobError, match="outside the runs folder"):
        jobs.safe_run_path("link")
    inside = runs / "real"
    inside.mkdir()
    (runs / "alias").symlink_to(inside)
    assert jobs.safe_run_path("alias/run") == runs / "alias" / "run"


def test_start_job_refuses_paths_outside_and_creates_nothing(runs, tmp_path):
    with pytest.raises(jobs.JobError):
        jobs.start_job("collect", ["--episodes", "1", "--out", "x.npz"], "../evil")
    assert not (tmp_path / "evil").exists()
    with pytest.raises(jobs.JobError, match="kind"):
        jobs.start_job("rm -rf", [], "ok")


# ------------------------------------------------------------------------------- real jobs
def test_short_job_runs_to_done(runs):
    run = runs / "collect-3"
    job = jobs.start_job("collect", ["--episodes", "3", "--seed", "1", "--out",
                                     str(run / "data.npz")], "collect-3")
    assert job["state"] == "running" and job["pid"] > 0 and job["pgid"] == job["pid"]
    assert job["command"].startswith("python -m kalm collect --episodes 3")

    st = wait_for(lambda: (s := jobs.job_status(run))["state"] != "running" and s)
    assert st["state"] == "done", jobs.tail_log(run)
    assert st["returncode"] == 0 and st["progress"] == 1.0 and st["ended"] >= st["started"]
    assert (run / "data.npz").is_file()
    assert "wrote" in jobs.tail_log(run)
    rec = json.loads((run / jobs.JOB_FILE).read_text())
    assert rec["argv"][:3] == ["collect", "--episodes", "3"] and rec["state"] == "done"
    assert [j["name"] for j in jobs.list_jobs()] == ["collect-3"]
    wait_for(lambda: gone(job["pid"]), timeout=20)  # the worker exits right after its record
    assert not (run / jobs.LOCK_FILE).exists()


def test_long_job_refuses_a_second_job_then_stops_and_resumes(runs):
    run = runs / "collect-long"
    argv = ["--episodes", "100000", "--out", str(run / "data.npz")]
    job = jobs.start_job("collect", argv, "collect-long")
    # Wait for real progress (some episodes saved), then try to start a second job there.
    wait_for(lambda: (jobs.job_status(run)["step"] or 0) > 0)
    with pytest.raises(jobs.JobRunning):
        jobs.start_job("collect", ["--episodes", "2", "--out", str(run / "other.npz")],
                       "collect-long", allow_existing=True)
    with pytest.raises(jobs.JobRunning):
        jobs.resume_job("collect-long")

    st = jobs.stop_job("collect-long", timeout=20)
    assert st["state"] == "stopped", jobs.tail_log(run)
    assert not st["alive"]
    assert gone(job["pid"]) and not jobs._group_alive(job["pgid"])
    assert "interrupted; finished work was saved" in jobs.tail_log(run)
    assert list((run / "data.npz.partial").glob("*.npz")), "collect kept no partial episodes"

    # Resume: the same command again; collect starts from its partial episodes.
    again = jobs.resume_job("collect-long")
    assert again["state"] == "running" and again["argv"] == ["collect", *argv]
    wait_for(lambda: jobs.tail_log(run).count("collect:") >= 2)
    st = jobs.stop_job("collect-long", timeout=20)
    assert st["state"] == "stopped" and gone(again["pid"])
    assert jobs.tail_log(run, lines=1000).count("started: python -m kalm collect") == 2


def test_existing_folder_needs_confirmation_and_failures_are_recorded(runs):
    run = runs / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("keep me")
    with pytest.raises(jobs.JobExists):
        jobs.start_job("collect", ["--episodes", "0", "--out", str(run / "d.npz")], "mine")
    assert not (run / jobs.JOB_FILE).exists()

    jobs.start_job("collect", ["--episodes", "0", "--out", str(run / "d.npz")], "mine",
                   allow_existing=True)
    st = wait_for(lambda: (s := jobs.job_status(run))["state"] != "running" and s)
    assert st["state"] == "failed" and st["returncode"] == 2
    assert "error: --episodes must be at least 1" in jobs.tail_log(run)
    assert (run / "notes.txt").read_text() == "keep me"


def test_stdout_file_is_kept_apart(runs):
    run = runs / "eval"
    jobs.start_job("evaluate", ["--policy", "expert", "--suite", "easy", "--episodes", "2",
                                "--json"], "eval", stdout_name="result.json")
    st = wait_for(lambda: (s := jobs.job_status(run))["state"] != "running" and s)
    assert st["state"] == "done", jobs.tail_log(run)
    result = json.loads((run / "result.json").read_text())
    assert result["categories"]["easy"]["episodes"] == 2
    assert not list(run.glob(".*.partial"))


# ------------------------------------------------------------------------------- records
def test_stale_lock_of_a_dead_process_is_cleaned(runs):
    run = runs / "stale"
    run.mkdir()
    (run / jobs.LOCK_FILE).write_text(json.dumps({"pid": dead_pid(), "create_time": 1.0}))
    assert jobs._lock_holder(run) is None
    assert not (run / jobs.LOCK_FILE).exists()


def test_live_lock_refuses(runs):
    run = runs / "held"
    run.mkdir()
    me = psutil.Process(os.getpid())
    (run / jobs.LOCK_FILE).write_text(json.dumps({"pid": me.pid, "create_time": me.create_time()}))
    with pytest.raises(jobs.JobRunning):
        jobs.start_job("collect", ["--episodes", "1", "--out", str(run / "d.npz")], "held",
                       allow_existing=True)
    assert (run / jobs.LOCK_FILE).exists()


def test_a_running_record_whose_worker_died_is_repaired(runs):
    run = runs / "orphan"
    run.mkdir()
    pid = dead_pid()
    (run / jobs.JOB_FILE).write_text(json.dumps({
        "kind": "collect", "argv": ["collect"], "command": "python -m kalm collect", "pid": pid,
        "pgid": pid, "create_time": None, "started": time.time(), "state": "running",
        "returncode": None, "ended": None}))
    (run / "status.json").write_text(json.dumps({"state": "running", "step": 5, "total": 10,
                                                 "message": "half way"}))
    st = jobs.job_status(run)
    assert st["state"] == "failed" and not st["alive"] and "note" in st
    assert st["progress"] == 0.5 and st["message"] == "half way"
    assert json.loads((run / jobs.JOB_FILE).read_text())["state"] == "failed"
    (run / jobs.STOP_FILE).write_text("1")
    rec = json.loads((run / jobs.JOB_FILE).read_text())
    rec["state"] = "running"
    (run / jobs.JOB_FILE).write_text(json.dumps(rec))
    assert jobs.job_status(run)["state"] == "stopped"


def test_tail_log_shows_the_latest_progress_bar(tmp_path):
    (tmp_path / jobs.LOG_FILE).write_text("start\nbar 1/10 [\rbar 5/10 [\rbar 9/10 [\ndone\n\n")
    assert jobs.tail_log(tmp_path) == "start\nbar 9/10 [\ndone"
    assert jobs.tail_log(tmp_path, lines=1) == "done"
    assert jobs._log_progress(tmp_path) == (9, 10)
    assert jobs.tail_log(tmp_path / "missing") == ""


def test_read_metrics_parses_numbers_and_blanks(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,loss,val_loss,note\n1,0.5,,a\n2,0.25,0.3,b\n")
    rows = jobs.read_metrics(tmp_path)
    assert rows == [{"step": 1.0, "loss": 0.5, "val_loss": None, "note": "a"},
                    {"step": 2.0, "loss": 0.25, "val_loss": 0.3, "note": "b"}]
    assert jobs.read_metrics(tmp_path / "missing") == []


# ------------------------------------------------------------------------------- forms
def test_cli_options_and_argv_for_ground():
    from kalm.llm.config import PRESETS, GroundConfig

    defaults = jobs.config_defaults(GroundConfig, PRESETS["tiny"])
    assert defaults["steps"] == PRESETS["tiny"]["steps"]
    specs = {s.dest: s for s in jobs.cli_options("ground", defaults)}
    assert specs["steps"].kind == "int" and specs["steps"].default == PRESETS["tiny"]["steps"]
    assert specs["bf16"].kind == "bool" and specs["lr"].kind == "float"
    assert specs["lora_targets"].kind == "list" and specs["objective_weights"].kind == "json"
    assert specs["preset"].kind == "choice" and specs["restart"].kind == "flag"
    assert "default:" not in specs["steps"].help and specs["steps"].help

    values = {k: s.default for k, s in specs.items()}
    assert jobs.options_argv(list(specs.values()), values) == []
    values.update(steps=7, bf16=True, lora_targets=["q_proj"], objective_weights={"rollout": 1.0},
                  restart=True)
    argv = jobs.options_argv(list(specs.values()), values)
    assert argv[argv.index("--steps") + 1] == "7"
    assert "--bf16" in argv and "--restart" in argv
    assert argv[argv.index("--lora-targets") + 1] == "q_proj"
    assert json.loads(argv[argv.index("--objective-weights") + 1]) == {"rollout": 1.0}
    values["bf16"] = False
    specs["bf16"].default = True
    assert "--no-bf16" in jobs.options_argv(list(specs.values()), values)

    from kalm.cli import build_parser

    args = build_parser().parse_args(["ground", "--data", "d.npz", "--out", "o", *argv])
    assert args.steps == 7 and args.lora_targets == ["q_proj"]
    with pytest.raises(jobs.JobError):
        jobs.cli_options("no-such-command")
