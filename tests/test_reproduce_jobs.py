"""`reproduce --jobs N`: the units' scheduler (order, overlap, failures) and the CLI's option."""

import threading
import time

import pytest

from kalm.reproduce import ReproduceError, _moved, _Units, _worker_cli, auto_jobs


def _units(jobs=2):
    return _Units(jobs, threading.RLock())


def test_auto_jobs_is_two_workers_on_two_cores_or_more_and_inline_on_one():
    assert auto_jobs(1) == 1
    assert auto_jobs(2) == 2 and auto_jobs(16) == 2


def test_units_wait_for_the_stages_they_need_and_run_two_at_a_time():
    sched = _units(jobs=2)
    log, lock = [], threading.Lock()
    live, most = [0], [0]

    def unit(name, seconds=0.15):
        def run():
            with lock:
                live[0] += 1
                most[0] = max(most[0], live[0])
                log.append(("start", name))
            time.sleep(seconds)
            with lock:
                live[0] -= 1
                log.append(("end", name))
        return run

    finished = []
    sched.add("a", (), unit("a1"))
    sched.add("a", (), unit("a2"))
    sched.add("a", (), unit("a3"))
    sched.close("a", lambda: finished.append("a"))
    sched.add("b", ("a",), unit("b1", 0.05))
    sched.add("c", (), unit("c1", 0.05))  # needs nothing: starts before b1
    sched.close("b", lambda: finished.append("b"))
    sched.close("c", lambda: finished.append("c"))
    sched.wait("a")
    assert "a" in finished
    sched.wait()
    sched.stop(interrupted=False)
    assert most[0] == 2  # never more than jobs at once, and two did overlap
    starts = [n for what, n in log if what == "start"]
    ends = [n for what, n in log if what == "end"]
    assert starts.index("c1") < starts.index("b1")
    # b1 starts only once every unit of stage a has ended (and a's finish ran)
    assert log.index(("start", "b1")) > max(log.index(("end", n)) for n in ("a1", "a2", "a3"))
    assert sorted(ends) == ["a1", "a2", "a3", "b1", "c1"]
    assert finished.index("a") < finished.index("b")


def test_a_unit_can_wait_for_one_unit_of_another_stage_instead_of_the_whole_stage():
    sched = _units(jobs=2)
    log = []

    def unit(name, seconds):
        def run():
            time.sleep(seconds)
            log.append(name)
        return run

    sched.add("train", (), unit("train/fast", 0.05), key="fast")
    sched.add("train", (), unit("train/slow", 0.4), key="slow")
    sched.close("train", lambda: log.append("train done"))
    # the evaluation of the fast policy starts once it is trained, before the slow one ends
    sched.add("evaluate", ("train/fast",), unit("evaluate/fast", 0.05), key="fast")
    sched.close("evaluate", lambda: None)
    assert sched.known("train/slow") and not sched.known("train/other")
    sched.wait()
    sched.stop(interrupted=False)
    assert log.index("evaluate/fast") < log.index("train/slow") < log.index("train done")


def test_a_failed_unit_stops_new_ones_and_its_error_is_raised_when_the_running_ones_end():
    sched = _units(jobs=2)
    ran, slow_done = [], []

    def boom():
        time.sleep(0.05)
        raise ValueError("unit failed")

    def slow():
        time.sleep(0.3)
        slow_done.append(True)

    sched.add("a", (), boom)
    sched.add("a", (), slow)
    sched.add("a", (), lambda: ran.append("late"))  # queued behind the two: never starts
    sched.close("a", lambda: ran.append("finish"))
    with pytest.raises(ValueError, match="unit failed"):
        sched.wait()
    assert slow_done == [True]  # the running unit was let finish
    assert ran == []  # nor the queued unit, nor the stage's finish
    sched.stop(interrupted=False)


def test_waiting_on_a_stage_nothing_can_finish_is_an_error_not_a_hang():
    sched = _units(jobs=2)
    sched.add("b", ("a",), lambda: None)  # stage a never comes
    with pytest.raises(ReproduceError, match="will not finish: a"):
        sched.wait()
    with pytest.raises(ReproduceError, match="not started"):
        sched.wait("zzz")
    sched.stop(interrupted=False)


def test_a_unit_s_command_runs_in_a_worker_process_with_its_thread_limit(tmp_path):
    sched = _units(jobs=2)
    log = tmp_path / "collect.log"
    out = tmp_path / "real.npz"
    try:
        sched.call(_worker_cli, ["collect", "--episodes", "2", "--seed", "0", "--out", str(out),
                                 "--quiet"], str(log))
    finally:
        sched.stop(interrupted=False)
    assert out.exists()
    assert "$ python -m kalm collect" in log.read_text()


def test_the_cli_refuses_a_negative_jobs(tmp_path, capsys):
    from kalm.cli import main

    assert main(["reproduce", "--preset", "cpu", "--grounded", "assets/grounded/clevr",
                 "--jobs", "-1", "--out", str(tmp_path / "r")]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_recorded_command_is_compared_without_its_run_folder():
    old = ["train", "--real", "runs/a/data/real.npz", "--out", "runs/a/train/dt-s0", "--steps", "5"]
    new = ["train", "--real", "runs/b/data/real.npz", "--out", "runs/b/train/dt-s0", "--steps", "5"]
    assert _moved(old, "dt-s0") == _moved(new, "dt-s0")
    assert _moved(old, "dt-s0") != _moved(new[:-1] + ["6"], "dt-s0")
    # a folder that merely starts like the run's is not rewritten
    other = ["train", "--real", "runs/ab/x.npz", "--out", "runs/a/train/dt-s0"]
    assert _moved(other, "dt-s0")[2] == "runs/ab/x.npz"
