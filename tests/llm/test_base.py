"""Base LM: the tiny offline LM, resolving names to weights, the dense GGUF cache, the real LM."""

import importlib.util
from pathlib import Path

import pytest
import torch

from kalm.llm import base
from kalm.llm.base import (
    DEFAULT_LM,
    LM_REGISTRY,
    LMNotFoundError,
    PackagedGGUF,
    lm_cache_dir,
    lm_cache_root,
    lm_info,
    load_base_lm,
    resolve_lm,
    tiny_lm,
    tiny_tokenizer,
)

GOAL_PROMPT = (
    "Translate the textual instruction to a state/action trajectory. "
    "Instruction: Put the red ball to the left of the blue ball. Trajectory:"
)


# --------------------------------------------------------------------------------------------
# tiny_lm
# --------------------------------------------------------------------------------------------


def test_tiny_tokenizer_roundtrips_any_text_without_unk():
    tok = tiny_tokenizer()
    for text in (GOAL_PROMPT, "Zebra ümlaut 42! {x: -0.37}", "  two  spaces"):
        ids = tok(text).input_ids
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    # Goal words are single tokens, so prompts stay short.
    assert len(tok(GOAL_PROMPT).input_ids) < 40
    assert tok.pad_token == "[PAD]" and tok.eos_token == "[EOS]"
    assert tiny_tokenizer().get_vocab() == tok.get_vocab()


@pytest.mark.parametrize("hidden_size,layers,heads", [(64, 2, 4), (32, 1, 2)])
def test_tiny_lm_forward_backward(hidden_size, layers, heads):
    model, tok = tiny_lm(hidden_size=hidden_size, layers=layers, heads=heads)
    batch = tok([GOAL_PROMPT, "Move the green ball"], return_tensors="pt", padding=True)
    out = model(**batch, labels=batch.input_ids, output_hidden_states=True)
    assert out.logits.shape == (2, batch.input_ids.shape[1], len(tok))
    assert len(out.hidden_states) == layers + 1
    assert out.hidden_states[-1].shape == (2, batch.input_ids.shape[1], hidden_size)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_tiny_lm_accepts_inputs_embeds():
    model, tok = tiny_lm()
    ids = tok(GOAL_PROMPT, return_tensors="pt").input_ids
    embeds = model.get_input_embeddings()(ids)
    with torch.no_grad():
        from_ids = model(input_ids=ids, output_hidden_states=True)
        from_embeds = model(inputs_embeds=embeds, output_hidden_states=True)
    torch.testing.assert_close(from_embeds.logits, from_ids.logits)
    torch.testing.assert_close(from_embeds.hidden_states[-1], from_ids.hidden_states[-1])


def test_tiny_lm_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, _ = tiny_lm(seed=0)
    assert torch.equal(torch.rand(3), expected_next)
    b, _ = tiny_lm(seed=0)
    c, _ = tiny_lm(seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_lm_info_of_tiny_lm():
    model, tok = tiny_lm(hidden_size=32, layers=3, heads=2)
    info = lm_info(model)
    assert info["hidden_size"] == 32 and info["layers"] == 3 and info["heads"] == 2
    assert info["vocab_size"] == len(tok)
    assert info["dtype"] == "float32" and info["tie_word_embeddings"]
    # Tied input and output embeddings are counted once.
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["parameters"] == info["trainable_parameters"]


# --------------------------------------------------------------------------------------------
# resolve_lm
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["/no/such/folder", "./nope", "weights/model.gguf", "no-such-lm"]
)
def test_resolve_lm_missing_says_what_to_pass(missing):
    with pytest.raises(LMNotFoundError) as e:
        resolve_lm(missing)
    message = str(e.value)
    assert repr(missing) in message and "not found locally" in message
    assert "a .gguf file" in message and "smollm2-135m" in message and "gemma3-270m" in message


def test_resolve_lm_rejects_folders_and_files_that_hold_no_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LMNotFoundError, match="neither a config.json nor a .gguf"):
        resolve_lm(tmp_path)
    with pytest.raises(LMNotFoundError, match="not a .gguf file"):
        resolve_lm(tmp_path / "notes.txt")
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(LMNotFoundError, match="several .gguf files"):
        resolve_lm(tmp_path)


def test_resolve_lm_gguf_file_and_folder(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    for given in (tmp_path, tmp_path / "m.gguf", str(tmp_path / "m.gguf")):
        r = resolve_lm(given)
        assert r.kind == "gguf" and r.name == "m" and Path(r.location) == tmp_path / "m.gguf"


def test_resolve_lm_registry_name_whose_package_is_missing(monkeypatch):
    monkeypatch.setitem(
        LM_REGISTRY, "ghost-1m", PackagedGGUF("kalm_no_such_pkg", "*.gguf", "ghost-gguf")
    )
    with pytest.raises(LMNotFoundError, match="pip install ghost-gguf"):
        resolve_lm("ghost-1m")


@pytest.mark.skipif(
    importlib.util.find_spec(LM_REGISTRY[DEFAULT_LM].package) is None,
    reason="the default LM's package is not installed",
)
def test_resolve_default_lm_finds_its_packaged_gguf():
    r = resolve_lm()
    assert r.name == DEFAULT_LM and r.kind == "gguf" and r.location.endswith(".gguf")
    assert Path(r.location).is_file()


# --------------------------------------------------------------------------------------------
# load_base_lm: local folders and the GGUF cache (with the slow dequantization stubbed out)
# --------------------------------------------------------------------------------------------


def _logits(model, tok):
    with torch.no_grad():
        return model(**tok(GOAL_PROMPT, return_tensors="pt")).logits


def test_local_hf_folder_loads_back_identical(tmp_path):
    model, tok = tiny_lm(seed=3)
    model.save_pretrained(tmp_path / "tiny", safe_serialization=True)
    tok.save_pretrained(tmp_path / "tiny")
    assert resolve_lm(tmp_path / "tiny").kind == "hf-folder"
    loaded, loaded_tok = load_base_lm(tmp_path / "tiny")
    assert not loaded.training
    assert loaded_tok(GOAL_PROMPT).input_ids == tok(GOAL_PROMPT).input_ids
    assert torch.equal(_logits(loaded, loaded_tok), _logits(model, tok))


def test_gguf_is_dequantized_once_then_read_from_cache(tmp_path, monkeypatch):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))
    calls = []

    def fake_dequantize(path):
        calls.append(path)
        return tiny_lm(seed=5)

    monkeypatch.setattr(base, "_dequantize_gguf", fake_dequantize)
    cache = tmp_path / "cache"
    first, tok = load_base_lm(gguf, cache_dir=cache)
    second, _ = load_base_lm(gguf, cache_dir=cache)
    assert calls == [gguf]
    folder = lm_cache_dir(resolve_lm(gguf), cache)
    assert folder.parent == cache and folder.name.startswith("fake-")
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # no temp folders left
    assert torch.equal(_logits(first, tok), _logits(second, tok))
    # Another file (different content) gets its own cache folder.
    gguf.write_bytes(b"GGUF" + bytes(200))
    assert lm_cache_dir(resolve_lm(gguf), cache) != folder


def test_interrupted_cache_write_leaves_no_cache(tmp_path, monkeypatch):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    cache = tmp_path / "cache"

    def interrupted(path):
        model, tok = tiny_lm()

        def fail(*args, **kwargs):
            raise KeyboardInterrupt

        tok.save_pretrained = fail  # dies after the weights are written
        return model, tok

    monkeypatch.setattr(base, "_dequantize_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_base_lm(gguf, cache_dir=cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(base, "_dequantize_gguf", lambda path: tiny_lm())
    model, _ = load_base_lm(gguf, cache_dir=cache)
    assert lm_info(model)["hidden_size"] == 64


def test_damaged_cache_folder_is_rebuilt(tmp_path, monkeypatch):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    folder = lm_cache_dir(resolve_lm(gguf), cache)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{")  # half a file, and no completion marker
    monkeypatch.setattr(base, "_dequantize_gguf", lambda path: tiny_lm(hidden_size=32, heads=2))
    model, _ = load_base_lm(gguf, cache_dir=cache)
    assert lm_info(model)["hidden_size"] == 32


def test_cache_root_follows_kalm_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KALM_CACHE_DIR", str(tmp_path))
    assert lm_cache_root() == tmp_path / "lm"
    assert lm_cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("KALM_CACHE_DIR")
    assert lm_cache_root() == Path.home() / ".cache" / "kalm" / "lm"


# --------------------------------------------------------------------------------------------
# The real default LM (dequantizes once, ~1 minute on a small CPU; then ~1 s from the cache)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_lm_loads_and_generates():
    model, tok = load_base_lm()
    assert tok.pad_token is not None
    info = lm_info(model)
    assert info["hidden_size"] == 576 and info["layers"] == 30
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip()
    assert "Paris" in text
