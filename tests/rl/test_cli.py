"""`python -m kalm train` then `evaluate --policy RUN` end to end, and the one-line errors."""

import json

import pytest

from kalm.cli import main
from kalm.goals.suites import suite_items, write_goals_file

TINY = ["--embedder", "hash:32", "--steps", "20", "--steps-per-epoch", "10", "--batch-size", "32",
        "--hidden-units", "32", "32", "--state-units", "16", "--goal-units", "16", "--quiet"]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def trained(real_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "bc"
    assert main(["train", "--algo", "DiscreteBC", "--real", str(real_path), "--out", str(out),
                 *TINY]) == 0
    return out


def test_train_then_evaluate_a_suite(trained, capsys):
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["algo"] == "discrete_bc" and cfg["hidden_units"] == [32, 32] and cfg["gamma"] == 0.99
    assert main(["evaluate", "--policy", str(trained), "--suite", "train,easy", "--episodes", "2",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["policy"] == f"discrete_bc:{trained.name}"
    assert set(res["categories"]) == {"train", "easy"}
    assert res["categories"]["train"]["episodes"] == 2


def test_a_goals_file_drives_evaluation_of_a_trained_policy(trained, tmp_path, capsys):
    items = suite_items("rephrase")[:2] + suite_items("hard")[:1]
    goals = write_goals_file(tmp_path / "goals.jsonl", items)
    assert main(["evaluate", "--policy", str(trained), "--goals", str(goals), "--episodes", "2",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["categories"]) == {"rephrase", "hard"}
    texts = {e["text"] for e in res["episodes"]}
    assert texts <= {it.text for it in items}


def test_rerunning_the_train_command_resumes_and_a_changed_one_is_refused(trained, real_path, capsys):
    args = ["train", "--algo", "DiscreteBC", "--real", str(real_path), "--out", str(trained), *TINY]
    assert main(args) == 0
    assert "already trained" in capsys.readouterr().out
    assert main(args + ["--lr", "0.01"]) == 2
    assert "another config" in _err_line(capsys)


@pytest.mark.parametrize("extra,needle", [
    (["--algo", "PPO"], "unknown algorithm"),
    (["--embedder", "bert"], "unknown embedder"),
    (["--reward", "shaped"], "reward"),
    (["--imagined-ratio", "2"], "imagined_ratio"),
    (["--filter", "pretty"], "unknown filter"),
    (["--imagined", "nope/imagined.npz"], "not found"),
    (["--algo", "TD3+BC"], "continuous"),
])
def test_bad_train_options_give_one_line_errors(real_path, tmp_path, capsys, extra, needle):
    code = main(["train", "--real", str(real_path), "--out", str(tmp_path / "r"), *TINY, *extra])
    assert code == 2
    assert needle in _err_line(capsys)


def test_missing_or_wrong_data_files(tmp_path, capsys):
    assert main(["train", "--real", str(tmp_path / "none.npz"), "--out", str(tmp_path / "r")]) == 2
    assert "collect" in _err_line(capsys)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["train", "--real", str(bad), "--out", str(tmp_path / "r2"), *TINY]) == 2
    assert "not a readable kalm dataset" in _err_line(capsys)


def test_evaluate_refuses_folders_that_hold_no_trained_policy(tmp_path, capsys):
    ground = tmp_path / "ground"
    ground.mkdir()
    (ground / "status.json").write_text(json.dumps({"stage": "ground", "state": "done"}))
    assert main(["evaluate", "--policy", str(ground), "--suite", "train", "--episodes", "1"]) == 2
    assert "grounding run" in _err_line(capsys)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "status.json").write_text(json.dumps(
        {"stage": "train", "state": "running", "step": 5, "total": 100}))
    assert main(["evaluate", "--policy", str(unfinished), "--suite", "train", "--episodes", "1"]) == 2
    assert "unfinished train run" in _err_line(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--policy", str(empty), "--suite", "train", "--episodes", "1"]) == 2
    assert "no trained policy" in _err_line(capsys)
