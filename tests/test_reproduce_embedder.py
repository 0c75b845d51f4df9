"""The reproduction's goal embedder: CLEVR's cpu preset conditions policies on the run's
grounded LM (``grounded`` = ``lm:DIR``); other names pass through; bad names are refused."""

from pathlib import Path

import pytest

from kalm.reproduce import ReproduceError, _Pipeline, make_config


def argv_embedder(cfg, tmp_path: Path) -> str:
    argv = _Pipeline(cfg, tmp_path, print).train_argv("real_only", 0)
    return argv[argv.index("--embedder") + 1]


def test_cpu_preset_embeds_goals_with_the_runs_grounded_lm(tmp_path):
    cfg = make_config("cpu", grounded="assets/grounded/clevr")
    assert cfg.embedder == "grounded"
    assert argv_embedder(cfg, tmp_path) == "lm:assets/grounded/clevr"
    # without --grounded: the model the run's own ground stage makes
    own = make_config("cpu")
    assert argv_embedder(own, tmp_path) == f"lm:{tmp_path / 'ground'}"
    # the paper's frozen sentence encoder stays one option away; Meta-World keeps MiniLM
    assert argv_embedder(make_config("cpu", embedder="minilm"), tmp_path) == "minilm"
    assert make_config("cpu", env="metaworld", grounded="assets/grounded/metaworld").embedder \
        == "minilm"
    with pytest.raises(ReproduceError, match="unknown embedder"):
        make_config("cpu", embedder="word2vec")


def test_a_relative_lm_path_resolves_from_any_working_directory(tmp_path, monkeypatch):
    from kalm.rl.embed import LMEmbedder

    monkeypatch.chdir(tmp_path)
    emb = LMEmbedder("assets/grounded/clevr")  # no model load: only the folder and its size
    assert emb.folder.is_absolute() and (emb.folder / "grounded.json").exists()
    assert emb.dim > 0
