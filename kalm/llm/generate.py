"""Inference with a grounded LM: goal text + s0 -> rollout, rollout -> goal text, (s, a) -> s'.

Generation is greedy (actions by argmax or regression, states by regression), batched with left
padding, and uses the KV cache: each step feeds only the new action / state positions. A sequence
stops when its goal holds on a generated state (the environment's success rule) or at the
horizon. Models grounded on rollout windows (``GroundedLM.window``) write long rollouts window by
window: each window is prompted afresh with the goal text and its first state, as in training.
"""

from __future__ import annotations

import inspect
import os
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from kalm.llm.model import GroundedLM
from kalm.llm.sequences import collate, dynamics_sequence, explain_prompt, rollout_prompt, State

_BUILD_LOCK = threading.Lock()

__all__ = ["Rollout", "generate_rollouts", "guided_decoding_available", "physical_replan_available", "warm_up", "decoder", "resolve_precision", "explain_rollouts",
           "predict_next_states", "next_actions", "ActionSession", "explanation_constraint_available"]


@dataclass
class Rollout:
    """An imagined rollout: states (T+1, d), actions (T,) ids or (T, k) vectors, and whether the
    goal was met."""

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
    """The reference path: the framework's forward with its KV cache (any HF causal LM).

    Same interface as ``kalm.llm.fast.FastDecoder``: ``start``, ``feed``, ``select``,
    ``logits``, ``forward_all``.
    """

    can_select = True

    def __init__(self, model: GroundedLM) -> None:
        self.model, self.kw = model, _cache_kw(model.lm)
        self.cache = None

    def start(self, embeds: torch.Tensor, mask: torch.Tensor, capacity: int = 0) -> torch.Tensor:
        self.mask = mask
        self.pos = (mask.cumsum(-1) - 1).clamp_min(0)[:, -1]
        position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids,
                            use_cache=True, output_hidden_states=True, logits_to_keep=1)
        self.cache = _cache_of(out)
        return out.hidden_states[-1][:, -1]

    def feed(self, embeds: torch.Tensor) -> torch.Tensor:
        B, n, _ = embeds.shape
        self.mask = torch.cat([self.mask, torch.ones(B, n, dtype=self.mask.dtype)], dim=1)
        position_ids = self.pos.unsqueeze(1) + torch.arange(1, n + 1).unsqueeze(0)
        self.pos = position_ids[:, -1]
        out = self.model.lm(inputs_embeds=embeds, attention_mask=self.mask,
                            position_ids=position_ids, use_cache=True, output_hidden_states=True,
                            logits_to_keep=1, **{self.kw: self.cache})
        self.cache = _cache_of(out)
        return out.hidden_states[-1][:, -1]

    def rewind(self, n: int) -> None:
        """Forget the last ``n`` fed positions of every row."""
        if n:
            self.cache.crop(-n)  # a negative size: drop that many positions
            self.mask = self.mask[:, :-n]
            self.pos = self.pos - n

    def select(self, index) -> None:
        index = torch.as_tensor(index, dtype=torch.long)
        self.cache.reorder_cache(index)
        self.mask, self.pos = self.mask[index], self.pos[index]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        head = self.model.lm.get_output_embeddings()
        return head(h.to(head.weight.dtype))

    def forward_all(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, _ = self.model.hidden(embeds, mask)
        return h


_FAST_ATTR = "_kalm_fast_lm"


def _fast_weights(model: GroundedLM, precision: str):
    """The model's ``FastLM`` for ``precision``, rebuilt when its trainable weights changed."""
    from kalm.llm.fast import FastLM, fingerprint

    key = (precision, fingerprint(model.lm))
    cached = model.__dict__.get(_FAST_ATTR)
    if cached is not None and cached[0] == key:
        return cached[1]
    with _BUILD_LOCK:
        cached = model.__dict__.get(_FAST_ATTR)
        if cached is not None and cached[0] == key:
            return cached[1]
        weights = FastLM(model.lm, precision,
                         calibration=calibration_embeds(model) if precision == "int8" else ())
        model.__dict__[_FAST_ATTR] = (key, weights)  # not a submodule: never saved or moved
        return weights


@torch.no_grad()
def calibration_embeds(model: GroundedLM, n: int = 6, steps: int = 12, seed: int = 0) -> list:
    """Input sequences typical of generation, for int8's smoothing statistics: rollouts and
    explanations of random pushes from random states, with goal texts in the training phrasing
    (no suite goal or wording: nothing here is fitted to the test goals)."""
    from kalm.llm.sequences import explain_sequence, rollout_sequence

    env = _env_of(model)
    rng = np.random.default_rng(seed)
    mean = model.codec.obs_mean.numpy()
    std = model.codec.obs_std.numpy()
    out = []
    for k, (text, obs, acts) in enumerate(env.calibration_rollouts(rng, n, steps)):
        if obs is None:  # states around the data's
            obs = (mean + std * rng.standard_normal((steps + 1, len(mean)))).astype(np.float32)
        acts = _actions_array(list(acts), model)
        seq = (rollout_sequence(text, obs, acts, model.prompt_style) if k % 2 == 0 else
               explain_sequence(text, obs, acts, model.prompt_style, model.codec.explain_balls))
        batch = collate([seq], model.tokenizer, model.positions_per_state)
        out.append(model.embed(batch).float())
    return out


def resolve_precision(model: GroundedLM, precision: str | None = None) -> str:
    """Which decoding path ``model`` gets: ``"int8"`` / ``"fp32"`` (the lean decoder of
    ``kalm.llm.fast``) or ``"reference"`` (the framework's forward, any causal LM or device).

    ``precision`` None: ``$KALM_LM_PRECISION``, else int8 where supported. Models the lean
    decoder does not support, or not on the CPU, always get the reference path.
    """
    from kalm.llm.fast import FastLM, default_precision

    from kalm.llm.fast import PRECISIONS

    p = (precision or os.environ.get("KALM_LM_PRECISION", "") or "").strip().lower()
    if p and p not in ("reference", *PRECISIONS):
        where = "precision" if precision else "KALM_LM_PRECISION"
        raise ValueError(f"{where} must be one of reference, {', '.join(PRECISIONS)}; got {p!r}")
    if p == "reference":
        return p
    if model.device.type != "cpu" or not FastLM.supports(model.lm):
        return "reference"
    return p or default_precision()


def decoder(model: GroundedLM, precision: str | None = None):
    """A fresh decoding session for ``model`` (see ``resolve_precision``)."""
    p = resolve_precision(model, precision)
    if p == "reference":
        return _Stepper(model)
    return _fast_weights(model, p).decoder()


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def _compact_due(active: int, finished: int) -> bool:
    """Drop finished rows from the cache once they are a noticeable share of the batch."""
    return finished > 0 and (finished * 8 >= active or active - finished <= 2)


def _env_of(model: GroundedLM):
    from kalm.envs import get_env

    return get_env(getattr(model, "env_name", "clevr"))


def _action_item(a: np.ndarray):
    return int(a) if np.ndim(a) == 0 else np.asarray(a, np.float32).copy()


def _actions_array(acts: list, model: GroundedLM) -> np.ndarray:
    if model.codec.action_kind == "discrete":
        return np.asarray(acts, dtype=np.int64)
    k = model.codec.action_dim
    return np.asarray(acts, dtype=np.float32).reshape(len(acts), k)


@torch.no_grad()
def generate_rollouts(
    model: GroundedLM,
    texts: Sequence[str],
    initial_obs: np.ndarray,
    goals: Sequence | None = None,
    max_steps: int | None = None,
    bf16: bool = False,
    on_step: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    precision: str | None = None,
    replan: int = 0,
    stats: dict | None = None,
    guide: int = 0,
    guide_horizon: int = 1,
    guide_obstacles: bool = False,
    settle: int = 0,
) -> list[Rollout]:
    """Greedy rollouts for each (goal text, s0); stops per sequence when its goal holds.

    ``goals``: goal objects used only to stop early (None: run to ``max_steps``). ``max_steps``
    defaults to each goal's horizon (the environment's ``goal_horizon``: CLEVR 50, 1 for
    ``move``; Meta-World 100-200); a goal of horizon 1 always gets 1. ``on_step(t,
    observations, actions, done)`` is called after each generated step ``t`` (0-based) with the
    rollouts so far: ``observations`` (n, t + 2, obs_dim) from s_0, ``actions`` (n, t + 1) (or
    (n, t + 1, k)) and ``done`` (n,) bool (a finished rollout's later entries repeat its last
    ones), so a viewer can draw them live. ``precision``: the decoding path
    (``resolve_precision``; default int8 on this CPU). ``replan``: physical decoding, tries
    per step whose generated transition the environment calls implausible (its
    ``implausible_steps``: off the workbench, bodies inside each other or passing through one;
    geometry only, never the simulator): the LM's next best action is generated instead (0 =
    plain greedy; models without discrete action scores, or environments without such rules,
    never re-plan). ``stats``: a dict that receives the counts (``implausible_steps``,
    ``replans``, ``unfixed_steps``; with ``guide``, ``guided_steps`` and ``changed_steps``).
    ``guide``: goal-guided decoding (``_guide``): each step takes, of the LM's ``guide`` likeliest
    actions, the one whose next state, as the LM itself predicts it, the environment's
    ``goal_progress`` puts closest to the goal, implausible ones ruled out (0 or 1 = greedy; it
    supersedes ``replan``; rows without a goal, environments without a progress measure and
    models without discrete action scores stay greedy). The simulator is never called.
    ``guide_horizon`` (continuous actions): each candidate is scored by the state that many steps
    on, the candidate held, the dynamics head iterated on its own predictions with the LM's hidden
    state of the candidate's step reused: a cheap look-ahead, since one action of a mocap-driven
    arm shows mostly in the steps after it (1: the next state). ``guide_obstacles`` (continuous
    actions): a candidate whose predicted path (its next state and the look-ahead's) crosses a
    fixed obstacle of the goal's scene (the environment's ``obstacle_crossings``: a wall the
    goal's task puts in the way) is ruled out as an implausible one is: the scene's geometry, not
    the LM's knowledge, then keeps the imagined path off the wall. ``settle``: steps the LM goes on
    writing after its goal first holds on a generated state (0: it stops there, as the paper's
    generation does; a rollout still ends at its horizon). The success rule is a threshold that
    the generated states cross at its edge, where a small error of the dynamics puts the
    simulator's replay of the same actions just outside it; settling lets the LM's actions carry
    the rollout into the goal's region. Its own states and actions only: never the simulator.

    The prompt of each distinct text is computed once and shared by the rows that use it, and
    finished rows leave the batch, so the cost follows the positions actually generated.
    """
    model.eval()
    env = _env_of(model)
    n = len(texts)
    initial_obs = np.asarray(initial_obs, dtype=np.float32).reshape(n, -1)
    goals = list(goals) if goals is not None else [None] * n
    horizons = []
    for g in goals:
        base = env.goal_horizon(g) if g is not None else env.horizon
        horizons.append(base if not max_steps else (1 if base == 1 else int(max_steps)))
    if n == 0:
        return []
    if replan and not physical_replan_available(model):
        replan = 0
    if guide > 1 and not guided_decoding_available(model):
        guide = 0
    replan = 0 if guide > 1 else replan
    guide = guide if guide > 1 else 0
    stats = {} if stats is None else stats
    W = int(getattr(model, "window", 0) or 0)
    if not W or max(horizons) <= W:
        obs, acts, met = _generate(model, env, list(texts), initial_obs, goals, horizons,
                                   initial_obs, bf16, on_step, precision, replan, stats, guide,
                                   guide_horizon=guide_horizon, guide_obstacles=guide_obstacles,
                                   settle=settle)[:3]
    else:  # window by window, each prompted afresh from its first state
        obs = [[initial_obs[i]] for i in range(n)]
        acts: list[list] = [[] for _ in range(n)]
        met = np.zeros(n, dtype=bool)
        left = np.full(n, -1, dtype=np.int64)  # settling steps left (-1: goal not met yet)
        active = list(range(n))
        offset = 0
        while active:
            steps = [min(W, horizons[i] - len(acts[i])) for i in active]

            def chunk_step(t, O, A, done, _active=tuple(active), _offset=offset):
                if on_step is None:
                    return
                full_o = [list(o) for o in obs]
                full_a = [list(a) for a in acts]
                for j, i in enumerate(_active):
                    full_o[i] = full_o[i] + list(O[j, 1:])
                    full_a[i] = full_a[i] + list(A[j])
                all_done = np.ones(n, dtype=bool)
                all_done[list(_active)] = done
                on_step(_offset + t, *_padded(full_o, full_a, _offset + t, model), all_done)

            sub_o, sub_a, sub_met, sub_left = _generate(
                model, env, [texts[i] for i in active], np.stack([obs[i][-1] for i in active]),
                [goals[i] for i in active], steps, initial_obs[active], bf16, chunk_step, precision,
                replan, stats, guide, offset,
                np.stack([obs[i][-2] if len(obs[i]) > 1 else obs[i][-1] for i in active]),
                guide_horizon, _window_contexts(model, [obs[i][0] for i in active],
                                                [acts[i] for i in active]), guide_obstacles,
                settle, left[active])
            still = []
            for j, i in enumerate(active):
                obs[i] += sub_o[j][1:]
                acts[i] += sub_a[j]
                met[i] = met[i] or bool(sub_met[j])
                left[i] = sub_left[j]
                settling = left[i] > 0
                if ((not met[i] or settling) and len(acts[i]) < horizons[i]
                        and len(sub_a[j]) == steps[j]):
                    still.append(i)
            offset += W
            active = still
    return [Rollout(texts[i], np.stack(obs[i]).astype(np.float32), _actions_array(acts[i], model),
                    bool(met[i])) for i in range(n)]


def _window_contexts(model: GroundedLM, first_obs: list, actions: list) -> np.ndarray | None:
    """Each row's dynamics context after its actions so far (None: the codec has none)."""
    if not getattr(model.codec, "context_dim", 0):
        return None
    return np.stack([model.codec.context_replay(o, _actions_array(a, model))[-1]
                     for o, a in zip(first_obs, actions)]).astype(np.float32)


def physical_replan_available(model: GroundedLM) -> bool:
    """Whether decoding can re-plan for ``model``: discrete actions scored by the codec, and an
    environment that states which generated transitions are implausible."""
    env = _env_of(model)
    return (model.codec.action_kind == "discrete" and hasattr(model.codec, "action_logits")
            and env.provides("implausible_steps"))


def guided_decoding_available(model: GroundedLM) -> bool:
    """Whether ``guide`` can act for this model: an environment that measures progress toward a
    goal from a state, and actions the decoding can propose alternatives to (discrete: scored by
    the codec; continuous: perturbations of the LM's regressed action)."""
    env = _env_of(model)
    if not env.provides("goal_progress"):
        return False
    if model.codec.action_kind == "discrete":
        return hasattr(model.codec, "action_logits")
    return model.codec.action_kind == "continuous"


# Continuous goal-guided decoding (``_guide_continuous``): the spread of the perturbations of the
# LM's action (in action units; actions span [-1, 1]), and how much closer to the goal, in the
# units of the environment's ``goal_progress``, a perturbation's predicted state must be to
# replace the LM's own action (so the head's noise on states nothing changes does not steer).
GUIDE_NOISE = 0.5
GUIDE_MARGIN = 0.05
GUIDE_SEED = 20241206


@torch.no_grad()
def _guide(model: GroundedLM, env, dec, h_state, obs, a, h, nxt, rows: np.ndarray, goals: list,
           start_obs: np.ndarray, finished: np.ndarray, k: int, stats: dict):
    """Goal-guided decoding of one step: the greedy action ``a`` (already fed, ``nxt`` its
    predicted next state) and the LM's next ``k - 1`` likeliest actions are each fed in turn and
    their next states predicted by the LM; each row takes the one whose predicted state the
    environment's ``goal_progress`` ranks highest, an implausible one (``implausible_steps``)
    never, the LM's order breaking ties (a row whose candidates are all implausible keeps its
    greedy one). The cache ends holding the chosen actions. Geometry and the goal's rule only:
    the simulator is never called."""
    logits = model.codec.action_logits(h_state, obs).float().clone()
    n = len(rows)
    logits[torch.arange(n), a] = float("-inf")
    k = min(k, logits.shape[-1] + 1)
    others = logits.topk(k - 1, dim=-1).indices  # (n, k - 1), after the greedy action
    obs_np = obs.numpy()
    best_val = np.full(n, -np.inf)
    best_a, best_j = a.clone(), np.zeros(n, dtype=np.int64)
    last = 0
    for j in range(k):
        if j:
            a_j = others[:, j - 1]
            dec.rewind(1)
            h_j = dec.feed(model.codec.embed_actions(a_j).unsqueeze(1).to(h.dtype))
            nxt_j = model.codec.next_state(h_j, obs, a_j)
            last = j
        else:
            a_j, nxt_j = a, nxt
        nxt_np = nxt_j.numpy()
        bad = env.implausible_steps(obs_np, nxt_np, a_j.numpy())
        bad = np.zeros(n, dtype=bool) if bad is None else np.asarray(bad, dtype=bool)
        for r in range(n):
            if finished[r] or bad[r] or goals[rows[r]] is None:
                continue
            v = env.goal_progress(goals[rows[r]], nxt_np[r], start_obs[rows[r]])
            if v is not None and v > best_val[r] + 1e-9:
                best_val[r], best_a[r], best_j[r] = v, a_j[r], j
    live = ~np.asarray(finished, dtype=bool)
    stats["guided_steps"] = stats.get("guided_steps", 0) + int(live.sum())
    stats["changed_steps"] = stats.get("changed_steps", 0) + int(((best_j > 0) & live).sum())
    if last == 0:  # only the greedy action was fed (k == 1)
        return a, h, nxt
    if torch.equal(best_a, others[:, last - 1]):  # the cache already holds the choice
        return best_a, h_j, nxt_j
    dec.rewind(1)
    h = dec.feed(model.codec.embed_actions(best_a).unsqueeze(1).to(h.dtype))
    return best_a, h, model.codec.next_state(h, obs, best_a)


@torch.no_grad()
def _guide_continuous(model: GroundedLM, env, dec, obs, a, h, nxt, rows: np.ndarray, goals: list,
                      start_obs: np.ndarray, finished: np.ndarray, k: int, stats: dict,
                      step: int, prev=None, horizon: int = 1, ctx=None,
                      obstacles: bool = False):
    """Goal-guided decoding of one step for continuous actions: the LM's regressed action ``a``
    (already fed, ``nxt`` its predicted next state) and ``k - 1`` perturbations of it (Gaussian,
    spread ``GUIDE_NOISE``, clipped to the action range; drawn from a generator seeded by
    ``GUIDE_SEED`` and ``step``, so decoding stays deterministic) are each fed in turn and their
    next states predicted by the LM; each row takes the candidate whose predicted state the
    environment's ``goal_progress`` ranks highest, provided it beats the LM's own action by
    ``GUIDE_MARGIN``, an implausible one (``implausible_steps``) never (a row whose LM action is
    implausible takes the best plausible candidate whatever the margin). The cache ends holding
    the chosen actions. The states' geometry and the goal's rule only: never the simulator.
    ``ctx``: the rows' dynamics contexts (``_next_state``), carried along the look-ahead."""
    n, d = a.shape
    gen = torch.Generator().manual_seed(GUIDE_SEED + 7919 * int(step))
    noise = torch.randn(k - 1, n, d, generator=gen) * GUIDE_NOISE
    low, high = float(getattr(model.codec, "low", -1.0)), float(getattr(model.codec, "high", 1.0))
    obs_np = obs.numpy()
    best_val = np.full(n, -np.inf)
    best_a, best_j = a.clone(), np.zeros(n, dtype=np.int64)
    h_last = nxt_last = None
    for j in range(k):
        if j:
            a_j = (a + noise[j - 1]).clamp(low, high)
            dec.rewind(1)
            h_j = dec.feed(model.codec.embed_actions(a_j).unsqueeze(1).to(h.dtype))
            nxt_j = _next_state(model, h_j, obs, a_j, prev, ctx)
            h_last, nxt_last = h_j, nxt_j
        else:
            a_j, nxt_j = a, nxt
            h_j = h
        nxt_np = nxt_j.numpy()
        bad = env.implausible_steps(obs_np, nxt_np, a_j.numpy())
        bad = np.zeros(n, dtype=bool) if bad is None else np.asarray(bad, dtype=bool)
        ahead, before, c = nxt_j, obs, ctx
        path = [obs_np, nxt_np]
        for _ in range(int(horizon) - 1):  # the look-ahead: the candidate held, head only
            c = model.codec.context_step(c, a_j) if c is not None else None
            ahead, before = _next_state(model, h_j, ahead, a_j, before, c), ahead
            path.append(ahead.numpy())
        ahead_np = ahead.numpy()
        if obstacles:  # the candidate's predicted path through a wall of the goal's scene
            path_np = np.stack(path, 1)  # (n, horizon + 1, d)
            for r in range(n):
                g = goals[rows[r]]
                if g is not None and not finished[r] and not bad[r]:
                    bad[r] = bool(env.obstacle_crossings(g, path_np[r]))
        for r in range(n):
            if finished[r] or bad[r] or goals[rows[r]] is None:
                continue
            v = env.goal_progress(goals[rows[r]], ahead_np[r], start_obs[rows[r]])
            if v is None:
                continue
            need = best_val[r] + (GUIDE_MARGIN if best_j[r] == 0 and np.isfinite(best_val[r])
                                  else 1e-9)
            if v > need:
                best_val[r], best_a[r], best_j[r] = v, a_j[r], j
    live = ~np.asarray(finished, dtype=bool)
    stats["guided_steps"] = stats.get("guided_steps", 0) + int(live.sum())
    stats["changed_steps"] = stats.get("changed_steps", 0) + int(((best_j > 0) & live).sum())
    if k == 1:
        return a, h, nxt
    if np.all(best_j == k - 1):  # the cache already holds the choice
        return best_a, h_last, nxt_last
    dec.rewind(1)
    h = dec.feed(model.codec.embed_actions(best_a).unsqueeze(1).to(h.dtype))
    return best_a, h, _next_state(model, h, obs, best_a, prev, ctx)


def _next_state(model: GroundedLM, h, obs, a, prev=None, ctx=None):
    """The codec's next state; ``prev`` (the states before ``obs``) and ``ctx`` (the rollouts'
    dynamics contexts before ``a``: ``VectorCodec.context_start``) for heads that read them."""
    if getattr(model.codec, "context_dim", 0):
        return model.codec.next_state(h, obs, a, prev, ctx)
    if prev is not None and getattr(model.codec, "history", False):
        return model.codec.next_state(h, obs, a, prev)
    return model.codec.next_state(h, obs, a)


@torch.no_grad()
def _replan(model: GroundedLM, env, dec, h_state, obs, a, h, nxt, finished: np.ndarray,
            tries: int, stats: dict):
    """Re-plan the rows whose generated step is implausible (``Environment.implausible_steps``:
    geometry of the states, never the simulator): their pushed action is ruled out, the LM's next
    best one is fed instead (every row's action position is fed anew; the rows that keep their
    action get the same result) and its next state generated, up to ``tries`` times. A row still
    implausible after that keeps its last try (the validity checks then flag it)."""
    logits = None
    for k in range(tries + 1):
        bad = env.implausible_steps(obs.numpy(), nxt.numpy(), a.numpy())
        if bad is None:
            return a, h, nxt
        bad = np.asarray(bad, dtype=bool) & ~finished
        if k == 0:
            stats["implausible_steps"] = stats.get("implausible_steps", 0) + int(bad.sum())
        if not bad.any():
            break
        if k == tries:
            stats["unfixed_steps"] = stats.get("unfixed_steps", 0) + int(bad.sum())
            break
        if logits is None:
            logits = model.codec.action_logits(h_state, obs).float().clone()
        idx = torch.as_tensor(np.flatnonzero(bad), dtype=torch.long)
        logits[idx, a[idx]] = float("-inf")
        a = a.clone()
        a[idx] = logits[idx].argmax(-1)
        stats["replans"] = stats.get("replans", 0) + len(idx)
        dec.rewind(1)
        h = dec.feed(model.codec.embed_actions(a).unsqueeze(1).to(h.dtype))
        nxt = model.codec.next_state(h, obs, a)
    return a, h, nxt


def _generate(model: GroundedLM, env, texts: list[str], initial_obs: np.ndarray, goals: list,
              horizons: list[int], start_obs: np.ndarray, bf16: bool, on_step, precision,
              replan: int = 0, stats: dict | None = None, guide: int = 0, step_offset: int = 0,
              prev_obs: np.ndarray | None = None, guide_horizon: int = 1,
              start_ctx: np.ndarray | None = None, guide_obstacles: bool = False,
              settle: int = 0, settle_left: np.ndarray | None = None):
    """One prompt's worth of greedy steps: (states, actions, met, settling steps left) per row
    (left: -1 for a row whose goal has not held); success is judged
    against ``start_obs`` (the episode's s_0, which a later window does not start from).
    ``replan``: tries per implausible step (``_replan``; 0 = none). ``prev_obs``: the state
    before each row's first one (a later window's), for dynamics heads that read the velocity
    (None: the first states are resets, at rest). ``start_ctx``: each row's dynamics context at
    its first state (a later window's; None: ``context_start`` of the first states).
    ``settle``: steps generated after the goal first holds (``generate_rollouts``);
    ``settle_left``: each row's steps still to settle from an earlier window (-1: not met)."""
    stats = {} if stats is None else stats
    n = len(texts)
    settle = max(0, int(settle))
    left = (np.full(n, -1, dtype=np.int64) if settle_left is None
            else np.asarray(settle_left, dtype=np.int64).copy())
    dec = decoder(model, precision)
    # Distinct prompts once, then fanned out to their rows.
    unique: dict[str, int] = {}
    row_text = [unique.setdefault(t, len(unique)) for t in texts]
    prompts = [rollout_prompt(t, model.prompt_style) for t in unique]
    P = model.positions_per_state
    traj_obs = [[initial_obs[i]] for i in range(n)]
    traj_act: list[list] = [[] for _ in range(n)]
    met = left >= 0
    with _autocast(bf16):
        batch = collate(prompts, model.tokenizer, P, left_pad=True)
        capacity = batch.input_ids.shape[1] + (P + 1) * (max(horizons) + 1)
        dec.start(model.embed(batch), batch.attention_mask, capacity=capacity)
        dec.select(row_text)
        obs = torch.from_numpy(initial_obs)
        prev = obs if prev_obs is None else torch.from_numpy(np.asarray(prev_obs, np.float32))
        ctx = None
        if getattr(model.codec, "context_dim", 0):
            ctx = (model.codec.context_start(obs) if start_ctx is None
                   else torch.from_numpy(np.asarray(start_ctx, np.float32)))
        h = dec.feed(model.codec.embed_states(obs).to(torch.float32))
        rows = np.arange(n)  # original index of each active cache row
        done = np.zeros(n, dtype=bool)
        for t in range(max(horizons)):
            a = model.codec.predict_action(h, obs)
            h_state = h
            h = dec.feed(model.codec.embed_actions(a).unsqueeze(1).to(h.dtype))
            nxt = _next_state(model, h, obs, a, prev, ctx)
            if guide and model.codec.action_kind == "continuous":
                a, h, nxt = _guide_continuous(model, env, dec, obs, a, h, nxt, rows, goals,
                                              start_obs, done[rows], guide, stats,
                                              step_offset + t, prev, guide_horizon, ctx,
                                              guide_obstacles)
            elif guide:
                a, h, nxt = _guide(model, env, dec, h_state, obs, a, h, nxt, rows, goals,
                                   start_obs, done[rows], guide, stats)
            elif replan:
                a, h, nxt = _replan(model, env, dec, h_state, obs, a, h, nxt, done[rows], replan,
                                    stats)
            a_np, nxt_np = a.numpy(), nxt.numpy()
            keep = []
            for j, i in enumerate(rows):
                if done[i]:
                    continue  # finished, waiting for the next compaction
                traj_act[i].append(_action_item(a_np[j]))
                traj_obs[i].append(nxt_np[j].copy())
                g = goals[i]
                if left[i] >= 0:  # settling after the goal held
                    left[i] -= 1
                    done[i] = left[i] <= 0 or t + 1 >= horizons[i]
                    if not done[i]:
                        keep.append(j)
                elif g is not None and env.success(g, nxt_np[j], start_obs[i]):
                    met[i] = True
                    left[i] = settle
                    done[i] = settle == 0 or t + 1 >= horizons[i]
                    if not done[i]:
                        keep.append(j)
                elif t + 1 >= horizons[i]:
                    done[i] = True
                else:
                    keep.append(j)
            if on_step is not None:
                on_step(t, *_padded(traj_obs, traj_act, t, model), done.copy())
            if not keep:
                break
            prev, obs = obs, nxt
            ctx = model.codec.context_step(ctx, a) if ctx is not None else None
            if _compact_due(len(rows), len(rows) - len(keep)) and dec.can_select:
                idx = torch.as_tensor(keep, dtype=torch.long)
                dec.select(idx)
                rows, obs, prev = rows[keep], obs[idx], prev[idx]
                ctx = ctx[idx] if ctx is not None else None
            h = dec.feed(model.codec.embed_states(obs).to(h.dtype))
    return traj_obs, traj_act, met, left


def _padded(traj_obs: list, traj_act: list, t: int, model: GroundedLM | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """(n, t + 2, d) states and (n, t + 1) actions (or (n, t + 1, k)); a finished rollout
    repeats its last entries."""
    O = np.stack([np.stack(o + [o[-1]] * (t + 2 - len(o))) for o in traj_obs])
    discrete = model is None or model.codec.action_kind == "discrete"
    dtype = np.int64 if discrete else np.float32
    A = np.stack([np.asarray(a + [a[-1]] * (t + 1 - len(a)), dtype=dtype) for a in traj_act])
    return O, A


@torch.no_grad()
def next_actions(model: GroundedLM, texts: Sequence[str], observations: Sequence[np.ndarray],
                 actions: Sequence[np.ndarray], bf16: bool = False,
                 precision: str | None = None) -> np.ndarray:
    """Teacher-forced next action after each real prefix (s0 a0 ... s_t): (N,) argmax actions
    (continuous: (N, k) regressed actions).

    ``observations[i]`` holds s_0..s_t and ``actions[i]`` a_0..a_{t-1}.
    """
    from kalm.llm.sequences import rollout_sequence

    model.eval()
    # Target flags only add prediction sites; the action is read from the last position.
    seqs = [rollout_sequence(t, np.asarray(o)[: len(a) + 1], np.asarray(a), model.prompt_style)
            for t, o, a in zip(texts, observations, actions)]
    with _autocast(bf16):
        batch = collate(seqs, model.tokenizer, model.positions_per_state, left_pad=True)
        h = decoder(model, precision).start(model.embed(batch), batch.attention_mask)
        last = np.stack([np.asarray(o, np.float32)[len(a)] for o, a in zip(observations, actions)])
        return model.codec.predict_action(h, torch.from_numpy(last)).numpy()


class ActionSession:
    """Closed-loop next actions for one goal text, keeping the KV cache between steps.

    ``act(obs)`` feeds the new real state and returns the LM's argmax action for it, then feeds
    that action: the same read-out as ``next_actions`` on the whole history, at the cost of the
    two new positions. ``context`` caps the history kept (as ``LLMPolicy`` does): past it, the
    prompt is rebuilt over the last ``context`` steps.
    """

    def __init__(self, model: GroundedLM, text: str, context: int = 16,
                 precision: str | None = None) -> None:
        self.model, self.text, self.context, self.precision = model, text, int(context), precision
        self.obs: list[np.ndarray] = []
        self.actions: list = []
        self._dec = None

    @torch.no_grad()
    def act(self, obs: np.ndarray):
        m = self.model
        self.obs.append(np.asarray(obs, dtype=np.float32))
        o = torch.from_numpy(self.obs[-1][None])
        if self._dec is not None and len(self.actions) <= self.context:
            h = self._dec.feed(m.codec.embed_states(o))
        else:  # first step, or the window slid: prefill the kept history
            k = min(len(self.actions), self.context)
            hist_obs = self.obs[len(self.obs) - k - 1:]
            hist_act = _actions_array(self.actions[len(self.actions) - k:], m)
            from kalm.llm.sequences import rollout_sequence

            seq = rollout_sequence(self.text, np.stack(hist_obs), hist_act, m.prompt_style)
            batch = collate([seq], m.tokenizer, m.positions_per_state, left_pad=True)
            self._dec = decoder(m, self.precision)
            h = self._dec.start(m.embed(batch), batch.attention_mask,
                                capacity=batch.input_ids.shape[1] + 2 * (self.context + 1))
        a_t = m.codec.predict_action(h, o)
        self._dec.feed(m.codec.embed_actions(a_t).unsqueeze(1))
        a = _action_item(a_t[0].numpy())
        self.actions.append(a)
        return a


@torch.no_grad()
def predict_next_states(model: GroundedLM, obs: np.ndarray, actions: np.ndarray,
                        bf16: bool = False, precision: str | None = None) -> np.ndarray:
    """The LM's dynamics: (N, d) states and (N,) (or (N, k)) actions -> (N, d) next states."""
    model.eval()
    obs = np.asarray(obs, dtype=np.float32)
    seqs = [dynamics_sequence(o, a, o, model.prompt_style)[:-1] for o, a in zip(obs, actions)]
    with _autocast(bf16):
        batch = collate(seqs, model.tokenizer, model.positions_per_state, left_pad=True)
        # Read from the last position (the text before the next state), as in training.
        h = decoder(model, precision).start(model.embed(batch), batch.attention_mask)
        a = np.asarray(actions)
        a = torch.as_tensor(a, dtype=torch.long if model.codec.action_kind == "discrete" else torch.float32)
        return model.codec.next_state(h, torch.from_numpy(obs), a).numpy()


def explanation_constraint_available(model: GroundedLM) -> bool:
    """Whether the model's environment names the goals a rollout made true
    (``Environment.explanation_candidates``), so that ``explain_rollouts(..., constrained=True)``
    can keep the LM's explanation to them."""
    return _env_of(model).provides("explanation_candidates")


_TOKEN_CACHE: dict[int, object] = {}


def _candidate_trie(tok, texts: Sequence[str]) -> dict | None:
    """A token trie of the explanation targets ``texts`` (tokenized as in training: " " + text,
    then end of text). None when there are none. A node maps a token id to its child; the end
    of text token leads to an empty node."""
    if not texts:
        return None
    from kalm.llm.sequences import _Tokens

    tokens = _TOKEN_CACHE.get(id(tok))
    if tokens is None:
        tokens = _TOKEN_CACHE[id(tok)] = _Tokens(tok)
    eos = int(tok.eos_token_id)
    root: dict = {}
    for text in texts:
        node = root
        for t in list(tokens(" " + text.strip())) + [eos]:
            node = node.setdefault(int(t), {})
    return root


@torch.no_grad()
def explain_rollouts(model: GroundedLM, observations: Sequence[np.ndarray],
                     actions: Sequence[np.ndarray], max_new_tokens: int = 40,
                     bf16: bool = False, precision: str | None = None,
                     constrained: bool = False) -> list[str]:
    """The LM's goal text for each rollout (greedy decoding until end of text or a new line).

    ``constrained``: decoding keeps to the texts of the goals the rollout made true, by the
    environment's own rules on the rollout's states (``Environment.explanation_candidates``: for
    CLEVR-Robot every relation false at ``s_0`` and true at ``s_T``, in the training phrasings
    only). Each token is still the LM's likeliest, but among those that continue one of these
    texts, so the explanation is the LM's own choice among the true accounts of the rollout.
    The simulator is never called: imagined rollouts are judged on the states the LM wrote.
    A rollout that made no goal true, or an environment that names no candidates, is explained
    freely, as without ``constrained``.
    """
    model.eval()
    tok = model.tokenizer
    n = len(observations)
    if n == 0:
        return []
    seqs = [explain_prompt(np.asarray(o), np.asarray(a), model.prompt_style, model.codec.explain_balls)
            for o, a in zip(observations, actions)]
    tries: list[dict | None] = [None] * n
    if constrained:
        env = _env_of(model)
        tries = [_candidate_trie(tok, env.explanation_candidates(np.asarray(o)) or ())
                 for o in observations]
        longest = [_depth(t) for t in tries if t is not None]
        if longest:
            max_new_tokens = max(max_new_tokens, max(longest))
    emb = model.lm.get_input_embeddings()
    stop_nl = _newline_ids(tok)
    with _autocast(bf16):
        batch = collate(seqs, tok, model.positions_per_state, left_pad=True)
        dec = decoder(model, precision)
        h = dec.start(model.embed(batch), batch.attention_mask,
                      capacity=batch.input_ids.shape[1] + max_new_tokens + 1)
        out: list[list[int]] = [[] for _ in range(n)]
        rows = np.arange(n)
        done = np.zeros(n, dtype=bool)
        for _ in range(max_new_tokens):
            logits = dec.logits(h)
            ids = logits.argmax(-1)
            for j, i in enumerate(rows):
                node = tries[i]
                if node is not None and not done[i]:
                    allowed = list(node)
                    pick = int(torch.argmax(logits[j, allowed]))
                    ids[j] = allowed[pick]
                    tries[i] = node[allowed[pick]]
            keep = []
            for j, i in enumerate(rows):
                if done[i]:
                    continue
                tid = int(ids[j])
                if tid == tok.eos_token_id:
                    done[i] = True
                    continue
                out[i].append(tid)
                # Only the first line is kept: a new line ends the explanation too.
                if tid in stop_nl and "\n" in tok.decode(out[i], skip_special_tokens=True).strip():
                    done[i] = True
                    continue
                keep.append(j)
            if not keep:
                break
            if _compact_due(len(rows), len(rows) - len(keep)) and dec.can_select:
                dec.select(keep)
                rows, ids = rows[keep], ids[keep]
            h = dec.feed(emb(ids).unsqueeze(1))
    texts = [tok.decode(o, skip_special_tokens=True).strip() for o in out]
    return [t.split("\n")[0].strip() for t in texts]


def _depth(trie: dict) -> int:
    """Tokens on the longest path of a candidate trie."""
    return 1 + max((_depth(c) for c in trie.values()), default=-1)


_NEWLINES: dict[int, frozenset] = {}


def _newline_ids(tok) -> frozenset:
    """Token ids whose text contains a line break (generation of a line can stop there)."""
    key = id(tok)
    if key not in _NEWLINES:
        ids = set()
        for t in range(len(tok)):
            piece = tok.convert_ids_to_tokens(t)
            if piece is not None and ("\n" in piece or "Ċ" in piece):
                ids.add(t)
        _NEWLINES[key] = frozenset(ids)
    return _NEWLINES[key]


def warm_up(model: GroundedLM) -> None:
    """Make ``model`` ready for fast generation (the app calls it once, in the background)."""
    d = model.codec.obs_dim
    generate_rollouts(model, ["warm up"], np.zeros((1, d), np.float32), max_steps=1)
    explain_rollouts(model, [np.zeros((2, d), np.float32)], [_actions_array([_zero_action(model)], model)],
                     max_new_tokens=1)


def _zero_action(model: GroundedLM):
    if model.codec.action_kind == "discrete":
        return 0
    return np.zeros(model.codec.action_dim, np.float32)
