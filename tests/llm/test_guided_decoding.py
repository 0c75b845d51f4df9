"""Goal-guided decoding: of the LM's K likeliest actions, each step takes the one whose next state,
as the LM predicts it, the goal's rule ranks closest to the goal; implausible ones never."""

import numpy as np
import pytest
import torch

from kalm.envs import get_env
from kalm.goals.spec import All, Gather, Move, Relation
from kalm.envs.clevr.goals.spec import PROGRESS_MET_BONUS, goal_progress
from kalm.imagine.generate import ImagineConfig
from kalm.llm.generate import decoder, generate_rollouts, guided_decoding_available


def _scene(red, blue):
    """Red and blue where given, the other three balls far off in the back corners."""
    return np.array([*red, *blue, -0.45, 0.55, 0.0, 0.6, 0.45, 0.55], dtype=np.float64)


def test_progress_rises_toward_the_goal_and_jumps_when_it_holds():
    goal = Relation("red", "blue", "left")
    far, near = _scene((0.4, 0.0), (0.0, 0.0)), _scene((-0.1, 0.1), (0.0, 0.0))
    met = _scene((-0.2, 0.0), (0.0, 0.0))
    assert goal_progress(goal, far) < goal_progress(goal, near) < 0
    assert goal.holds(met) and goal_progress(goal, met) > PROGRESS_MET_BONUS - 0.1
    assert goal_progress(goal, np.full(10, np.nan)) == -np.inf
    # a conjunction counts only its relations not yet met
    both = All((goal, Relation("blue", "red", "right")))
    assert goal_progress(both, met) > PROGRESS_MET_BONUS - 0.1
    assert goal_progress(both, far) == pytest.approx(2 * goal_progress(goal, far))
    # a move is judged from the start state; a gathering by how far balls are outside it
    move = Move("red", "left")
    assert goal_progress(move, near, far) > goal_progress(move, far, far) == 0.0
    assert goal_progress(Gather("green"), near) < 0
    assert get_env("clevr").goal_progress(goal, near) == goal_progress(goal, near)


def test_guided_steps_are_the_lms_likeliest_actions_closest_to_the_goal(grounded, monkeypatch):
    assert guided_decoding_available(grounded)
    env = get_env("clevr")
    monkeypatch.setattr(type(env), "implausible_steps",
                        lambda self, o, n, a: np.zeros(len(a), dtype=bool))
    goal = Relation("red", "blue", "left")
    texts = ["put red left of blue"] * 3
    s0 = np.random.default_rng(4).uniform(-0.4, 0.4, (3, 10)).astype(np.float32)
    K = 5
    stats: dict = {}
    got = generate_rollouts(grounded, texts, s0, [goal] * 3, max_steps=4, precision="fp32",
                            guide=K, stats=stats)
    assert stats["guided_steps"] == sum(len(r.actions) for r in got)
    plain = generate_rollouts(grounded, texts, s0, [goal] * 3, max_steps=4, precision="fp32")
    assert stats["changed_steps"] >= 1 and any(
        g.actions.tolist() != p.actions.tolist() for g, p in zip(got, plain))
    # replay each guided rollout step by step: its action is among the LM's K likeliest after its
    # own prefix, and no other of those K lands (in the LM's prediction) closer to the goal
    for r, start in zip(got, s0):
        for t, a in enumerate(r.actions):
            cands = _candidates(grounded, texts[0], r.observations[: t + 1], r.actions[:t], K)
            assert int(a) in cands
            best = max(goal_progress(goal, nxt, start) for nxt in cands.values())
            assert goal_progress(goal, r.observations[t + 1], start) == pytest.approx(best, abs=1e-4)


def test_guided_decoding_never_takes_an_implausible_action(grounded, monkeypatch):
    env = get_env("clevr")
    texts = ["put red left of blue", "x y"]
    s0 = np.random.default_rng(5).uniform(-0.4, 0.4, (2, 10)).astype(np.float32)
    goals = [Relation("red", "blue", "left")] * 2
    plain = generate_rollouts(grounded, texts, s0, goals, max_steps=5, precision="fp32")
    banned = {int(plain[0].actions[0]), int(plain[1].actions[0])}
    monkeypatch.setattr(type(env), "implausible_steps",
                        lambda self, o, n, a: np.isin(np.asarray(a), list(banned)))
    for precision in ("fp32", "reference"):
        got = generate_rollouts(grounded, texts, s0, goals, max_steps=5, precision=precision,
                                guide=6)
        for r in got:
            assert not set(r.actions.tolist()) & banned


def test_guide_one_is_greedy_and_rows_without_a_goal_stay_greedy(grounded):
    texts = ["put red left of blue", "push green"]
    s0 = np.random.default_rng(6).uniform(-0.4, 0.4, (2, 10)).astype(np.float32)
    plain = generate_rollouts(grounded, texts, s0, [None, None], max_steps=4, precision="fp32")
    for guide in (1, 6):
        got = generate_rollouts(grounded, texts, s0, [None, None], max_steps=4,
                                precision="fp32", guide=guide)
        for p, g in zip(plain, got):
            assert g.actions.tolist() == p.actions.tolist()
            np.testing.assert_allclose(g.observations, p.observations, atol=1e-5)
    with pytest.raises(ValueError, match="guide"):
        ImagineConfig(guide=-1).validate()


@torch.no_grad()
def _candidates(model, text, observations, actions, k):
    """{action: the LM's predicted next state} for the LM's ``k`` likeliest actions after the
    prefix ``s_0 a_0 ... s_t`` (teacher-forced, fp32)."""
    from kalm.llm.sequences import collate, rollout_prompt

    dec = decoder(model, "fp32")
    batch = collate([rollout_prompt(text, model.prompt_style)], model.tokenizer,
                    model.positions_per_state, left_pad=True)
    dec.start(model.embed(batch), batch.attention_mask, capacity=batch.input_ids.shape[1] + 64)
    obs = torch.from_numpy(np.asarray(observations[0], dtype=np.float32))[None]
    h = dec.feed(model.codec.embed_states(obs))
    for t, a in enumerate(actions):
        at = torch.tensor([int(a)])
        dec.feed(model.codec.embed_actions(at).unsqueeze(1).to(h.dtype))
        obs = torch.from_numpy(np.asarray(observations[t + 1], dtype=np.float32))[None]
        h = dec.feed(model.codec.embed_states(obs).to(h.dtype))
    logits = model.codec.action_logits(h, obs).float()[0]
    out = {}
    for a in logits.topk(k).indices.tolist():
        at = torch.tensor([a])
        ha = dec.feed(model.codec.embed_actions(at).unsqueeze(1).to(h.dtype))
        out[a] = model.codec.next_state(ha, obs, at)[0].numpy()
        dec.rewind(1)
    return out
