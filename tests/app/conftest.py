"""Fixtures of the app page tests: a runs folder with a tiny grounded model, a tiny dataset and a
tiny imagined set, all made here from configs (nothing is downloaded)."""

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "pages"
TIMEOUT = 60


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """runs/ with ``tiny-ground`` (a grounded model on a tiny Llama), ``collect-tiny/data.npz``
    (6 expert episodes) and ``imagine-tiny`` (4 imagined rollouts: imagined.npz, validity.csv,
    summary.json)."""
    import torch

    from kalm.data.collect import collect_dataset
    from kalm.goals.suites import suite_items
    from kalm.imagine.generate import imagine
    from kalm.llm.base import tiny_lm
    from kalm.llm.config import GroundConfig
    from kalm.llm.train import build_model

    root = tmp_path_factory.mktemp("app")
    runs = root / "runs"
    base = root / "tinylm"  # the base LM, a local HF folder (outside runs/)
    lm, tok = tiny_lm()
    lm.save_pretrained(base)
    tok.save_pretrained(base)
    cfg = GroundConfig(model=str(base))
    with torch.random.fork_rng():  # the codec's fresh heads: same weights whatever ran before
        torch.manual_seed(0)
        model = build_model(cfg, lm, tok)
    model_dir = runs / "tiny-ground" / "model"
    model.save(model_dir)
    cfg.save(model_dir / "config.json")
    status = {"stage": "ground", "state": "done"}
    (runs / "tiny-ground" / "status.json").write_text(json.dumps(status))

    collect_dataset(episodes=6, seed=0, out=runs / "collect-tiny" / "data.npz", progress=False)

    items = suite_items("easy")[:1] + suite_items("rephrase")[:1]
    imagine(model, items, per_goal=2, seed=0, out=runs / "imagine-tiny", batch_size=4,
            max_steps=3, progress=False)
    return runs


@pytest.fixture
def runs_dir(tiny_runs, tmp_path, monkeypatch) -> Path:
    """A private copy of ``tiny_runs`` (tests may damage it), set as KALM_RUNS_DIR."""
    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs, runs)
    monkeypatch.setenv("KALM_RUNS_DIR", str(runs))
    return runs


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)


def run_ok(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def elements(at: AppTest, kind: str) -> list:
    """Every element of a kind (e.g. "video", "plotly_chart", "imgs") anywhere on the page."""
    found = []

    def walk(node) -> None:
        if getattr(node, "type", None) == kind:
            found.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


@pytest.fixture(scope="session")
def tiny_mw_model(tmp_path_factory) -> Path:
    """``runs/tiny-mw/model``: a grounded model on Meta-World (a tiny Llama, untrained, its codec's
    statistics from a few real resets), saved as the CLI saves one."""
    import numpy as np
    import torch

    from kalm.envs import get_env
    from kalm.llm.base import tiny_lm
    from kalm.llm.config import GroundConfig
    from kalm.llm.train import build_model

    env = get_env("metaworld")
    root = tmp_path_factory.mktemp("app_mw")
    base = root / "tinylm"
    lm, tok = tiny_lm()
    lm.save_pretrained(base)
    tok.save_pretrained(base)
    cfg = GroundConfig(model=str(base), env="metaworld", rollout_windows=True,
                       max_steps_per_episode=10, action_head="mlp", dynamics_head="mlp",
                       explain_balls=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(cfg, lm, tok)
    items = env.suite_items("train")
    s = np.stack([env.imagine_start(items[i].goal, i) for i in range(0, len(items), 40)])
    d = s.shape[1]
    model.codec.set_stats(s.mean(0), s.std(0) + 0.1, np.full(d, 0.01), np.full(d, 0.02))
    out = root / "runs" / "tiny-mw" / "model"
    model.save(out)
    cfg.save(out / "config.json")
    (out.parent / "status.json").write_text(json.dumps({"stage": "ground", "state": "done"}))
    return out.parent


@pytest.fixture(scope="session")
def tiny_mw_imagined(tiny_mw_model, tmp_path_factory) -> Path:
    """An imagine run folder of the tiny Meta-World model: 2 goals (easy, rephrase), 3 steps,
    goal-guided, kept off the walls, settling 4 steps past a goal met."""
    from kalm.envs import get_env
    from kalm.imagine.generate import imagine
    from kalm.llm.train import load_grounded

    env = get_env("metaworld")
    out = tmp_path_factory.mktemp("app_mw_im") / "imagine-mw"
    items = env.suite_items("easy")[:1] + env.suite_items("rephrase")[:1]
    imagine(load_grounded(tiny_mw_model / "model"), items, per_goal=1, seed=0, out=out,
            batch_size=2, max_steps=3, progress=False, guide=3, guide_horizon=2,
            guide_obstacles=True, settle=4)
    return out


@pytest.fixture
def mw_runs_dir(runs_dir, tiny_mw_model) -> Path:
    """``runs_dir`` with the tiny Meta-World model beside the CLEVR one (``runs/tiny-mw``)."""
    shutil.copytree(tiny_mw_model, runs_dir / "tiny-mw")
    return runs_dir


@pytest.fixture
def mw_imagined_runs_dir(runs_dir, tiny_mw_imagined) -> Path:
    """``runs_dir`` with a Meta-World imagine run folder (``runs/imagine-mw``)."""
    shutil.copytree(tiny_mw_imagined, runs_dir / "imagine-mw")
    return runs_dir
