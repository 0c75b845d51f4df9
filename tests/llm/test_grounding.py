"""Grounding with a tiny LM built from a config: sequences, losses, training, save/load, generation."""

import json

import numpy as np
import pytest
import torch

from kalm.data.collect import collect_dataset
from kalm.goals.spec import Relation
from kalm.llm.base import tiny_lm
from kalm.llm.config import GroundConfig, PRESETS
from kalm.llm.generate import explain_rollouts, generate_rollouts, next_actions, predict_next_states
from kalm.llm.model import GroundedLM
from kalm.llm.sequences import (
    Action,
    State,
    Text,
    collate,
    consequence_sequence,
    dynamics_sequence,
    explain_sequence,
    rollout_sequence,
)
from kalm.llm.train import GroundingData, build_model, load_grounded, train_grounding

from .fitting import assert_every_loss_falls


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "d.npz"
    collect_dataset(episodes=24, seed=0, out=p, progress=False)
    return p


def _obs(k, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, size=(k, 10)).astype(np.float32)


@pytest.mark.parametrize("state_tokens,P", [("state", 1), ("ball", 5)])
def test_placeholders_land_on_the_right_positions(state_tokens, P):
    _, tok = tiny_lm()
    obs = _obs(3)
    seq = rollout_sequence("put red left of blue", obs, [3, 17])
    b = collate([seq, [Text("hi")]], tok, P)
    prompt_ids = tok(seq[0].text, add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert b.input_ids[0, :n].tolist() == prompt_ids
    # s0 at n..n+P-1, a0 at n+P, s1 at n+P+1.., a1, s2
    assert b.state_pos.tolist() == [n, n + P + 1, n + 2 * P + 2]
    assert b.action_pos.tolist() == [n + P, n + 2 * P + 1]
    np.testing.assert_allclose(b.state_obs.numpy(), obs)
    # predictions are read one position earlier
    assert b.at_pos.tolist() == [n + P - 1, n + 2 * P]
    assert b.st_pos.tolist() == [n + P, n + 2 * P + 1]
    np.testing.assert_allclose(b.st_base.numpy(), obs[:2])
    assert b.attention_mask[0].sum() == n + 3 * P + 2
    assert b.attention_mask[1].sum() == len(tok("hi", add_special_tokens=False)["input_ids"])
    # explanation targets: the goal tokens (+ eos), each read from the position before it
    ex = collate([explain_sequence("red left", obs, [3, 17])], tok, P)
    tgt = tok(" red left", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ex.tt_target.tolist() == tgt
    assert ex.input_ids[0, ex.tt_pos + 1].tolist() == tgt[:-1] + [ex.input_ids[0, -1].item()]
    # one-push changes and whole-episode changes (consequence) are flagged for their own scale
    assert b.st_episode.tolist() == [False, False]
    cb = collate([consequence_sequence("red left", obs[0], obs[2])], tok, P)
    assert cb.st_episode.tolist() == [True]
    # left padding for generation shifts every index by the pad length
    lp = collate([seq, [Text("hi")]], tok, P, left_pad=True)
    assert lp.attention_mask[1, -1] == 1 and lp.attention_mask[1, 0] == 0


@pytest.mark.parametrize("state_tokens", ["state", "ball"])
def test_loss_falls_on_every_objective(state_tokens):
    lm, tok = tiny_lm()
    torch.manual_seed(0)
    cfg = GroundConfig(state_tokens=state_tokens)
    model = build_model(cfg, lm, tok)
    obs = _obs(4, seed=1)
    batch = collate([rollout_sequence("put red left of blue", obs, [3, 17, 25]),
                     dynamics_sequence(obs[0], 3, obs[1]),
                     consequence_sequence("put red left of blue", obs[0], obs[3]),
                     explain_sequence("put red left of blue", obs, [3, 17, 25])], tok,
                    model.positions_per_state)
    assert_every_loss_falls(model, batch)


def test_train_save_load_round_trip_and_resume(dataset_path, tmp_path):
    lm, tok = tiny_lm()
    out = tmp_path / "run"
    cfg = GroundConfig(data=str(dataset_path), **{**PRESETS["tiny"], "steps": 6, "save_every": 3})
    model = train_grounding(cfg, out, lm=lm, tokenizer=tok, progress=False)
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "done" and status["step"] == 6
    assert (out / "model" / "codec.safetensors").exists()
    assert (out / "model" / "adapter" / "adapter_model.safetensors").exists()
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 7 and "val_rollout_action" in rows[0]
    # a fresh base model + the saved files give identical outputs
    lm2, tok2 = tiny_lm()
    loaded = load_grounded(out, lm=lm2, tokenizer=tok2)
    obs = _obs(2, seed=3)
    r1 = generate_rollouts(model, ["put red left of blue"] * 2, obs, max_steps=4)
    r2 = generate_rollouts(loaded, ["put red left of blue"] * 2, obs, max_steps=4)
    for a, b in zip(r1, r2):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_allclose(a.observations, b.observations, atol=1e-6)
    # resume: a longer run continues from the checkpoint instead of starting over
    cfg2 = GroundConfig(**{**cfg.to_dict(), "steps": 8})
    lm3, tok3 = tiny_lm()
    train_grounding(cfg2, out, lm=lm3, tokenizer=tok3, progress=False)
    steps = [int(r.split(",")[0]) for r in (out / "metrics.csv").read_text().strip().splitlines()[1:]]
    assert steps == list(range(1, 9))


def test_generation_stops_when_goal_holds(monkeypatch):
    lm, tok = tiny_lm()
    model = build_model(GroundConfig(), lm, tok)
    goal = Relation("red", "blue", "left")
    start = np.array([0.3, 0.0, -0.3, 0.0, -0.4, 0.5, 0.0, 0.5, 0.4, 0.5], dtype=np.float32)
    done = start.copy()
    done[0:2] = [-0.6, 0.0]  # red 0.3 left of blue: the goal holds
    calls = {"n": 0}

    def fake_next_state(h, obs, action=None):
        calls["n"] += 1
        out = obs.clone()
        if calls["n"] >= 3:  # the third generated state meets the goal
            out[:] = torch.from_numpy(done)
        return out

    monkeypatch.setattr(model.codec, "next_state", fake_next_state)
    r = generate_rollouts(model, ["put red to the left of blue"], start[None], [goal], max_steps=10)[0]
    assert r.goal_met and len(r.actions) == 3 and r.observations.shape == (4, 10)
    r = generate_rollouts(model, ["put red to the left of blue"], start[None], [None], max_steps=5)[0]
    assert not r.goal_met and len(r.actions) == 5


def test_inference_api_shapes_and_teacher_forcing_agrees_with_generation():
    lm, tok = tiny_lm()
    model = build_model(GroundConfig(state_tokens="ball"), lm, tok)
    obs = _obs(2, seed=5)
    r = generate_rollouts(model, ["push red left", "line up the balls"], obs, max_steps=3)
    assert [len(x.actions) for x in r] == [3, 3]
    forced = next_actions(model, ["push red left"] * 3, [r[0].observations[: k + 1] for k in range(3)],
                          [r[0].actions[:k] for k in range(3)])
    np.testing.assert_array_equal(forced, r[0].actions)
    assert predict_next_states(model, obs, np.array([1, 2])).shape == (2, 10)
    texts = explain_rollouts(model, [x.observations for x in r], [x.actions for x in r], max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_config_validation_and_data_errors(tmp_path):
    with pytest.raises(ValueError):
        GroundConfig(objectives=["dream"]).validate()
    with pytest.raises(ValueError):
        GroundConfig.from_dict({"nope": 1})
    with pytest.raises(FileNotFoundError):
        load_grounded(tmp_path)


def test_init_from_starts_from_a_trained_model_of_the_same_design(dataset_path, tmp_path):
    lm, tok = tiny_lm()
    base = GroundConfig(data=str(dataset_path), **{**PRESETS["tiny"], "steps": 3, "save_every": 3})
    first = train_grounding(base, tmp_path / "a", lm=lm, tokenizer=tok, progress=False)
    # lr 0: the continued run must hold exactly the first run's weights
    cont = GroundConfig(**{**base.to_dict(), "steps": 1, "lr": 0.0, "codec_lr": 0.0,
                           "init_from": str(tmp_path / "a")})
    lm2, tok2 = tiny_lm()
    second = train_grounding(cont, tmp_path / "b", lm=lm2, tokenizer=tok2, progress=False)
    obs = _obs(2, seed=5)
    r1 = generate_rollouts(first, ["put red left of blue"] * 2, obs, max_steps=3)
    r2 = generate_rollouts(second, ["put red left of blue"] * 2, obs, max_steps=3)
    for a, b in zip(r1, r2):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_allclose(a.observations, b.observations, atol=1e-5)
    # a fresh run without init_from differs
    fresh = GroundConfig(**{**cont.to_dict(), "init_from": ""})
    lm3, tok3 = tiny_lm()
    third = train_grounding(fresh, tmp_path / "c", lm=lm3, tokenizer=tok3, progress=False)
    r3 = generate_rollouts(third, ["put red left of blue"] * 2, obs, max_steps=3)
    assert any(not np.allclose(a.observations, c.observations) for a, c in zip(r1, r3))
    other = GroundConfig(**{**cont.to_dict(), "lora_r": 4})
    lm4, tok4 = tiny_lm()
    with pytest.raises(ValueError, match="lora_r"):
        train_grounding(other, tmp_path / "d", lm=lm4, tokenizer=tok4, progress=False)


def test_explanation_accuracy_scores_exact_and_valid_accounts(dataset_path, monkeypatch):
    """Exact: parses to the true goal; valid: any goal the rollout made true (ambiguity aside)."""
    from kalm.data.episodes import load_dataset
    from kalm.goals.language import describe
    from kalm.goals.parser import goals_equivalent
    from kalm.goals.spec import achieved_relations, goal_from_dict
    from kalm.llm import metrics

    eps = [e for e in load_dataset(dataset_path) if e.success and e.goal["kind"] == "relation"]
    other = [next((r for r in achieved_relations(e.observations[0], e.observations[-1])
                   if not goals_equivalent(r, goal_from_dict(e.goal))), None) for e in eps]
    answers = {"true": [describe(goal_from_dict(e.goal)) for e in eps],
               "other": [describe(r) if r is not None else "nonsense" for r in other],
               "junk": ["the weather is nice"] * len(eps)}
    for kind, texts in answers.items():
        it = iter(texts)
        monkeypatch.setattr(metrics, "explain_rollouts", lambda m, obs, acts, **kw: [next(it) for _ in obs])
        out = metrics.explanation_accuracy(None, eps, batch_size=5, max_steps=50)
        assert out["episodes"] == len(eps) > 5
        if kind == "true":
            assert out["explanation_accuracy"] == out["valid"] == 1.0
        elif kind == "other":
            n_other = sum(r is not None for r in other)
            assert n_other > 0  # some rollouts made another relation true too
            assert out["valid"] == pytest.approx(n_other / len(eps))
            assert out["explanation_accuracy"] <= 1 - n_other / len(eps) + 1e-9
        else:
            assert out["explanation_accuracy"] == out["valid"] == 0.0
        assert 0 < out["chance_among_valid"] <= 1 and 0 <= out["ambiguous"] < 1
