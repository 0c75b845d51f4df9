"""`python -m kalm reproduce --env metaworld` end to end on a tiny budget with a tiny LM."""

import json

import pytest

from kalm.cli import main
from kalm.reproduce import CATEGORIES, METHODS, NOVEL, STAGES, ReproduceError, make_config

ALGOS = ("bc", "td3_plus_bc")


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory):
    """A tiny Llama saved as a local HF folder: the base LM of the ground stage."""
    from kalm.llm.base import tiny_lm

    lm, tok = tiny_lm()
    d = tmp_path_factory.mktemp("tinylm")
    lm.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_tiny_metaworld_pipeline_tabulates_every_method_algorithm_and_category(
        tmp_path, tiny_lm_folder, monkeypatch, capsys):
    monkeypatch.setenv("KALM_CACHE_DIR", str(tmp_path / "cache"))
    # Meta-World episodes are 100-200 steps; the evaluations here stop after a few (the expert's
    # data is collected at full length: grounding needs successes)
    from kalm.reproduce import _Pipeline

    full_evaluate = _Pipeline.evaluate

    def short_evaluate(self):
        with monkeypatch.context() as m:
            m.setattr("kalm.envs.metaworld.sim.task_horizon", lambda task: 3)
            return full_evaluate(self)

    monkeypatch.setattr(_Pipeline, "evaluate", short_evaluate)
    out = tmp_path / "repro"
    # imagined with goal-guided decoding and its look-ahead (continuous candidates, each scored
    # by the dynamics head's state 2 steps on); units inline (--jobs 1), so that the short
    # evaluation above reaches them (worker processes: tests/test_reproduce_jobs.py and the
    # second sitting of test_reproduce.py's one-algorithm run)
    argv = ["reproduce", "--env", "metaworld", "--preset", "tiny", "--lm", str(tiny_lm_folder),
            "--imagine-guide", "3", "--imagine-guide-horizon", "2", "--imagine-guide-obstacles",
            "--imagine-settle", "2", "--jobs", "1",
            "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "results in" in capsys.readouterr().out

    res = json.loads((out / "results.json").read_text())
    assert res["env"] == "metaworld" and res["algos"] == list(ALGOS)
    assert res["config"]["env"] == "metaworld"
    keys = [f"{m}-{a}" for a in ALGOS for m in METHODS]
    # the tiny preset also trains the continuous Decision Transformer on the real data
    assert list(res["methods"]) == keys + ["dt", "random", "llm"]
    assert res["methods"]["dt"]["algo_name"] == "dt"
    for key in (*keys, "dt", "random", "llm"):
        m = res["methods"][key]
        for cat in CATEGORIES:
            assert m["categories"][cat] is not None, (key, cat)
            assert 0.0 <= m["categories"][cat]["mean"] <= 100.0
        assert m["novel_mean"]["mean"] is not None
    assert res["methods"]["kalm-bc"]["method"] == "kalm"
    assert res["methods"]["kalm-td3_plus_bc"]["algo"] == "td3_plus_bc"
    assert res["methods"]["kalm-bc"]["imagined_transitions"] > 0
    assert res["methods"]["oracle-bc"]["imagined_transitions"] > 0
    assert res["methods"]["real_only-td3_plus_bc"]["imagined_transitions"] == 0
    assert set(res["imagined"]) == set(NOVEL)
    assert res["paper"]["category_upper"] == {"train": 50.0, "rephrase": 30.0, "easy": 14.0,
                                              "hard": 8.0}

    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert list(stages) == list(STAGES)
    assert all(stages[n]["state"] == "done" for n in STAGES)
    assert set(stages["train"]["units"]) == {f"{k}-s0" for k in keys} | {"dt-s0"}
    assert stages["collect"]["settings"]["env"] == "metaworld"
    assert stages["imagine"]["settings"]["guide"] == 3
    assert stages["imagine"]["settings"]["guide_horizon"] == 2
    assert stages["imagine"]["settings"]["guide_obstacles"] is True
    assert stages["imagine"]["settings"]["settle"] == 2
    for suite in NOVEL:  # the imagine runs decoded that way, and say so
        summary = json.loads((out / "imagine" / suite / "summary.json").read_text())
        assert summary["config"]["guide"] == 3 and summary["config"]["guide_horizon"] == 2
        assert summary["config"]["guide_obstacles"] is True
        assert summary["config"]["settle"] == 2
        assert summary["generation"]["guided"]["guided_steps"] > 0
    for key in keys:  # the policies are Meta-World's (continuous actions, 91-d states)
        meta = json.loads((out / "train" / f"{key}-s0" / "policy" / "policy.json").read_text())
        assert meta["env"] == "metaworld"
    real_only = json.loads((out / "train" / "real_only-bc-s0" / "config.json").read_text())
    assert real_only["imagined"] == []  # real only never sees a novel suite's data
    ev = json.loads((out / "eval" / "kalm-bc-s0.json").read_text())
    assert {e["category"] for e in ev["episodes"]} == set(CATEGORIES)
    assert {len(e["actions"]) for e in ev["episodes"]} == {3}  # the short evaluation
    assert all(len(a) == 4 for e in ev["episodes"] for a in e["actions"])
    md = (out / "results.md").read_text()
    assert "| KALM (real + imagined), BC |" in md and "| real data only, TD3+BC |" in md
    assert "< 50 | < 30 | < 14 | < 8" in md and "on metaworld" in md
    assert "`--imagine-guide 3`" in md and "`--imagine-guide-horizon 2`" in md
    assert "`--imagine-guide-obstacles`" in md and "`--imagine-settle 2`" in md


def test_metaworld_presets_and_refusals(tmp_path, capsys):
    cfg = make_config("cpu", env="metaworld", grounded="assets/grounded/metaworld")
    assert cfg.algo_list() == ["bc", "td3_plus_bc"] and cfg.expert == "scripted"
    assert cfg.real_episodes == 1000 and cfg.imagine_seed != cfg.eval_seed
    assert make_config("cpu", grounded="assets/grounded/clevr").algo_list() == ["discrete_bc",
                                                                              "discrete_cql"]
    with pytest.raises(ReproduceError, match="continuous"):
        make_config("cpu", env="metaworld", algos=["discrete_bc"])
    with pytest.raises(ReproduceError, match="discrete"):
        make_config("cpu", algo="bc")
    assert main(["reproduce", "--env", "metaworld", "--preset", "tiny", "--out",
                 str(tmp_path / "o")]) == 2
    assert "--grounded" in capsys.readouterr().err
    # the look-ahead of goal-guided decoding: at least 1, and only with --imagine-guide
    guided = make_config("cpu", env="metaworld", grounded="assets/grounded/metaworld",
                         imagine_guide=8, imagine_guide_horizon=5)
    assert (guided.imagine_guide, guided.imagine_guide_horizon) == (8, 5)
    assert cfg.imagine_guide_horizon == 1
    with pytest.raises(ReproduceError, match="at least 1"):
        make_config("cpu", env="metaworld", imagine_guide=8, imagine_guide_horizon=0)
    with pytest.raises(ReproduceError, match="needs --imagine-guide"):
        make_config("cpu", env="metaworld", imagine_guide_horizon=5)
    assert main(["reproduce", "--env", "metaworld", "--preset", "cpu", "--imagine-guide-horizon",
                 "3", "--out", str(tmp_path / "o2")]) == 2
    assert "needs --imagine-guide" in capsys.readouterr().err
    with pytest.raises(ReproduceError, match="--imagine-guide-obstacles needs"):
        make_config("cpu", env="metaworld", imagine_guide_obstacles=True)
    assert make_config("cpu", env="metaworld", grounded="assets/grounded/metaworld",
                       imagine_guide=8, imagine_guide_obstacles=True).imagine_guide_obstacles
    # settling past the goal: 0 (as published) unless asked; never negative
    assert cfg.imagine_settle == 0
    assert make_config("cpu", env="metaworld", grounded="assets/grounded/metaworld",
                       imagine_settle=10).imagine_settle == 10
    with pytest.raises(ReproduceError, match="--imagine-settle"):
        make_config("cpu", env="metaworld", imagine_settle=-1)
