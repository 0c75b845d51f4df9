"""The four training objectives as interleaved sequences of text, states and actions.

A sequence is a list of segments; ``Batch`` packs a list of sequences into padded token ids plus
the positions where vectors replace token embeddings and where predictions are read (always from
the hidden state one position before the predicted item, as in KALM).

Prompts (KALM's wording):

- rollout:     "Translate the textual instruction to a state/action trajectory. Instruction:
               {goal}. Trajectory:" s0 a0 s1 a1 ... s_T   (predict a_t and s_{t+1})
- dynamics:    "Current state is" s ", after executing action" a ", we get next state" s'
- consequence: "Initial state is" s0 ", after completing the instruction {goal}, we get terminal
               state" s_T
- explain:     "Translate the state/action trajectory to a textual instruction. Trajectory:"
               s0 a0 ... s_T [b_red ... b_cyan] " Instruction:" {goal}<eos>   (token cross-entropy
               on the goal; the optional summary positions b_* are one per ball of s_T)

``style="short"`` keeps the structure but cuts the boilerplate ("Goal: {goal}. Rollout:" ...):
on a CPU the LM's cost is per token, and the published prompts spend ~20 tokens on words that
never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import numpy as np
import torch

__all__ = [
    "PROMPTS",
    "Text",
    "State",
    "Action",
    "Summary",
    "Segment",
    "Batch",
    "action_value",
    "rollout_prompt",
    "rollout_sequence",
    "dynamics_sequence",
    "consequence_sequence",
    "explain_prompt",
    "explain_sequence",
    "collate",
]


@dataclass
class Text:
    text: str
    target: bool = False


@dataclass
class State:
    obs: np.ndarray
    target: bool = False
    base: np.ndarray | None = None
    """The state the predicted change is measured from (the previous state)."""
    prev: np.ndarray | None = None
    """The state before ``base`` (for dynamics heads that read the velocity, ``VectorCodec``'s
    ``history``); None: not known."""
    ctx: np.ndarray | None = None
    """The rollout's dynamics context before the action into this state (for codecs with one:
    ``VectorCodec.context_start``); None: not known."""
    episode: bool = False
    """The change spans a whole episode (consequence), not one push: scaled by its own statistics."""


@dataclass
class Action:
    action: Any
    """A discrete action id (int), or a continuous action (float vector)."""
    target: bool = False
    maskable: bool = False
    """May be replaced by the mask vector at training time (goal->rollout only)."""


@dataclass
class Summary:
    """One position per ball of the final state, with its displacement since the initial state."""

    final: np.ndarray
    initial: np.ndarray
    positions: int = 5


Segment = Union[Text, State, Action, Summary]


PROMPTS: dict[str, dict[str, str]] = {
    "kalm": {
        "rollout": "Translate the textual instruction to a state/action trajectory. "
                   "Instruction: {goal}. Trajectory:",
        "dyn_state": "Current state is",
        "dyn_action": ", after executing action",
        "dyn_next": ", we get next state",
        "cons_state": "Initial state is",
        "cons_goal": ", after completing the instruction {goal}, we get terminal state",
        "explain": "Translate the state/action trajectory to a textual instruction. Trajectory:",
        "explain_end": " Instruction:",
    },
    "short": {
        "rollout": "Goal: {goal}. Rollout:",
        "dyn_state": "State",
        "dyn_action": " action",
        "dyn_next": " next",
        "cons_state": "Start",
        "cons_goal": " goal: {goal}. End",
        "explain": "Rollout:",
        "explain_end": " Goal:",
    },
}


def _p(style: str, key: str, goal: str = "") -> str:
    if style not in PROMPTS:
        raise ValueError(f"prompt style must be one of {', '.join(PROMPTS)}; got {style!r}")
    return PROMPTS[style][key].format(goal=goal.strip())


def rollout_prompt(goal_text: str, style: str = "kalm") -> list[Segment]:
    return [Text(_p(style, "rollout", goal_text))]


def action_value(a: Any) -> Any:
    """An action as a segment holds it: an int id, or a float32 vector (continuous)."""
    if np.ndim(a) == 0:
        return int(a)
    return np.asarray(a, dtype=np.float32).reshape(-1)


def rollout_sequence(goal_text: str, observations: np.ndarray, actions: np.ndarray,
                     style: str = "kalm", prev: np.ndarray | None = None,
                     contexts: np.ndarray | None = None) -> list[Segment]:
    """``prev``: the state before ``observations[0]`` where the rollout is a window of a longer
    episode (its first state's own at an episode's start); None: not known. ``contexts``: the
    dynamics context before each action (``VectorCodec.context_replay``); None: not known."""
    seq = rollout_prompt(goal_text, style)
    seq.append(State(observations[0]))
    for t, a in enumerate(actions):
        seq.append(Action(action_value(a), target=True, maskable=True))
        seq.append(State(observations[t + 1], target=True, base=observations[t],
                         prev=observations[t - 1] if t else prev,
                         ctx=None if contexts is None else contexts[t]))
    return seq


def dynamics_sequence(obs: np.ndarray, action: Any, next_obs: np.ndarray,
                      style: str = "kalm") -> list[Segment]:
    return [Text(_p(style, "dyn_state")), State(obs), Text(_p(style, "dyn_action")),
            Action(action_value(action)), Text(_p(style, "dyn_next")),
            State(next_obs, target=True, base=obs)]


def consequence_sequence(goal_text: str, obs0: np.ndarray, final_obs: np.ndarray,
                         style: str = "kalm") -> list[Segment]:
    return [Text(_p(style, "cons_state")), State(obs0), Text(_p(style, "cons_goal", goal_text)),
            State(final_obs, target=True, base=obs0, episode=True)]


def explain_prompt(observations: np.ndarray, actions: np.ndarray, style: str = "kalm",
                   summary: bool = False) -> list[Segment]:
    seq: list[Segment] = [Text(_p(style, "explain")), State(observations[0])]
    for t, a in enumerate(actions):
        seq.append(Action(action_value(a)))
        seq.append(State(observations[t + 1]))
    if summary:
        seq.append(Summary(np.asarray(observations[-1]), np.asarray(observations[0])))
    seq.append(Text(_p(style, "explain_end")))
    return seq


def explain_sequence(goal_text: str, observations: np.ndarray, actions: np.ndarray,
                     style: str = "kalm", summary: bool = False) -> list[Segment]:
    return explain_prompt(observations, actions, style, summary) + [Text(" " + goal_text.strip(), target=True)]


@dataclass
class Batch:
    """Padded token ids and every numeric input / prediction site, as flat index tensors."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    state_b: torch.Tensor  # (Ns,) batch index of each state input
    state_pos: torch.Tensor  # (Ns,) first position of each state input
    state_obs: torch.Tensor  # (Ns, 10)
    action_b: torch.Tensor
    action_pos: torch.Tensor
    action_ids: torch.Tensor  # (Na,) long ids, or (Na, k) float continuous actions
    action_maskable: torch.Tensor  # bool
    st_b: torch.Tensor  # state targets: read from hidden at st_pos
    st_pos: torch.Tensor
    st_target: torch.Tensor  # (Nt, 10)
    st_base: torch.Tensor  # (Nt, 10)
    st_episode: torch.Tensor  # (Nt,) bool: whole-episode change (consequence)
    st_action: torch.Tensor  # (Nt,) the push between base and target (-1: none, e.g. consequence);
    # continuous actions: (Nt, k), a row of NaN where none
    at_b: torch.Tensor  # action targets
    at_pos: torch.Tensor
    at_target: torch.Tensor
    at_obs: torch.Tensor  # (Na, 10) the state the action is chosen in
    tt_b: torch.Tensor  # text targets
    tt_pos: torch.Tensor
    tt_target: torch.Tensor
    sm_b: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    sm_pos: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    sm_final: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 10)))
    sm_initial: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 10)))
    lengths: list[int] = field(default_factory=list)
    st_prev: torch.Tensor | None = None  # (Nt, d) the state before each base (NaN: not known)
    st_ctx: torch.Tensor | None = None  # (Nt, c) dynamics contexts (NaN: not known; None: none)

    def to(self, device: Any) -> "Batch":
        for k, v in vars(self).items():
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device))
        return self


class _Tokens:
    """Tokenizes text segments once (prompts repeat a lot)."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self.cache: dict[str, list[int]] = {}

    def __call__(self, text: str) -> list[int]:
        ids = self.cache.get(text)
        if ids is None:
            ids = list(self.tok(text, add_special_tokens=False)["input_ids"])
            if len(self.cache) < 50_000:
                self.cache[text] = ids
        return ids


def _placeholder_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id
    return int(pid if pid is not None else tokenizer.eos_token_id)


def _dims(sequences: Sequence[list[Segment]]) -> tuple[int, int | None]:
    """(state width, action width or None for discrete ids) of a batch's segments."""
    obs_dim, act_dim = 10, None
    found_obs = found_act = False
    for seq in sequences:
        for seg in seq:
            if not found_obs and isinstance(seg, State):
                obs_dim, found_obs = int(np.asarray(seg.obs).shape[-1]), True
            elif not found_act and isinstance(seg, Action):
                found_act = True
                if np.ndim(seg.action) > 0:
                    act_dim = int(np.asarray(seg.action).shape[-1])
            if found_obs and found_act:
                return obs_dim, act_dim
    return obs_dim, act_dim


def collate(
    sequences: Sequence[list[Segment]],
    tokenizer,
    positions_per_state: int = 1,
    tokens: _Tokens | None = None,
    append_eos_to_targets: bool = True,
    left_pad: bool = False,
) -> Batch:
    """Pack sequences into a Batch (right-padded for training; ``left_pad`` for generation)."""
    tokens = tokens or _Tokens(tokenizer)
    ph = _placeholder_id(tokenizer)
    eos = tokenizer.eos_token_id
    rows: list[list[int]] = []
    S: dict[str, list] = {k: [] for k in ("sb", "sp", "so", "ab", "ap", "ai", "am",
                                          "tb", "tp", "tg", "tbase", "tprev", "tctx", "te", "ta", "ub", "up", "ua",
                                          "uo", "xb", "xp", "xt", "mb", "mp", "mf", "mi")}
    obs_dim, act_dim = _dims(sequences)
    zero = np.zeros(obs_dim, np.float32)
    none = -1 if act_dim is None else np.full(act_dim, np.nan, np.float32)
    for b, seq in enumerate(sequences):
        ids: list[int] = []
        last_obs, last_action = zero, none  # the latest state input, and the action since it
        for seg in seq:
            if isinstance(seg, Text):
                tid = tokens(seg.text)
                if seg.target:
                    if append_eos_to_targets and eos is not None:
                        tid = tid + [int(eos)]
                    for k, t in enumerate(tid):
                        S["xb"].append(b); S["xp"].append(len(ids) + k - 1); S["xt"].append(t)
                ids.extend(tid)
            elif isinstance(seg, State):
                if seg.target:
                    S["tb"].append(b); S["tp"].append(len(ids) - 1)
                    S["tg"].append(np.asarray(seg.obs, np.float32))
                    S["tbase"].append(np.asarray(seg.base, np.float32))
                    S["tprev"].append(np.asarray(seg.prev, np.float32) if seg.prev is not None
                                      else np.full(obs_dim, np.nan, np.float32))
                    S["tctx"].append(None if seg.ctx is None else np.asarray(seg.ctx, np.float32))
                    S["te"].append(bool(seg.episode))
                    S["ta"].append(last_action)
                last_obs, last_action = np.asarray(seg.obs, np.float32), none
                S["sb"].append(b); S["sp"].append(len(ids)); S["so"].append(last_obs)
                ids.extend([ph] * positions_per_state)
            elif isinstance(seg, Summary):
                S["mb"].append(b); S["mp"].append(len(ids))
                S["mf"].append(np.asarray(seg.final, np.float32))
                S["mi"].append(np.asarray(seg.initial, np.float32))
                ids.extend([ph] * seg.positions)
            else:
                if seg.target:
                    S["ub"].append(b); S["up"].append(len(ids) - 1); S["ua"].append(seg.action)
                    S["uo"].append(last_obs)
                last_action = seg.action
                S["ab"].append(b); S["ap"].append(len(ids)); S["ai"].append(seg.action)
                S["am"].append(seg.maskable)
                ids.append(ph)
        rows.append(ids)
    L = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), L), ph, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    shifts = []
    for b, r in enumerate(rows):
        off = L - len(r) if left_pad else 0
        shifts.append(off)
        input_ids[b, off : off + len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, off : off + len(r)] = 1
    sh = torch.tensor(shifts, dtype=torch.long)

    def idx(bk: str, pk: str) -> tuple[torch.Tensor, torch.Tensor]:
        bb = torch.tensor(S[bk], dtype=torch.long)
        pp = torch.tensor(S[pk], dtype=torch.long)
        return bb, (pp + sh[bb] if len(bb) else pp)

    def vecs(k: str, width: int = obs_dim) -> torch.Tensor:
        return torch.from_numpy(np.stack(S[k]).astype(np.float32)) if S[k] else torch.zeros((0, width))

    def acts(k: str) -> torch.Tensor:
        if act_dim is None:
            return torch.tensor(S[k], dtype=torch.long)
        return vecs(k, act_dim)

    known_ctx = [c for c in S["tctx"] if c is not None]
    st_ctx = None
    if known_ctx:
        blank = np.full(known_ctx[0].shape, np.nan, np.float32)
        st_ctx = torch.from_numpy(np.stack([blank if c is None else c for c in S["tctx"]]))
    sb, sp = idx("sb", "sp")
    ab, ap = idx("ab", "ap")
    tb, tp = idx("tb", "tp")
    ub, up = idx("ub", "up")
    xb, xp = idx("xb", "xp")
    mb, mp = idx("mb", "mp")
    return Batch(
        input_ids=input_ids, attention_mask=mask,
        state_b=sb, state_pos=sp, state_obs=vecs("so"),
        action_b=ab, action_pos=ap, action_ids=acts("ai"),
        action_maskable=torch.tensor(S["am"], dtype=torch.bool),
        st_b=tb, st_pos=tp, st_target=vecs("tg"), st_base=vecs("tbase"), st_prev=vecs("tprev"),
        st_ctx=st_ctx,
        st_episode=torch.tensor(S["te"], dtype=torch.bool),
        st_action=acts("ta"),
        at_b=ub, at_pos=up, at_target=acts("ua"), at_obs=vecs("uo"),
        tt_b=xb, tt_pos=xp, tt_target=torch.tensor(S["xt"], dtype=torch.long),
        sm_b=mb, sm_pos=mp, sm_final=vecs("mf"), sm_initial=vecs("mi"),
        lengths=[len(r) for r in rows],
    )
