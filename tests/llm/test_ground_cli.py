"""`python -m kalm ground` end to end with a tiny LM saved as a local HF folder."""

import json

import pytest

from kalm.cli import main
from kalm.data.collect import collect_dataset
from kalm.llm.base import tiny_lm


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    lm, tok = tiny_lm()
    d = tmp_path_factory.mktemp("tinylm")
    lm.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_ground_cli_trains_resumes_and_reports(tmp_path, tiny_folder, capsys):
    data = tmp_path / "d.npz"
    collect_dataset(episodes=8, seed=0, out=data, progress=False)
    out = tmp_path / "run"
    args = ["ground", "--data", str(data), "--out", str(out), "--preset", "tiny",
            "--model", str(tiny_folder), "--steps", "3", "--quiet", "--no-bf16"]
    assert main(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steps"] == 3 and cfg["model"] == str(tiny_folder) and cfg["bf16"] is False
    assert json.loads((out / "status.json").read_text())["state"] == "done"
    assert (out / "model" / "grounded.json").exists()
    # same command with more steps resumes; a changed design is refused
    assert main(args[:-4] + ["--steps", "5", "--quiet", "--no-bf16"]) == 0
    assert json.loads((out / "status.json").read_text())["step"] == 5
    assert main(args + ["--state-tokens", "ball"]) == 2
    assert "different config" in capsys.readouterr().err


def test_ground_cli_missing_data(tmp_path, capsys):
    assert main(["ground", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "r")]) == 2
    assert "collect" in capsys.readouterr().err


@pytest.mark.slow
def test_ground_runs_unchanged_under_accelerate_launch_ddp(tmp_path, tiny_folder):
    """Two CPU processes (gloo DDP): the same command trains, only the main process writes."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists() and shutil.which("accelerate") is None:
        pytest.skip("accelerate launcher not installed")
    data = tmp_path / "d.npz"
    collect_dataset(episodes=8, seed=0, out=data, progress=False)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(launcher if launcher.exists() else "accelerate"), "launch", "--cpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "kalm", "ground", "--data", str(data), "--out", str(out),
           "--preset", "tiny", "--model", str(tiny_folder), "--steps", "3", "--quiet"]
    r = subprocess.run(cmd, env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "status.json").read_text())["state"] == "done"
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 4  # header + 3 steps, once
    assert (out / "model" / "codec.safetensors").exists()


def test_list_options_take_spaces_or_commas():
    from kalm.cli import build_parser

    p = build_parser()
    base = ["ground", "--data", "d.npz", "--out", "o"]
    spaced = p.parse_args(base + ["--objectives", "rollout", "dynamics"])
    commas = p.parse_args(base + ["--objectives", "rollout,dynamics"])
    mixed = p.parse_args(base + ["--objectives", "rollout,dynamics", "explain"])
    assert spaced.objectives == commas.objectives == ["rollout", "dynamics"]
    assert mixed.objectives == ["rollout", "dynamics", "explain"]
    assert p.parse_args(base).objectives is None  # the config's default applies
