"""`python -m kalm reproduce --preset tiny` end to end with a tiny LM, and its reuse on rerun."""

import json
import time

import pytest

from kalm.cli import main
from kalm.reproduce import CATEGORIES, METHODS, NOVEL, STAGES, ReproduceError, make_config


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory):
    """A tiny Llama saved as a local HF folder: the base LM of the ground stage."""
    from kalm.llm.base import tiny_lm

    lm, tok = tiny_lm()
    d = tmp_path_factory.mktemp("tinylm")
    lm.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_tiny_pipeline_tabulates_every_method_and_reuses_its_stages(tmp_path, tiny_lm_folder,
                                                                     monkeypatch, capsys):
    monkeypatch.setenv("KALM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "repro"
    # units inline (--jobs 1): on a tiny budget a worker process's start costs more than its unit
    argv = ["reproduce", "--preset", "tiny", "--lm", str(tiny_lm_folder), "--jobs", "1",
            "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "results in" in first

    res = json.loads((out / "results.json").read_text())
    for method in (*METHODS, "dt", "random", "llm"):
        cats = res["methods"][method]["categories"]
        for cat in CATEGORIES:
            assert cats[cat] is not None, (method, cat)
            assert 0.0 <= cats[cat]["mean"] <= 100.0 and cats[cat]["stderr"] >= 0.0
        assert res["methods"][method]["novel_mean"]["mean"] is not None
    assert res["methods"]["kalm"]["imagined_transitions"] > 0
    assert res["methods"]["real_only"]["imagined_transitions"] == 0
    # the Decision Transformer baseline: real data only, scored like the others
    dt = res["methods"]["dt"]
    assert dt["imagined_transitions"] == 0 and dt["real_transitions"] > 0
    assert dt["algo_name"] == "discrete_dt" and dt["steps"] == 16
    assert dt["score"] == "mean of the last 5 checkpoints"
    dt_cfg = json.loads((out / "train" / "dt-s0" / "config.json").read_text())
    assert dt_cfg["algo"] == "discrete_dt" and dt_cfg["imagined"] == []
    assert set(res["imagined"]) == set(NOVEL)
    assert res["paper"]["novel_mean"]["kalm"] == 46.0
    # CLEVR trains every method with DiscreteBC (the plain keys) and DiscreteCQL (METHOD-ALGO)
    assert res["algos"] == ["discrete_bc", "discrete_cql"]
    for method in METHODS:
        cql = res["methods"][f"{method}-discrete_cql"]
        assert cql["algo"] == "discrete_cql" and res["methods"][method]["algo"] == "discrete_bc"
        assert all(cql["categories"][c] is not None for c in CATEGORIES)
        # scored as the mean of the last 5 checkpoints (40 steps, an epoch every 8)
        for entry in (cql, res["methods"][method]):
            assert entry["score"] == "mean of the last 5 checkpoints"
            (steps,) = entry["checkpoints"].values()
            assert steps == [8, 16, 24, 32, 40]
    assert res["paper"]["novel_mean_by_algo"]["discrete_cql"]["kalm"] == 27.1
    ev = json.loads((out / "eval" / "kalm-discrete_cql-s0.json").read_text())
    assert len(ev["checkpoints"]) == 5
    assert ev["categories"]["train"]["checkpoints"] == 5
    assert (out / "eval" / "kalm-discrete_cql-s0" / "step-40.json").exists()
    # oracle parity: as many expert episodes as imagined rollouts per suite
    assert res["volume"]["oracle"] == res["volume"]["imagined"] == {"rephrase": 2, "easy": 4,
                                                                    "hard": 1}
    assert res["volume"]["oracle_parity"] is True

    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert list(stages) == list(STAGES)
    for name in STAGES:
        assert stages[name]["state"] == "done", name
        assert stages[name]["wall_s"] >= 0.0
    keys = {f"{m}-{a}-s0" for m in METHODS for a in ("discrete_bc", "discrete_cql")}
    assert stages["train"]["wall_s"] > 0.0 and set(stages["train"]["units"]) == keys | {"dt-s0"}
    assert set(stages["evaluate"]["units"]) == keys | {"dt-s0", "random", "llm"}
    md = (out / "results.md").read_text()
    assert "| KALM (real + imagined), DiscreteBC |" in md and "paper novel" in md
    assert "| KALM (real + imagined), DiscreteCQL |" in md and "| 27.1 |" in md
    assert "| Decision Transformer (real data only) |" in md
    assert "mean of the last 5 checkpoints" in md and "| train |" in md
    assert "as many expert episodes" in md and "--volume paper" in md

    # a rerun reuses every stage: nothing is recomputed
    before = {n: stages[n]["wall_s"] for n in STAGES if n != "results"}
    t0 = time.time()
    assert main(argv) == 0
    rerun = capsys.readouterr().out
    assert time.time() - t0 < 15
    assert "running" not in rerun.replace("[results]", "")
    stages2 = json.loads((out / "stages.json").read_text())["stages"]
    assert {n: stages2[n]["wall_s"] for n in before} == before
    assert all(stages2[n]["reused"] for n in before)

    # another setting of a finished stage is refused with a one-line error
    assert main(argv + ["--steps", "50"]) == 2
    assert "other settings" in capsys.readouterr().err
    # goal-guided imagination is a setting of the imagine stage (greedy runs keep theirs)
    assert "guide" not in stages["imagine"]["settings"]
    assert main(argv + ["--imagine-guide", "4"]) == 2
    err = capsys.readouterr().err
    assert "imagine stage" in err and "guide" in err


def test_tiny_preset_needs_a_model_and_bad_options_are_refused(tmp_path, capsys):
    with pytest.raises(ReproduceError, match="--grounded"):
        make_config("tiny")
    assert main(["reproduce", "--preset", "tiny", "--grounded", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["reproduce", "--stages", "collect,fly", "--out", str(tmp_path / "o")]) == 2
    assert "unknown stage" in capsys.readouterr().err
    with pytest.raises(ReproduceError, match="seeds"):
        make_config("cpu", seeds=[])
    cfg = make_config("cpu", grounded="assets/grounded/clevr")
    assert cfg.imagine_seed != cfg.eval_seed and cfg.filter == "match,realistic"
    # the settings that reach the targets: goal-guided decoding, 4 rollouts per rephrase and
    # hard goal, --augment 8 --mentions 5; the paper's greedy decoding stays an option
    assert cfg.imagine_guide == 40 and cfg.imagine_per_goal == {"rephrase": 4, "easy": 20,
                                                                "hard": 4}
    assert cfg.train_args == ["--augment", "8", "--mentions", "5"]
    assert make_config("cpu", imagine_guide=0).imagine_guide == 0
    assert make_config("cpu", imagine_guide=16).imagine_guide == 16
    with pytest.raises(ReproduceError, match="imagine_guide"):
        make_config("cpu", imagine_guide=-1)


def test_success_is_averaged_over_seeds_with_the_standard_error_across_them():
    from kalm.reproduce import _method_stats

    def ev(rates):
        return {"categories": {c: {"success_rate": r, "episodes": 10}
                               for c, r in zip(CATEGORIES, rates)}}

    one = _method_stats([ev([0.5, 0.2, 0.4, 0.0])])
    assert one["categories"]["train"]["mean"] == 50.0
    assert one["categories"]["train"]["stderr"] == pytest.approx(100 * (0.25 / 10) ** 0.5, abs=0.01)
    assert one["categories"]["train"]["stderr_seeds"] is None
    assert one["novel_mean"]["mean"] == 20.0
    two = _method_stats([ev([0.5, 0.2, 0.4, 0.0]), ev([0.7, 0.4, 0.4, 0.3])])
    train = two["categories"]["train"]
    assert train["mean"] == 60.0 and train["per_seed"] == [50.0, 70.0]
    assert train["stderr"] == train["stderr_seeds"] == pytest.approx(10.0)
    assert train["episodes"] == 20
    assert two["novel_mean"]["per_seed"] == [20.0, pytest.approx(36.67, abs=0.01)]


def test_the_score_is_the_mean_of_the_last_5_checkpoints():
    from kalm.reproduce import _method_stats, mean_over_checkpoints

    def ev(rates, n=10):
        return {"categories": {c: {"success_rate": r, "episodes": n, "mean_length": 5.0}
                               for c, r in zip(CATEGORIES, rates)}}

    five = [ev([0.1 * i, 0.2, 0.0, 0.05 * i]) for i in range(1, 6)]
    cats = mean_over_checkpoints(five)
    assert cats["train"]["success_rate"] == pytest.approx(0.3)  # (.1+.2+.3+.4+.5) / 5
    assert cats["hard"]["success_rate"] == pytest.approx(0.15)
    assert cats["train"]["episodes"] == 50 and cats["train"]["checkpoints"] == 5
    assert cats["train"]["checkpoint_success_rates"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    # then mean +- stderr over seeds, as before
    other = mean_over_checkpoints([ev([0.5, 0.4, 0.2, 0.25])] * 5)
    stats = _method_stats([{"categories": cats}, {"categories": other}])
    assert stats["categories"]["train"]["mean"] == 40.0
    assert stats["categories"]["train"]["per_seed"] == [30.0, 50.0]
    assert stats["categories"]["train"]["stderr"] == pytest.approx(10.0)


def test_oracle_episodes_match_the_imagined_volume_and_the_paper_volume_option():
    cpu = make_config("cpu", grounded="assets/grounded/clevr")
    assert cpu.oracle_episodes == {"rephrase": 1600, "easy": 2000, "hard": 440}
    assert cpu.oracle_parity and cpu.algos == ["discrete_bc", "discrete_cql"]
    paper = make_config("cpu", grounded="assets/grounded/clevr", volume="paper")
    from kalm.reproduce import imagined_volume

    assert imagined_volume(paper) == {"rephrase": 5600, "easy": 72400, "hard": 1680}
    assert paper.oracle_episodes == {"rephrase": 5600, "easy": 72400, "hard": 1680}
    # a user's --algo alone trains that one algorithm
    assert make_config("cpu", grounded="assets/grounded/clevr", algo="discrete_cql").algo_list() \
        == ["discrete_cql"]
    with pytest.raises(ReproduceError, match="volume"):
        make_config("cpu", volume="huge")
    # --imagine-per-goal hard=2: two rollouts of each hard goal, the oracle following; the
    # other suites keep the preset's
    more = make_config("cpu", grounded="assets/grounded/clevr", imagine_per_goal={"hard": 2})
    assert more.imagine_per_goal == {"rephrase": 4, "easy": 20, "hard": 2}
    assert more.oracle_episodes == {"rephrase": 1600, "easy": 2000, "hard": 220}


def test_steps_per_algorithm():
    cpu = make_config("cpu", grounded="assets/grounded/clevr")
    # BC 20,000 steps, CQL 10,000 (the cpu preset)
    assert cpu.steps_of("discrete_bc") == 20000 and cpu.steps_of("discrete_cql") == 10000
    assert cpu.steps_of() == 20000
    # --steps alone sets every algorithm's; --algo-steps adds to the preset's
    assert make_config("cpu", steps=500).steps_of("discrete_cql") == 500
    both = make_config("cpu", steps=500, algo_steps={"discrete_bc": 7})
    assert (both.steps_of("discrete_bc"), both.steps_of("discrete_cql")) == (7, 10000)
    with pytest.raises(ReproduceError, match="at least 1"):
        make_config("cpu", algo_steps={"discrete_cql": 0})
    # Meta-World's cpu preset: its own steps for every algorithm
    assert make_config("cpu", env="metaworld").steps_of("td3_plus_bc") == 3000


@pytest.mark.parametrize("flag, bads, says", [
    ("--algo-steps", ("discrete_cql", "discrete_cql=0", "=5", "discrete_cql=x"),
     "--algo-steps takes ALGO=N"),
    ("--imagine-per-goal", ("hard", "hard=0", "train=2", "hard=x"),
     "--imagine-per-goal takes SUITE=K"),
])
def test_the_cli_s_name_count_pairs_are_checked(tmp_path, capsys, flag, bads, says):
    from kalm.cli import main

    for bad in bads:
        assert main(["reproduce", "--preset", "cpu", "--grounded", "assets/grounded/clevr",
                     flag, bad, "--out", str(tmp_path / "r")]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_results_say_when_imagination_was_goal_guided():
    from kalm.reproduce import _imagined_with

    base = {"imagine_seed": 1000, "grounded": "assets/grounded/clevr"}
    assert "goal-guided" not in _imagined_with(base)
    guided = _imagined_with({**base, "imagine_guide": 16})
    assert "`--imagine-guide 16`" in guided and "not the paper's greedy decoding" in guided


def test_a_method_reused_from_a_run_without_the_extra_train_options_is_marked():
    from kalm.reproduce import _without_train_args

    units = {"kalm-s0": {"argv": ["train", "--seed", "0", "--augment", "8"]},
             "dt-s0": {"argv": ["train", "--seed", "0", "--context-size", "5"]}}
    assert not _without_train_args(units, ["kalm-s0"], ["--augment", "8"])
    assert _without_train_args(units, ["dt-s0"], ["--augment", "8"])
    assert not _without_train_args(units, ["dt-s0"], [])  # no extra options: nothing to miss


def test_a_one_algorithm_run_given_a_second_algorithm_trains_only_the_new_policies(
        tmp_path, tiny_lm_folder, monkeypatch, capsys):
    monkeypatch.setenv("KALM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "repro"
    base = ["reproduce", "--preset", "tiny", "--lm", str(tiny_lm_folder), "--out", str(out),
            "--dt-steps", "0", "--llm-episodes", "0", "--algo-steps", "discrete_cql=16"]
    # the first sitting inline (--jobs 1), with DiscreteBC alone: plain keys METHOD-s0
    assert main(base + ["--algos", "discrete_bc", "--jobs", "1"]) == 0
    capsys.readouterr()
    first = json.loads((out / "stages.json").read_text())
    assert set(first["stages"]["train"]["units"]) == {f"{m}-s0" for m in METHODS}
    bc_walls = {k: u["wall_s"] for k, u in first["stages"]["train"]["units"].items()}
    assert first["sittings"][0]["jobs"] == 1 and first["sittings"][0]["wall_s"] > 0
    # then both algorithms: the BC policies are renamed and reused, only CQL trains
    assert main(base + ["--algos", "discrete_bc,discrete_cql"]) == 0
    said = capsys.readouterr().out
    assert "renamed METHOD-discrete_bc-sSEED and reused" in said
    assert "[train] kalm-discrete_bc-s0: done before" in said
    assert "[train] kalm-discrete_cql-s0: running" in said
    assert "[evaluate] kalm-discrete_bc-s0: done before" in said
    book = json.loads((out / "stages.json").read_text())
    units = book["stages"]["train"]["units"]
    assert set(units) == {f"{m}-{a}-s0" for m in METHODS for a in ("discrete_bc", "discrete_cql")}
    assert {k: units[f"{k[:-3]}-discrete_bc-s0"]["wall_s"] for k in bc_walls} == bc_walls
    assert not (out / "train" / "kalm-s0").exists() and (out / "train" / "kalm-discrete_bc-s0").is_dir()
    ev = json.loads((out / "eval" / "kalm-discrete_bc-s0.json").read_text())
    assert ev["policy_id"] == "kalm-discrete_bc-s0"
    assert all("kalm-discrete_bc-s0" in c["spec"] for c in ev["checkpoints"])
    res = json.loads((out / "results.json").read_text())
    assert res["methods"]["kalm"]["algo"] == "discrete_bc"
    assert res["methods"]["kalm-discrete_cql"]["categories"]["train"] is not None
    assert [s["jobs"] for s in res["sittings"]][0] == 1 and len(res["sittings"]) == 2
    assert "Sittings of the command" in (out / "results.md").read_text()
    # --algo-steps: CQL's policies 16 steps, BC's the preset's 40
    steps = {k: json.loads((out / "train" / k / "config.json").read_text())["steps"]
             for k in units}
    assert {steps[f"{m}-discrete_cql-s0"] for m in METHODS} == {16}
    assert {steps[f"{m}-discrete_bc-s0"] for m in METHODS} == {40}
    assert "40 gradient steps (DiscreteCQL 16)" in (out / "results.md").read_text()
