"""The Meta-World policies shipped in assets/policies/metaworld (`reproduce --env metaworld`) load
from their files and act in the harness."""

import json
from pathlib import Path

import numpy as np
import pytest

from kalm.envs import get_env
from kalm.evaluate import evaluate
from kalm.policy import make_policy

FOLDER = Path(__file__).resolve().parents[2] / "assets" / "policies" / "metaworld"
NAMES = sorted(d.name for d in FOLDER.iterdir() if (d / "policy" / "policy.json").is_file()) \
    if FOLDER.is_dir() else []


def test_every_method_and_algorithm_is_shipped_with_its_results():
    methods = ("kalm", "kalm_filtered", "real_only", "oracle")
    assert {f"{m}-{a}" for m in methods for a in ("bc", "td3_plus_bc")} <= set(NAMES)
    res = json.loads((FOLDER / "reproduce_results.json").read_text())
    assert res["env"] == "metaworld" and {"random", "llm"} <= set(res["methods"])
    assert (FOLDER / "reproduce_results.md").is_file() and (FOLDER / "README.md").is_file()
    size = sum(p.stat().st_size for p in FOLDER.rglob("*") if p.is_file())
    assert size < 30e6


@pytest.mark.parametrize("name", NAMES)
def test_shipped_metaworld_policy_loads_and_acts(name, monkeypatch):
    folder = FOLDER / name
    assert (folder / "policy" / "policy.safetensors").is_file()
    policy = make_policy(str(folder), env="metaworld")
    monkeypatch.setattr("kalm.envs.metaworld.sim.task_horizon", lambda task: 5)
    env = get_env("metaworld")
    res = evaluate(policy, env.suite_items("easy", 0), episodes=1, seed=0, env=env)
    assert res.categories["easy"]["episodes"] == 1
    acts = np.asarray(res.episodes[0].actions)
    assert acts.shape[1] == 4 and np.all(np.abs(acts) <= 1.0 + 1e-6)


def test_the_velocity_head_reproduction_is_shipped_with_its_provenance():
    """Session 24's 3-seed table (runs/mw24), imagined with assets/grounded/metaworld_history: its
    config names that model, and the markdown table is the JSON's."""
    res = json.loads((FOLDER / "reproduce_results_history_3seeds.json").read_text())
    assert res["config"]["grounded"] == "assets/grounded/metaworld_history"
    assert res["config"]["seeds"] == [0, 1, 2] and res["algos"] == ["bc", "td3_plus_bc"]
    md = (FOLDER / "reproduce_results_history_3seeds.md").read_text()
    for key, label in (("kalm-bc", "KALM (real + imagined), BC"), ("real_only-bc", "real data only, BC")):
        easy = res["methods"][key]["categories"]["easy"]
        assert len(easy["per_seed"]) == 3
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        assert f"{easy['mean']:.1f} ± {easy['stderr']:.1f}" in row


def test_the_guided_reproduction_is_kept_as_a_record():
    """Session 25's 3-seed table (runs/mw25): imagined by the velocity-head model with the
    look-ahead guide; its markdown is its JSON."""
    res = json.loads((FOLDER / "reproduce_results_guided_3seeds.json").read_text())
    cfg = res["config"]
    assert cfg["grounded"] == "assets/grounded/metaworld_history"
    assert (cfg["imagine_guide"], cfg["imagine_guide_horizon"]) == (8, 5)
    assert not cfg.get("imagine_settle")
    md = (FOLDER / "reproduce_results_guided_3seeds.md").read_text()
    assert "`--imagine-guide-horizon 5`" in md and "--imagine-settle" not in md


def test_the_settled_reproduction_is_kept_as_a_record():
    """Session 27's 3-seed table (runs/mw27): the same model and guide, each imagined rollout
    written on 10 steps past its goal's first success, before the composite scenes were measured
    as the tasks they chain; its markdown is its JSON."""
    res = json.loads((FOLDER / "reproduce_results_settle_3seeds.json").read_text())
    cfg = res["config"]
    assert cfg["grounded"] == "assets/grounded/metaworld_history"
    assert (cfg["imagine_guide"], cfg["imagine_guide_horizon"], cfg["imagine_settle"]) == (8, 5, 10)
    md = (FOLDER / "reproduce_results_settle_3seeds.md").read_text()
    assert "`--imagine-settle 10`" in md
    easy = res["methods"]["kalm-bc"]["categories"]["easy"]
    row = next(line for line in md.splitlines() if line.startswith("| KALM (real + imagined), BC |"))
    assert f"{easy['mean']:.1f} ± {easy['stderr']:.1f}" in row


def test_the_shipped_policies_are_seed_0_of_the_composite_reproduction():
    """Session 28's 3-seed table (runs/mw28): session 27's settings, with the composite scenes
    measured as the tasks they chain; the shipped folders are its seed-0 policies, and its
    markdown is its JSON."""
    res = json.loads((FOLDER / "reproduce_results_composite_3seeds.json").read_text())
    cfg = res["config"]
    assert cfg["grounded"] == "assets/grounded/metaworld_history"
    assert (cfg["imagine_guide"], cfg["imagine_guide_horizon"], cfg["imagine_settle"]) == (8, 5, 10)
    assert cfg["seeds"] == [0, 1, 2] and res["algos"] == ["bc", "td3_plus_bc"]
    md = (FOLDER / "reproduce_results_composite_3seeds.md").read_text()
    assert "`--imagine-guide-horizon 5`" in md and "`--imagine-settle 10`" in md
    for key, label in (("kalm-bc", "KALM (real + imagined), BC"),
                       ("real_only-td3_plus_bc", "real data only, TD3+BC")):
        for cat in ("easy", "hard"):
            c = res["methods"][key]["categories"][cat]
            row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
            assert len(c["per_seed"]) == 3 and f"{c['mean']:.1f} ± {c['stderr']:.1f}" in row
    for name in NAMES:
        train = json.loads((FOLDER / name / "config.json").read_text())
        assert train["seed"] == 0 and train["real"] == "runs/mw28/data/real.npz", name
        method, algo = name.split("-", 1)
        assert train["algo"] == algo and res["methods"][name]["method"] == method
        data = json.loads((FOLDER / name / "data.json").read_text())
        assert data["imagined_transitions"] == res["methods"][name]["imagined_transitions"], name
