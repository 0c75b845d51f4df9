"""Explanations kept to true accounts: decoding restricted to the training-phrasing texts of the
goals the rollout made true (by the environment's rules on the rollout's own states), the LM
choosing among them token by token."""

from pathlib import Path

import numpy as np
import pytest
import torch

from kalm.envs import get_env
from kalm.envs.clevr.goals.language import all_phrasings
from kalm.envs.clevr.goals.parser import parse_goal_text
from kalm.envs.clevr.goals.spec import Relation, describes
from kalm.llm.generate import decoder, explain_rollouts, explanation_constraint_available
from kalm.llm.sequences import collate, explain_prompt

CLEVR = get_env("clevr")


def _scene(red, blue):
    """Red and blue where given, the other three balls far off in the back corners."""
    return np.array([*red, *blue, -0.45, 0.55, 0.0, 0.6, 0.45, 0.55], dtype=np.float64)


def _rollout():
    """Red pushed from right of blue to its left: 'red left of blue' became true."""
    return np.stack([_scene((0.3, 0.0), (0.0, 0.0)), _scene((0.1, 0.0), (0.0, 0.0)),
                     _scene((-0.2, 0.0), (0.0, 0.0))]).astype(np.float32)


def test_clevr_candidates_are_training_phrasings_of_relations_the_rollout_made_true():
    obs = _rollout()
    cands = CLEVR.explanation_candidates(obs)
    assert "Put the red ball to the left of the blue ball" in cands
    assert "Put the blue ball to the right of the red ball" in cands  # the same relation
    rephrase = {t for src, dst in (("red", "blue"), ("blue", "red"))
                for d in ("left", "right", "front", "behind")
                for t in all_phrasings(Relation(src, dst, d), "rephrase")}
    assert not set(cands) & rephrase, "novel-suite wordings must never be candidates"
    for text in cands:
        g = parse_goal_text(text)
        assert g is not None and describes(g, obs[0], obs[-1])
    # a rollout where nothing changed made nothing true; a broken state names nothing
    assert CLEVR.explanation_candidates(obs[[0, 0]]) == []
    bad = obs.copy()
    bad[-1, 0] = np.nan
    assert CLEVR.explanation_candidates(bad) == []


def test_constrained_explanations_are_candidates_and_free_where_none(grounded):
    assert explanation_constraint_available(grounded)
    obs = _rollout()
    acts = np.array([0, 0])
    still = obs[[0, 0, 0]]
    for precision in ("fp32", "reference"):
        got = explain_rollouts(grounded, [obs, still, obs], [acts, acts, acts],
                               precision=precision, constrained=True)
        cands = set(CLEVR.explanation_candidates(obs))
        assert got[0] in cands and got[2] == got[0]
        free = explain_rollouts(grounded, [still], [acts], precision=precision)
        assert got[1] == free[0], "a rollout that made nothing true is explained freely"


def test_the_lm_picks_among_candidates_by_its_own_likelihood(grounded, monkeypatch):
    obs, acts = _rollout(), np.array([0, 0])
    texts = ["Put the red ball to the left of the blue ball", "Move the blue ball right of red"]
    ids = [grounded.tokenizer(" " + t, add_special_tokens=False)["input_ids"] for t in texts]
    k = next(i for i, (a, b) in enumerate(zip(*ids)) if a != b)  # where the two texts part
    # the LM's logits there, fed the explanation prompt and the shared prefix
    batch = collate([explain_prompt(obs, acts, grounded.prompt_style, grounded.codec.explain_balls)],
                    grounded.tokenizer, grounded.positions_per_state, left_pad=True)
    emb = grounded.lm.get_input_embeddings()
    with torch.no_grad():
        dec = decoder(grounded, "fp32")
        h = dec.start(grounded.embed(batch), batch.attention_mask, capacity=batch.input_ids.shape[1] + k + 1)
        for t in ids[0][:k]:
            h = dec.feed(emb(torch.tensor([t])).unsqueeze(1))
        logits = dec.logits(h)[0]
    likelier = texts[int(logits[ids[1][k]] > logits[ids[0][k]])]
    monkeypatch.setattr(type(CLEVR), "explanation_candidates", lambda self, o: list(texts))
    got = explain_rollouts(grounded, [obs], [acts], precision="fp32", constrained=True)
    assert got == [likelier]
    # one candidate: the explanation is that text, whatever the LM would have written
    monkeypatch.setattr(type(CLEVR), "explanation_candidates", lambda self, o: [texts[1]])
    assert explain_rollouts(grounded, [obs], [acts], precision="fp32", constrained=True) == [texts[1]]


def test_metaworld_candidates_name_the_tasks_whose_rule_became_true():
    from kalm.envs.metaworld.language import REPHRASE_PHRASES
    from kalm.envs.metaworld.success import task_success

    from kalm.data.episodes import load_dataset

    env = get_env("metaworld")
    root = Path(__file__).resolve().parents[2]
    ds = load_dataset(root / "assets/data/metaworld1k.npz")  # shipped expert episodes
    ep = next(ds[i] for i in range(len(ds)) if ds[i].goal["task"] == "push" and ds[i].success)
    states = ep.observations
    assert task_success("push", states[-1]) and not task_success("push", states[0])
    cands = env.explanation_candidates(states)
    tasks = {env.parse_goal(t).task for t in cands}
    assert "push" in tasks
    for t in tasks:
        assert task_success(t, states[-1]) and not task_success(t, states[0])
    assert not set(cands) & {p for ps in REPHRASE_PHRASES.values() for p in ps}
    assert env.explanation_candidates(states[[0, 0]]) == []


def test_environments_say_which_optional_hooks_they_provide():
    mw = get_env("metaworld")
    assert CLEVR.provides("goal_progress") and CLEVR.provides("implausible_steps")
    assert CLEVR.provides("explanation_candidates") and mw.provides("explanation_candidates")
    assert mw.provides("goal_progress") and mw.provides("implausible_steps")
    assert not mw.provides("relabel_episode") and not mw.provides("goal_mentions")
