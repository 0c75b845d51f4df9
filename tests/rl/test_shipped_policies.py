"""The shipped CLEVR-Robot policies in assets/policies load from their files, read goals with the
shipped grounded LM, act in the harness, and come with the reproduction that made them."""

import json
from pathlib import Path

import pytest

from kalm.evaluate import evaluate
from kalm.goals.suites import suite_items
from kalm.rl.policy import TrainedPolicy

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "assets" / "policies"
NAMES = ["kalm", "kalm_filtered", "real_only", "oracle", "dt", "kalm_guided", "kalm_contact",
         "kalm_augment", "kalm_mentions"]


@pytest.fixture(scope="module")
def embedder():
    """The policies' goal embedder, loaded once for the module (it reads the grounded LM)."""
    from kalm.rl.embed import make_embedder

    meta = json.loads((FOLDER / "kalm" / "policy" / "policy.json").read_text())
    return make_embedder(meta["embedder"], disk_cache=False)


def test_the_shipped_policies_come_from_one_reproduction_with_the_shipped_grounded_lm():
    res = json.loads((FOLDER / "reproduce_results.json").read_text())
    cfg = res["config"]
    # the cpu preset's settings (session 23): imagined by the contact model, goals read by the
    # shipped grounded LM, every method with DiscreteBC (20,000 steps) and DiscreteCQL (10,000)
    # over 3 seeds
    assert cfg["preset"] == "cpu" and cfg["grounded"] == "assets/grounded/clevr_contact"
    assert cfg["embedder"] == "lm:assets/grounded/clevr" and cfg["seeds"] == [0, 1, 2]
    assert cfg["train_args"] == ["--augment", "8", "--mentions", "5"] and cfg["imagine_guide"] == 40
    assert cfg["steps"] == 20000 and cfg["algo_steps"] == {"discrete_cql": 10000}
    assert res["algos"] == ["discrete_bc", "discrete_cql"]
    assert {"kalm", "kalm_filtered", "real_only", "oracle", "dt", "random", "llm",
            "kalm-discrete_cql", "real_only-discrete_cql"} <= set(res["methods"])
    # the first sitting trained and evaluated every BC policy within the 90 minutes
    assert res["sittings"][0]["jobs"] == 2 and res["sittings"][0]["wall_s"] < 90 * 60
    for name in ("kalm", "kalm_filtered", "real_only", "oracle"):
        meta = json.loads((FOLDER / name / "policy" / "policy.json").read_text())
        assert meta["config"]["mentions"] == 5 and meta["config"]["augment"] == 8, name
        assert meta["algo"] == "discrete_bc" and meta["config"]["steps"] == 20000, name
    data = json.loads((FOLDER / "kalm" / "data.json").read_text())
    assert all("rep23/imagine" in str(src.get("path", src)) for src in data["imagined"])
    # the tables it replaced are kept under their own names
    old = json.loads((FOLDER / "reproduce_results_session16.json").read_text())
    assert old["config"]["grounded"] == "assets/grounded/clevr"
    assert json.loads((FOLDER / "reproduce_results_session22.json").read_text())["config"][
        "steps"] == 10000
    for name in NAMES:
        meta = json.loads((FOLDER / name / "policy" / "policy.json").read_text())
        assert meta["embedder"] == "lm:assets/grounded/clevr", name
        assert meta["config"]["seed"] == 0
    assert json.loads((FOLDER / "dt" / "policy" / "policy.json").read_text())["algo"] == "discrete_dt"
    size = sum(p.stat().st_size for n in NAMES for p in (FOLDER / n).rglob("*") if p.is_file())
    assert size < 20e6


@pytest.mark.parametrize("name", NAMES)
def test_shipped_policy_loads_and_is_evaluable(name, embedder):
    folder = FOLDER / name
    assert (folder / "policy" / "policy.safetensors").is_file()
    policy = TrainedPolicy.load(folder, embedder=embedder)
    res = evaluate(policy, suite_items("easy", 0), episodes=4, seed=0)
    assert res.categories["easy"]["episodes"] == 4
    assert all(0 <= a < 40 for e in res.episodes for a in e.actions)


def test_the_guided_kalm_policy_comes_from_the_guided_reproduction():
    res = json.loads((FOLDER / "reproduce_results_guided.json").read_text())
    assert res["config"]["imagine_guide"] == 16 and res["config"]["grounded"] == "assets/grounded/clevr"
    data = json.loads((FOLDER / "kalm_guided" / "data.json").read_text())
    assert all("rep18g/imagine" in str(src.get("path", src)) for src in data["imagined"])
    assert "goal-guided" in (FOLDER / "reproduce_results_guided.md").read_text()


def test_the_contact_kalm_policy_comes_from_the_contact_reproduction():
    res = json.loads((FOLDER / "reproduce_results_contact.json").read_text())
    cfg = res["config"]
    assert cfg["imagine_guide"] == 40 and cfg["grounded"] == "assets/grounded/clevr_contact"
    assert cfg["embedder"] == "lm:assets/grounded/clevr"
    data = json.loads((FOLDER / "kalm_contact" / "data.json").read_text())
    assert all("rep19c/imagine" in str(src.get("path", src)) for src in data["imagined"])
    assert "assets/grounded/clevr_contact" in (FOLDER / "reproduce_results_contact.md").read_text()


def test_the_augmented_kalm_policy_comes_from_the_augmented_reproduction():
    res = json.loads((FOLDER / "reproduce_results_augment.json").read_text())
    cfg = res["config"]
    assert cfg["train_args"] == ["--augment", "8"] and cfg["imagine_guide"] == 40
    assert cfg["grounded"] == "assets/grounded/clevr_contact"
    assert not any(m.get("without_train_args") for m in res["methods"].values())
    meta = json.loads((FOLDER / "kalm_augment" / "policy" / "policy.json").read_text())
    assert meta["config"]["augment"] == 8
    data = json.loads((FOLDER / "kalm_augment" / "data.json").read_text())
    assert data["augmented"]["imagined"] > 0 and data["augmented"]["real"] > 0
    assert all("rep20aug/imagine" in str(src.get("path", src)) for src in data["imagined"])
    assert "--augment 8" in (FOLDER / "reproduce_results_augment.md").read_text()


def test_the_mentions_kalm_policy_comes_from_its_reproduction_and_reads_colour_mentions(embedder):
    res = json.loads((FOLDER / "reproduce_results_mentions.json").read_text())
    cfg = res["config"]
    assert cfg["train_args"] == ["--augment", "8", "--mentions", "5"]
    assert cfg["imagine_per_goal"]["hard"] == 4 and cfg["imagine_per_goal"]["rephrase"] == 4
    assert cfg["grounded"] == "assets/grounded/clevr_contact"
    assert not any(m.get("without_train_args") for m in res["methods"].values())
    meta = json.loads((FOLDER / "kalm_mentions" / "policy" / "policy.json").read_text())
    assert meta["config"]["mentions"] == 5 and meta["config"]["augment"] == 8
    data = json.loads((FOLDER / "kalm_mentions" / "data.json").read_text())
    assert data["embedder"].endswith("+mentions:5") and data["goal_dim"] == 576 + 25
    assert all("rep21r/imagine" in str(src.get("path", src)) for src in data["imagined"])
    earlier = json.loads((FOLDER / "reproduce_results_mentions_hard4.json").read_text())["config"]
    assert earlier["imagine_per_goal"]["rephrase"] == 1 and earlier["train_args"] == cfg["train_args"]
    policy = TrainedPolicy.load(FOLDER / "kalm_mentions", embedder=embedder)
    assert policy.embedder.dim == 601
