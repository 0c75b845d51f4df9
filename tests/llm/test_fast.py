"""The lean decoder (kalm.llm.fast) against the framework's forward pass, on tiny models."""

import numpy as np
import pytest
import torch

from kalm.goals.spec import Relation
from kalm.llm.base import tiny_lm
from kalm.llm.config import GroundConfig
from kalm.llm.fast import FastLM
from kalm.llm.generate import (
    ActionSession,
    explain_rollouts,
    generate_rollouts,
    next_actions,
    predict_next_states,
    resolve_precision,
)
from kalm.llm.train import build_model


def _llama(kv_heads: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = tiny_lm()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=kv_heads,
                      tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lm = LlamaForCausalLM(cfg).eval()
        for name, p in lm.named_parameters():
            if "norm" in name:  # non-trivial norm weights: they are folded into the projections
                p.data.uniform_(0.5, 1.5)
    return lm


def _reference(lm, embeds, mask):
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                 output_hidden_states=True)
    return out.hidden_states[-1], out.logits


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_fp32_matches_the_framework_with_left_padding_feed_and_select(kv_heads):
    lm = _llama(kv_heads)
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(3, 7, 64, generator=g)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :3] = 0
    mask[1, :1] = 0
    ref, _ = _reference(lm, emb, mask)
    dec = FastLM(lm, "fp32").decoder()
    every = dec.forward_all(emb, mask)
    assert torch.allclose(every[mask.bool()], ref[mask.bool()], atol=1e-5)
    h = dec.start(emb, mask, capacity=8)  # capacity too small on purpose: the cache grows
    assert torch.allclose(h, ref[:, -1], atol=1e-5)
    new = torch.randn(3, 2, 64, generator=g)
    h2 = dec.feed(new)
    m2 = torch.cat([mask, torch.ones(3, 2, dtype=torch.long)], 1)
    ref2, _ = _reference(lm, torch.cat([emb, new], 1), m2)
    assert torch.allclose(h2, ref2[:, -1], atol=1e-5)
    # rows kept in another order, one repeated: each goes on as its own sequence
    dec.select([2, 0, 0])
    last = torch.randn(3, 1, 64, generator=g)
    h3 = dec.feed(last)
    idx = [2, 0, 0]
    ref3, logits3 = _reference(lm, torch.cat([torch.cat([emb, new], 1)[idx], last], 1),
                               torch.cat([m2[idx], torch.ones(3, 1, dtype=torch.long)], 1))
    assert torch.allclose(h3, ref3[:, -1], atol=1e-5)
    assert torch.allclose(dec.logits(h3), logits3[:, -1], atol=1e-4)


def test_int8_stays_close_to_fp32():
    lm = _llama(2)
    emb = torch.randn(2, 9, 64, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 9, dtype=torch.long)
    ref, _ = _reference(lm, emb, mask)
    dec = FastLM(lm, "int8").decoder()
    h = dec.start(emb[:, :5], mask[:, :5])  # a prompt: the fp32 weights
    assert torch.allclose(h, _reference(lm, emb[:, :5], mask[:, :5])[0][:, -1], atol=1e-5)
    for t in range(5, 9):  # one position at a time: int8
        h = dec.feed(emb[:, t: t + 1])
    rel = (h - ref[:, -1]).norm() / ref[:, -1].norm()
    assert 0 < rel < 0.05


def test_int8_smoothing_from_calibration_lowers_the_error():
    from kalm.llm.fast import _Int8Linear, _Linear

    g = torch.Generator().manual_seed(5)
    # One loud input channel meeting small weights, as in LLMs: every channel counts in y, but
    # without smoothing the loud one sets the activation scale and the others lose their bits.
    loud = torch.where(torch.arange(64) == 3, 100.0, 1.0)
    lin = _Linear(torch.randn(48, 64, generator=g) / loud, None)
    x = torch.randn(64, 64, generator=g) * loud
    exact = lin(x)
    lin.observe()
    lin(torch.randn(32, 64, generator=g) * loud)  # calibration inputs
    absmax, lin.absmax = lin.absmax, None

    def err(q):
        return float((q(x) - exact).norm() / exact.norm())

    plain, smoothed = err(_Int8Linear(lin)), err(_Int8Linear(lin, absmax))
    assert smoothed < 0.3 * plain and smoothed < 0.15
    assert torch.equal(_Int8Linear(lin, absmax)(x, exact=True), exact)  # the fp32 path is untouched


def test_supports_only_the_llama_layout():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300))
    assert not FastLM.supports(gpt2)
    assert FastLM.supports(_llama(2))
    with pytest.raises(ValueError, match="does not support"):
        FastLM(gpt2, "fp32")


# ------------------------------------------------------------------ through GroundedLM


def _starts(n, seed=0):
    return np.random.default_rng(seed).uniform(-0.4, 0.4, (n, 10)).astype(np.float32)


def test_generate_fp32_equals_reference_with_shared_prompts_and_early_stops(grounded):
    texts = ["put red left of blue", "put red left of blue", "move green", "x",
             "put red left of blue", "y y y"]
    goals = [Relation("red", "blue", "left")] * 2 + [None] * 4
    s0 = _starts(len(texts))
    ref = generate_rollouts(grounded, texts, s0, goals, max_steps=9, precision="reference")
    got = generate_rollouts(grounded, texts, s0, goals, max_steps=9, precision="fp32")
    for a, b in zip(ref, got):
        assert a.actions.tolist() == b.actions.tolist()
        assert a.goal_met == b.goal_met
        np.testing.assert_allclose(a.observations, b.observations, atol=1e-4)
    # a row's rollout does not depend on the rows beside it
    alone = generate_rollouts(grounded, texts[3:4], s0[3:4], goals[3:4], max_steps=9, precision="fp32")
    assert alone[0].actions.tolist() == got[3].actions.tolist()


def test_generate_reports_each_step_to_a_viewer(grounded):
    seen = []
    rolls = generate_rollouts(grounded, ["a", "b"], _starts(2), max_steps=4, precision="int8",
                              on_step=lambda t, o, a, d: seen.append((t, o.shape, a.shape, d.copy())))
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert seen[2][1] == (2, 4, 10) and seen[2][2] == (2, 3)
    assert seen[-1][3].all()
    assert all(len(r.actions) == 4 for r in rolls)


def test_explain_next_actions_and_dynamics_fp32_equal_reference(grounded):
    rolls = generate_rollouts(grounded, ["put red left of blue"] * 2, _starts(2, 1), max_steps=3,
                              precision="reference")
    obs, acts = [r.observations for r in rolls], [r.actions for r in rolls]
    assert explain_rollouts(grounded, obs, acts, max_new_tokens=6, precision="fp32") == \
        explain_rollouts(grounded, obs, acts, max_new_tokens=6, precision="reference")
    texts = ["put red left of blue"] * 2
    prefixes = [a[:-1] for a in acts]
    assert (next_actions(grounded, texts, obs, prefixes, precision="fp32")
            == next_actions(grounded, texts, obs, prefixes, precision="reference")).all()
    s, a = _starts(3, 2), np.array([0, 7, 33])
    np.testing.assert_allclose(predict_next_states(grounded, s, a, precision="fp32"),
                               predict_next_states(grounded, s, a, precision="reference"), atol=1e-5)


@pytest.mark.parametrize("context", [16, 2])
def test_action_session_equals_teacher_forced_next_actions(grounded, context):
    text = "put red left of blue"
    sess = ActionSession(grounded, text, context=context, precision="fp32")
    observations, actions = [_starts(1, 4)[0]], []
    for t in range(5):
        a = sess.act(observations[-1])
        k = min(len(actions), context)
        ref = next_actions(grounded, [text], [np.stack(observations[len(observations) - k - 1:])],
                           [np.asarray(actions[len(actions) - k:], dtype=np.int64)],
                           precision="reference")[0]
        assert a == ref
        actions.append(a)
        observations.append(observations[-1] + 0.02 * (t + 1))


def test_prepared_weights_follow_training_updates(grounded):
    s0 = _starts(1, 5)
    before = generate_rollouts(grounded, ["go"], s0, max_steps=2, precision="fp32")[0]
    lora = next(p for n, p in grounded.lm.named_parameters() if "lora_B" in n)
    saved = lora.detach().clone()
    with torch.no_grad():
        lora.add_(1.0)  # in place, as an optimizer step
    try:
        fast = generate_rollouts(grounded, ["go"], s0, max_steps=2, precision="fp32")[0]
        ref = generate_rollouts(grounded, ["go"], s0, max_steps=2, precision="reference")[0]
        np.testing.assert_allclose(fast.observations, ref.observations, atol=1e-4)
        assert not np.allclose(fast.observations, before.observations)
    finally:
        with torch.no_grad():
            lora.copy_(saved)


def test_precision_choice(grounded, monkeypatch):
    assert resolve_precision(grounded, "reference") == "reference"
    assert resolve_precision(grounded, "fp32") == "fp32"
    monkeypatch.setenv("KALM_LM_PRECISION", "fp32")
    assert resolve_precision(grounded) == "fp32"
    monkeypatch.setenv("KALM_LM_PRECISION", "bogus")
    with pytest.raises(ValueError, match="KALM_LM_PRECISION"):
        resolve_precision(grounded)


def test_llm_policy_acts_as_teacher_forced_reads(grounded):
    from kalm.policy.llm import LLMPolicy

    pol = LLMPolicy("tiny", model=grounded, context=3)
    goal = Relation("red", "blue", "left")
    obs = [_starts(1, 6)[0]]
    pol.reset(goal, obs[0], text="put red left of blue")
    actions = []
    for t in range(5):
        a = pol.act(obs[-1])
        k = min(len(actions), 3)
        ref = next_actions(grounded, ["put red left of blue"], [np.stack(obs[len(obs) - k - 1:])],
                           [np.asarray(actions[len(actions) - k:], dtype=np.int64)])[0]
        assert a == ref
        actions.append(a)
        obs.append(obs[-1] - 0.01)


def test_scripted_int8_step_equals_the_python_loop(grounded, monkeypatch):
    import kalm.llm.fast as fast

    texts = ["put red left of blue", "go", "move the green ball far behind the cyan one"]
    s0 = _starts(3, 7)
    scripted = generate_rollouts(grounded, texts, s0, max_steps=5, precision="int8")
    monkeypatch.setattr(fast, "_USE_SCRIPT", False)
    loop = generate_rollouts(grounded, texts, s0, max_steps=5, precision="int8")
    for a, b in zip(scripted, loop):
        assert a.actions.tolist() == b.actions.tolist()
        np.testing.assert_allclose(a.observations, b.observations, atol=1e-5)
