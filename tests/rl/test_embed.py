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
