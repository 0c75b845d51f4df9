"""Numbers in and out of the LM: the codec contract, and a codec for flat continuous vectors.

KALM replaces the input embedding of a placeholder position with a learned projection of a
vector, and reads numeric predictions from the hidden state one position earlier. A *codec* holds
those projections and heads for one environment; ``model.py`` composes it with any HF causal LM.
Each environment makes its own (``Environment.make_codec``):

- CLEVR-Robot: ``kalm.envs.clevr.codec.NumericCodec``, with structured heads for five balls and
  40 pushes (a geometric action head, a per-ball physics head, an explanation summary).
- Continuous-action environments (Meta-World): :class:`VectorCodec` below, as the paper did it:
  a learned projection of the state (and of the action) in, regression heads out.

## The contract (what grounding, generation and imagination call)
Attributes: ``obs_dim``; ``action_kind`` ("discrete" / "continuous"); ``action_dim`` (continuous:
channels); ``positions_per_state``; ``summary_positions`` (0 when the codec has no explanation
summary); ``explain_balls`` (whether explanation prompts carry the summary); ``codec_hidden``;
buffers ``obs_mean``, ``obs_std``, ``delta_std``, ``episode_delta_std``.
Methods: ``set_stats``, ``embed_states(obs) -> (N, P, H)``, ``embed_actions(actions, masked)
-> (N, H)``, ``predict_delta(h, obs, action)`` (normalised change), ``next_state(h, obs, action)``,
``predict_action(h, obs)`` (greedy: argmax / regression), ``action_loss(h, obs, target)``,
``embed_summary(final, initial)``, ``design()`` (the options saved in ``grounded.json``).

A "no action" entry of ``action`` (a consequence target, which spans a whole episode) is -1 for a
discrete codec and a row of NaN for a continuous one.

The historical names of this module (``NumericCodec``, ``GeometricActionHead``, ...) are CLEVR's
and are served from ``kalm.envs.clevr.codec`` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CodecStats", "VectorCodec", "mlp", "presence_mask"]

VELOCITY_CLIP = 5.0
"""``VectorCodec`` with ``history``: the normalised last change it reads is clipped to this many
standard deviations of one step's change."""


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """Linear-GELU-Linear-GELU-Linear."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_hidden),
                         nn.GELU(), nn.Linear(d_hidden, d_out))


def presence_mask(obs: torch.Tensor, slots: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(..., d) -> (..., d) float: 0 on the dimensions of entity slots that are all zeros
    (absent entities), 1 elsewhere."""
    m = torch.ones_like(obs, dtype=torch.float32)
    for a, b in slots:
        present = (obs[..., a:b].abs().sum(-1, keepdim=True) > 0).float()
        m[..., a:b] = present.expand(*obs.shape[:-1], b - a)
    return m


class CodecStats:
    """The data statistics every codec keeps as buffers (``obs_mean``, ``obs_std``, ``delta_std``,
    ``episode_delta_std``) and ``set_stats``, for ``nn.Module`` codecs."""

    def _register_stats(self, dim: int) -> None:
        self.register_buffer("obs_mean", torch.zeros(dim))
        self.register_buffer("obs_std", torch.ones(dim))
        self.register_buffer("delta_std", torch.ones(dim))
        # Whole-episode changes (consequence objective) are larger than one step's.
        self.register_buffer("episode_delta_std", torch.ones(dim))

    def set_stats(self, obs_mean, obs_std, delta_std, episode_delta_std=None) -> None:
        self.obs_mean.copy_(torch.as_tensor(obs_mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(obs_std, dtype=torch.float32).clamp_min(1e-3))
        self.delta_std.copy_(torch.as_tensor(delta_std, dtype=torch.float32).clamp_min(1e-3))
        ep = delta_std if episode_delta_std is None else episode_delta_std
        self.episode_delta_std.copy_(torch.as_tensor(ep, dtype=torch.float32).clamp_min(1e-3))


class VectorCodec(CodecStats, nn.Module):
    """A flat state vector and a continuous action, in and out of the LM.

    - **In**: a state is one position, an MLP over the normalised vector plus one presence flag
      per entity slot; an action is one position, an MLP over its channels plus a learned
      action-type vector (masked actions become a learned mask vector).
    - **Out**: the next state as a normalised change of every dimension (MSE), from the hidden
      state and, around the LM, the normalised current state and the action just taken (a skip
      connection: the LM carries the goal, the head the arithmetic); absent entity slots stay
      absent (their change is forced to zero). The action by regression (MSE), squashed into
      ``[low, high]`` by tanh, from the hidden state and the normalised current state.

    ``slots``: (start, stop) of each entity slot whose all-zeros means "not in this scene".
    """

    action_kind = "continuous"
    positions_per_state = 1
    summary_positions = 0
    explain_balls = False
    state_tokens = "state"

    def __init__(self, hidden_size: int, obs_dim: int, action_dim: int, codec_hidden: int = 256,
                 embed_scale: float = 1.0, slots: Sequence[tuple[int, int]] = (),
                 low: float = -1.0, high: float = 1.0, history: bool = False,
                 context_dim: int = 0) -> None:
        super().__init__()
        self.hidden_size, self.obs_dim, self.action_dim = hidden_size, obs_dim, action_dim
        self.codec_hidden = codec_hidden
        # history: the state head also reads the last change (current minus previous state,
        # normalised, with a flag saying whether it is known): a mocap-driven arm's next state
        # depends on its velocity, which one state does not show (``predict_delta``'s ``prev``).
        self.history = bool(history)
        # context_dim: the state head also reads that many features of a dynamics context the
        # rollout carries from its first state and its actions (``context_start`` /
        # ``context_step`` / ``context_features``: a subclass's, e.g. Meta-World's mocap target).
        self.context_dim = int(context_dim)
        self.slots = tuple((int(a), int(b)) for a, b in slots)
        self.low, self.high = float(low), float(high)
        n_flags = len(self.slots)
        self.state_in = mlp(obs_dim + n_flags, codec_hidden, hidden_size)
        self.action_in = mlp(action_dim, codec_hidden, hidden_size)
        with torch.no_grad():  # start numeric inputs at the scale of token embeddings
            self.state_in[-1].weight.mul_(embed_scale / 0.05)
            self.action_in[-1].weight.mul_(embed_scale / 0.05)
        self.action_type = nn.Parameter(torch.zeros(hidden_size))
        self.action_mask = nn.Parameter(torch.randn(hidden_size) * embed_scale)
        self.norm_state = nn.LayerNorm(hidden_size)
        self.norm_action = nn.LayerNorm(hidden_size)
        # LMs' final hidden states carry a few huge coordinates: normalised first.
        self.state_head = mlp(hidden_size + obs_dim + n_flags + action_dim + 1
                              + (obs_dim + 1 if self.history else 0) + self.context_dim,
                              codec_hidden, obs_dim)
        self.action_head = mlp(hidden_size + obs_dim + n_flags, codec_hidden, action_dim)
        self._register_stats(obs_dim)

    def design(self) -> dict[str, Any]:
        d = {"codec": "vector", "codec_hidden": self.codec_hidden, "state_tokens": "state"}
        if self.history:
            d["dynamics_history"] = True
        if self.context_dim:
            d["dynamics_context"] = True
        return d

    # ----------------------------------------------------------------- dynamics context
    # A rollout's dynamics context: state the environment keeps that its observations do not show
    # but its first state and its actions determine (a mocap target the actions move, which the
    # hand follows). None for codecs without one.
    def context_start(self, obs: torch.Tensor) -> torch.Tensor | None:
        """(N, c) contexts of rollouts starting at the states ``obs`` (N, d); None: none."""
        return None

    def context_step(self, ctx: torch.Tensor | None, action: torch.Tensor) -> torch.Tensor | None:
        """The contexts after ``action`` (N, k)."""
        return None

    def context_replay(self, first_obs: np.ndarray, actions: np.ndarray) -> np.ndarray | None:
        """(T + 1, c) contexts before each of ``actions`` (T, k) of a rollout starting at
        ``first_obs`` (d,), and after the last; None: none."""
        if not self.context_dim:
            return None
        ctx = self.context_start(torch.as_tensor(np.asarray(first_obs, np.float32)).reshape(1, -1))
        out = [ctx]
        for a in np.asarray(actions, np.float32).reshape(-1, self.action_dim):
            ctx = self.context_step(ctx, torch.from_numpy(a).reshape(1, -1))
            out.append(ctx)
        return torch.cat(out).numpy()

    def context_features(self, obs: torch.Tensor, action: torch.Tensor,
                         ctx: torch.Tensor | None) -> torch.Tensor:
        """(N, context_dim) features the state head reads (zeros where ``ctx`` is None/NaN)."""
        raise NotImplementedError(f"{type(self).__name__} has no dynamics context")

    # ----------------------------------------------------------------- features
    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float()
        z = (obs - self.obs_mean) / self.obs_std
        if not self.slots:
            return z
        flags = torch.stack([(obs[..., a:b].abs().sum(-1) > 0).float() for a, b in self.slots], -1)
        return torch.cat([z, flags], dim=-1)

    def _mask(self, obs: torch.Tensor) -> torch.Tensor:
        return presence_mask(obs.float(), self.slots)

    # ----------------------------------------------------------------- inputs
    def embed_states(self, obs: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, 1, hidden)."""
        return self.state_in(self._features(obs)).unsqueeze(1)

    def embed_actions(self, actions: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        """(N, k) actions -> (N, hidden); masked actions become the learned mask vector."""
        e = self.action_in(actions.float()) + self.action_type
        if masked is not None:
            e = torch.where(masked.unsqueeze(-1), self.action_mask.expand_as(e), e)
        return e

    def embed_summary(self, final: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        raise ValueError("this codec has no explanation summary")

    # ----------------------------------------------------------------- heads
    def predict_delta(self, h: torch.Tensor, obs: torch.Tensor | None = None,
                      action: torch.Tensor | None = None,
                      prev: torch.Tensor | None = None,
                      ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (+ the states the change starts from, + the actions in between, NaN rows
        where none) -> normalised change of every dimension. ``prev``: the states before ``obs``
        (NaN rows or None: not known), read only by a head with ``history``; ``ctx``: the
        rollouts' dynamics contexts before ``action`` (``context_start``; None or NaN rows: not
        known), read only by a head with ``context_dim``."""
        n = h.shape[0]
        if obs is None:
            raise ValueError("the vector codec's state head needs the current states")
        if action is None or action.dim() == 1:  # none known (a batch without actions collates -1s)
            action = torch.full((n, self.action_dim), float("nan"), device=h.device)
        action = action.float().reshape(n, self.action_dim)
        known = ~torch.isnan(action).any(-1, keepdim=True)
        a = torch.where(known, action, torch.zeros_like(action))
        parts = [self.norm_state(h.float()), self._features(obs), a, known.float()]
        if self.history:
            parts += list(self._velocity(obs.float(), prev))
        if self.context_dim:
            parts.append(self.context_features(obs.float(), a, ctx))
        return self.state_head(torch.cat(parts, dim=-1)) * self._mask(obs)

    def _velocity(self, obs: torch.Tensor, prev: torch.Tensor | None):
        """(normalised obs - prev, zeros where unknown; (N, 1) flag of the known rows)."""
        if prev is None:
            return torch.zeros_like(obs), torch.zeros(len(obs), 1, device=obs.device)
        prev = prev.float().reshape(obs.shape)
        known = ~torch.isnan(prev).any(-1, keepdim=True)
        v = torch.where(known, (obs - torch.nan_to_num(prev)) / self.delta_std, torch.zeros_like(obs))
        # bounded: the head's own states are fed back, and a change far outside the data's
        # (VELOCITY_CLIP standard deviations) must not drive the next one further out
        return v.clamp(-VELOCITY_CLIP, VELOCITY_CLIP), known.float()

    def next_state(self, h: torch.Tensor, obs: torch.Tensor,
                   action: torch.Tensor | None = None, prev: torch.Tensor | None = None,
                   ctx: torch.Tensor | None = None) -> torch.Tensor:
        return obs.float() + self.predict_delta(h, obs, action, prev, ctx) * self.delta_std

    def _action_raw(self, h: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.norm_action(h.float()), self._features(obs)], dim=-1)
        return self.action_head(x)

    def predict_action(self, h: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """(N, k) actions in ``[low, high]``."""
        mid, half = (self.high + self.low) / 2, (self.high - self.low) / 2
        return mid + half * torch.tanh(self._action_raw(h, obs))

    def action_loss(self, h: torch.Tensor, obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE between predicted and target actions (in action units)."""
        return F.mse_loss(self.predict_action(h, obs), target.float().clamp(self.low, self.high))


# The CLEVR codec's names, for code and tests written before environments were plug-ins.
_CLEVR_NAMES = {"NumericCodec", "GeometricActionHead", "PhysicsHead", "state_features", "ball_features",
                "summary_features", "PAIRS", "DIRECTION_WORDS", "COLOR_WORDS", "ACTION_HEADS",
                "DYNAMICS_HEADS", "N_BALLS", "N_DIRS", "N_ACTIONS", "OBS_DIM", "SUMMARY_DIM",
                "SUMMARY_KINDS"}


def __getattr__(name: str) -> Any:
    if name in _CLEVR_NAMES:
        from kalm.envs import get_env

        return getattr(importlib.import_module(get_env("clevr").codec_module), name)
    raise AttributeError(f"module 'kalm.llm.codec' has no attribute {name!r}")
