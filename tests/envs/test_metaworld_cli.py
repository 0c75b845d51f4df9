"""collect and evaluate with --env metaworld, end to end on a tiny budget."""

from __future__ import annotations

import json

import numpy as np

from kalm.cli import main
from kalm.data.episodes import load_dataset


def test_collect_then_evaluate_expert_and_random(tmp_path, capsys):
    out = tmp_path / "mw.npz"
    main(["collect", "--env", "metaworld", "--episodes", "3", "--seed", "0", "--out", str(out)])
    ds = load_dataset(out)
    assert ds.env == "metaworld" and len(ds.episodes) == 3
    ep = ds.episodes[0]
    assert ep.observations.shape[1] == 91 and ep.actions.dtype == np.float32
    assert ep.actions.shape == (len(ep.observations) - 1, 4)
    capsys.readouterr()
    scores = {}
    for policy in ("expert", "random"):
        main(["evaluate", "--env", "metaworld", "--policy", policy, "--suite", "train,hard",
              "--episodes", "2", "--seed", "0", "--json", "--quiet"])
        report = json.loads(capsys.readouterr().out)
        assert set(report["categories"]) == {"train", "hard"}
        scores[policy] = np.mean([c["success_rate"] for c in report["categories"].values()])
    assert scores["expert"] > scores["random"]


def test_stages_not_built_for_metaworld_are_refused(tmp_path, capsys, monkeypatch):
    from kalm.envs import get_env

    # every stage is built for Meta-World now; one taken away is refused with a one-line error
    env = get_env("metaworld")
    assert "reproduce" in env.stages
    monkeypatch.setattr(env, "stages", tuple(s for s in env.stages if s != "reproduce"))
    rc = main(["reproduce", "--env", "metaworld", "--out", str(tmp_path / "run")])
    assert rc == 2
    assert "not built for Meta-World" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
