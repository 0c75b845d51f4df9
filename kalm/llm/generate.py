"""Inference with a grounded LM: goal text + s0 -> rollout, rollout -> goal text, (s, a) -> s'.

Generation is greedy (actions by argmax, states by regression), batched with left padding, and
uses the KV cache: each step feeds only the new action / state positions. A sequence stops when
its goal holds on a generated state (the goal spec's success rule) or at the horizon cap.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from kalm.goals.spec import Goal, Move, goal_horizon
from kalm.llm.model import GroundedLM
from kalm.llm.sequences import collate, dynamics_sequence, explain_prompt, rollout_prompt, State

__all__ = ["Rollout", "generate_rollouts", "warm_up", "explain_rollouts", "predict_next_states", "next_actions"]


@dataclass
class Rollout:
    """An imagined rollout: states (T+1, 10), actions (T,), and whether the goal was met."""

    text: str
    observations: np.ndarray
    actions: np.ndarray
    goal_met: bool


def _cache_kw(lm) -> str:
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out):
    return out["cache"] if "cache" in out else out["past_key_values"]


class _Stepper:
    """Feeds new embedding positions to the LM, keeping the KV cache and attention mask."""

    def __init__(self, model: GroundedLM, embeds: torch.Tensor, mask: torch.Tensor) -> None:
        self.model, self.kw = model, _cache_kw(model.lm)
        self.mask = mask
        self.pos = (mask.cumsum(-1) - 1).clamp_min(0)[:, -1]
        position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
        out = model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids,
                       use_cache=True, output_hidden_states=True, logits_to_keep=1)
        self.cache = _cache_of(out)
        self.last_hidden = out.hidden_states[-1][:, -1]

    def feed(self, embeds: torch.Tensor) -> torch.Tensor:
        B, n, _ = embeds.shape
        self.mask = torch.cat([self.mask, torch.ones(B, n, dtype=self.mask.dtype)], dim=1)
        position_ids = self.pos.unsqueeze(1) + torch.arange(1, n + 1).unsqueeze(0)
        self.pos = position_ids[:, -1]
        out = self.model.lm(inputs_embeds=embeds, attention_mask=self.mask,
                            position_ids=position_ids, use_cache=True, output_hidden_states=True,
                            logits_to_keep=1, **{self.kw: self.cache})
        self.cache = _cache_of(out)
        self.last_hidden = out.hidden_states[-1][:, -1]
        return self.last_hidden


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def generate_rollouts(
    model: GroundedLM,
    texts: Sequence[str],
    initial_obs: np.ndarray,
    goals: Sequence[Goal | None] | None = None,
    max_steps: int | None = None,
    bf16: bool = False,
    on_step: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
) -> list[Rollout]:
    """Greedy rollouts for each (goal text, s0); stops per sequence when its goal holds.

    ``goals``: goal specs used only to stop early (None: run to ``max_steps``). ``max_steps``
    defaults to each goal's horizon (1 for ``move``), capped at 50. ``on_step(t, observations,
    actions, done)`` is called after each generated step ``t`` (0-based) with the rollouts so far:
    ``observations`` (n, t + 2, obs_dim) from s_0, ``actions`` (n, t + 1) and ``done`` (n,) bool
    (a finished rollout's later entries are to be ignored), so a viewer can draw them live.
    """
    model.eval()
    n = len(texts)
    initial_obs = np.asarray(initial_obs, dtype=np.float32).reshape(n, -1)
    goals = list(goals) if goals is not None else [None] * n
    horizons = [max_steps or (goal_horizon(g) if g is not None else 50) for g in goals]
    if max_steps:
        horizons = [min(h, max_steps) if not isinstance(g, Move) else 1 for h, g in zip(horizons, goals)]
    seqs = [rollout_prompt(t, model.prompt_style) + [State(o)] for t, o in zip(texts, initial_obs)]
    with _autocast(bf16):
        batch = collate(seqs, model.tokenizer, model.positions_per_state, left_pad=True)
        step = _Stepper(model, model.embed(batch), batch.attention_mask)
        obs = torch.from_numpy(initial_obs)
        all_obs, all_act = [initial_obs.copy()], []
        done = np.zeros(n, dtype=bool)
        met = np.zeros(n, dtype=bool)
        lengths = np.zeros(n, dtype=int)
        for t in range(max(horizons)):
            a = model.codec.action_logits(step.last_hidden, obs).argmax(-1)
            h = step.feed(model.codec.embed_actions(a).unsqueeze(1).to(step.last_hidden.dtype))
            nxt = model.codec.next_state(h, obs, a)
            all_act.append(a.numpy().copy())
            all_obs.append(nxt.numpy().copy())
            for i in range(n):
                if done[i]:
                    continue
                lengths[i] = t + 1
                g = goals[i]
                if g is not None and g.holds(all_obs[-1][i], initial_obs[i]):
                    met[i] = done[i] = True
                elif t + 1 >= horizons[i]:
                    done[i] = True
            if on_step is not None:
                on_step(t, np.stack(all_obs, 1), np.stack(all_act, 1), done.copy())
            if done.all():
                break
            obs = nxt
            step.feed(model.codec.embed_states(obs).to(h.dtype))
    O = np.stack(all_obs, 1)
    A = np.stack(all_act, 1) if all_act else np.zeros((n, 0), dtype=np.int64)
    return [Rollout(texts[i], O[i, : lengths[i] + 1].astype(np.float32),
                    A[i, : lengths[i]].astype(np.int64), bool(met[i])) for i in range(n)]


@torch.no_grad()
def next_actions(model: GroundedLM, texts: Sequence[str], observations: Sequence[np.ndarray],
                 actions: Sequence[np.ndarray], bf16: bool = False) -> np.ndarray:
    """Teacher-forced next action after each real prefix (s0 a0 ... s_t): (N,) argmax actions.

    ``observations[i]`` holds s_0..s_t and ``actions[i]`` a_0..a_{t-1}.
    """
    from kalm.llm.sequences import rollout_sequence

    model.eval()
    # Target flags only add prediction sites; the action is read from the last position.
    seqs = [rollout_sequence(t, np.asarray(o)[: len(a) + 1], np.asarray(a), model.prompt_style)
            for t, o, a in zip(texts, observations, actions)]
    with _autocast(bf16):
        batch = collate(seqs, model.tokenizer, model.positions_per_state, left_pad=True)
        h, _ = model.hidden(model.embed(batch), batch.attention_mask)
        last = np.stack([np.asarray(o, np.float32)[len(a)] for o, a in zip(observations, actions)])
        return model.codec.action_logits(h[:, -1], torch.from_numpy(last)).argmax(-1).numpy()


@torch.no_grad()
def predict_next_states(model: GroundedLM, obs: np.ndarray, actions: np.ndarray,
                        bf16: bool = False) -> np.ndarray:
    """The LM's dynamics: (N, 10) states and (N,) actions -> (N, 10) predicted next states."""
    model.eval()
    obs = np.asarray(obs, dtype=np.float32)
    seqs = [dynamics_sequence(o, int(a), o, model.prompt_style)[:-1] for o, a in zip(obs, actions)]
    with _autocast(bf16):
        batch = collate(seqs, model.tokenizer, model.positions_per_state, left_pad=True)
        h, _ = model.hidden(model.embed(batch), batch.attention_mask)
        # Read from the last position (the text before the next state), as in training.
        return model.codec.next_state(h[:, -1], torch.from_numpy(obs),
                                      torch.as_tensor(np.asarray(actions), dtype=torch.long)).numpy()


@torch.no_grad()
def explain_rollouts(model: GroundedLM, observations: Sequence[np.ndarray],
                     actions: Sequence[np.ndarray], max_new_tokens: int = 40,
                     bf16: bool = False) -> list[str]:
    """The LM's goal text for each rollout (greedy decoding until end of text)."""
    model.eval()
    tok = model.tokenizer
    seqs = [explain_prompt(np.asarray(o), np.asarray(a), model.prompt_style, model.codec.explain_balls)
            for o, a in zip(observations, actions)]
    with _autocast(bf16):
        batch = collate(seqs, tok, model.positions_per_state, left_pad=True)
        step = _Stepper(model, model.embed(batch), batch.attention_mask)
        head = model.lm.get_output_embeddings()
        emb = model.lm.get_input_embeddings()
        n = len(seqs)
        out = [[] for _ in range(n)]
        done = np.zeros(n, dtype=bool)
        h = step.last_hidden
        for _ in range(max_new_tokens):
            ids = head(h.to(head.weight.dtype)).argmax(-1)
            for i in range(n):
                if not done[i]:
                    if int(ids[i]) == tok.eos_token_id:
                        done[i] = True
                    else:
                        out[i].append(int(ids[i]))
            if done.all():
                break
            h = step.feed(emb(ids).unsqueeze(1))
    texts = [tok.decode(o, skip_special_tokens=True).strip() for o in out]
    return [t.split("\n")[0].strip() for t in texts]


def warm_up(model: GroundedLM) -> None:
    """Make ``model`` ready for fast generation (the app calls it once, in the background)."""
    from kalm.llm.codec import OBS_DIM

    generate_rollouts(model, ["warm up"], np.zeros((1, OBS_DIM), np.float32), max_steps=1)
    explain_rollouts(model, [np.zeros((2, OBS_DIM), np.float32)], [np.zeros(1, np.int64)],
                     max_new_tokens=1)
