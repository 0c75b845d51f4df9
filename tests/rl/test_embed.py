"""Goal-text embedders: the hash embedder, the MiniLM one and their caches."""

import numpy as np
import pytest

from kalm.rl.embed import CachedEmbedder, HashEmbedder, make_embedder, minilm_path


def test_hash_embedder_is_deterministic_unit_norm_and_order_aware():
    e = make_embedder("hash:64")
    a = "Put the red ball to the left of the blue ball"
    b = "Put the blue ball to the left of the red ball"
    z = e.embed([a, b, a])
    assert z.shape == (3, 64) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(z[0], z[2])
    assert np.abs(z[0] - z[1]).max() > 0.05  # swapped colours give another vector
    np.testing.assert_array_equal(make_embedder("hash:64").embed([a])[0], z[0])  # across instances
    assert make_embedder("hash").dim == 64 and e.embed([]).shape == (0, 64)


@pytest.mark.parametrize("bad", ["bert", "hash:x", "hash:1", "st:"])
def test_unknown_embedder_names_are_refused(bad):
    with pytest.raises(ValueError):
        make_embedder(bad)


def test_cache_calls_the_model_once_per_text(tmp_path):
    calls = []

    class Counting(HashEmbedder):
        def embed(self, texts):
            calls.append(list(texts))
            return super().embed(texts)

    inner = Counting(16)
    inner.name = "counting"
    e = CachedEmbedder(inner, disk=True)
    assert e.cache_path.parent == tmp_path / "cache" / "embeddings"
    first = e.embed(["a b", "c d", "a b"])
    assert calls == [["a b", "c d"]]
    e.embed(["c d", "a b"])
    assert len(calls) == 1
    # a new embedder reads the disk cache instead of calling the model
    e2 = CachedEmbedder(inner, disk=True)
    np.testing.assert_array_equal(e2.embed(["a b"])[0], first[0])
    assert len(calls) == 1


def test_minilm_from_the_installed_package_embeds_and_caches_on_disk():
    assert (minilm_path() / "model.safetensors").exists()
    e = make_embedder("minilm")
    texts = ["Put the red ball behind the green ball", "Move the red ball behind the green one",
             "Push the cyan ball to the right"]
    z = e.embed(texts)
    assert z.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-4)
    # paraphrases are closer than different goals
    assert z[0] @ z[1] > z[0] @ z[2]
    assert e.cache_path.exists()
    again = make_embedder("minilm")
    again.inner.embed = None  # the disk cache must answer
    np.testing.assert_allclose(again.embed(texts[:1])[0], z[0], rtol=1e-6)


# ----------------------------------------------------------------- lm:DIR, a grounded LM's reading
def _tiny_grounded(folder):
    from kalm.llm.base import tiny_lm
    from kalm.llm.config import GroundConfig
    from kalm.llm.train import build_model

    base = folder.parent / f"{folder.name}-base"
    lm, tok = tiny_lm()
    lm.save_pretrained(base)
    tok.save_pretrained(base)
    cfg = GroundConfig(model=str(base))
    model = build_model(cfg, lm, tok)
    model.save(folder)
    cfg.save(folder / "config.json")
    return model


def test_lm_embedder_reads_the_grounded_lm_at_the_end_of_its_rollout_prompt(tmp_path):
    import torch

    from kalm.llm.sequences import collate, rollout_prompt
    from kalm.rl.embed import LMEmbedder, check_embedder_name

    model = _tiny_grounded(tmp_path / "g")
    assert check_embedder_name(f"lm:{tmp_path / 'g'}") == ("lm", str(tmp_path / "g"))
    emb = make_embedder(f"lm:{tmp_path / 'g'}")
    assert emb.dim == model.lm.config.hidden_size
    texts = ["Put the red ball to the left of the blue ball",
             "Put the blue ball to the left of the red ball", "push red left"]
    v = emb.embed(texts)
    assert v.shape == (3, emb.dim)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # what it is: the last hidden state at the prompt's last token (batching and padding aside)
    model.eval()
    with torch.no_grad():
        b = collate([rollout_prompt(texts[2], model.prompt_style)], model.tokenizer,
                    model.positions_per_state, left_pad=True)
        h, _ = model.hidden(model.embed(b), b.attention_mask)
    ref = h[0, -1].numpy()
    np.testing.assert_allclose(v[2], ref / np.linalg.norm(ref), atol=1e-4)
    assert abs(float(v[0] @ v[1])) < 0.9999  # word order reaches the features
    # the disk cache is keyed by the weights: a regrounded model is another embedder
    name = LMEmbedder(tmp_path / "g").name
    import os
    import time

    f = tmp_path / "g" / "codec.safetensors"
    t = time.time() + 5
    os.utime(f, (t, t))
    assert LMEmbedder(tmp_path / "g").name != name


def test_lm_embedder_refuses_a_folder_that_is_no_grounded_model(tmp_path):
    with pytest.raises(ValueError, match="grounded"):
        make_embedder(f"lm:{tmp_path}")


@pytest.mark.slow
def test_the_shipped_grounded_lm_tells_swapped_and_opposite_goals_apart():
    """The goal conditioning the CLEVR policies use: unlike MiniLM (cosine 0.996 / 0.989), the
    grounded LM's features of goals with swapped colours or the opposite direction differ."""
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "assets" / "grounded" / "clevr"
    emb = make_embedder(f"lm:{shipped}", disk_cache=False)
    v = emb.embed(["Put the red ball to the left of the blue ball",
                   "Put the blue ball to the left of the red ball",
                   "Put the red ball to the right of the blue ball"])
    assert float(v[0] @ v[1]) < 0.95 and float(v[0] @ v[2]) < 0.95


def test_mentions_join_which_entities_the_text_names_in_order():
    from kalm.envs import get_env
    from kalm.rl.embed import MentionEmbedder, with_mentions

    inner = make_embedder("hash:16")
    emb = with_mentions(inner, get_env("clevr"), 3)
    assert isinstance(emb, MentionEmbedder) and emb.dim == 16 + 3 * 5
    texts = ["Put the red ball to the left of the blue ball",
             "Put the blue ball to the left of the red ball",
             "Line up: cyan, purple, green, red and blue",
             "Move the ball"]
    z = emb.embed(texts)
    assert z.shape == (4, 31) and z.dtype == np.float32
    np.testing.assert_allclose(z[:, :16], inner.embed(texts) / np.sqrt(2), atol=1e-6)
    blocks = z[:, 16:].reshape(4, 3, 5) * np.sqrt(2)
    np.testing.assert_allclose(blocks[0] * np.sqrt(2), [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0] * 5])
    np.testing.assert_allclose(blocks[1] * np.sqrt(2), [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0] * 5])
    # only the first 3 of 5 mentions; unit norm; no colour named: no block
    np.testing.assert_allclose(blocks[2] * np.sqrt(3), [[0, 0, 0, 0, 1], [0, 0, 0, 1, 0],
                                                        [0, 0, 1, 0, 0]], atol=1e-6)
    assert not blocks[3].any()
    assert with_mentions(inner, get_env("clevr"), 0) is inner
    with pytest.raises(ValueError, match="mentions"):
        with_mentions(inner, get_env("metaworld"), 2)
