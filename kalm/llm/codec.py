"""Numbers in and out of the LM: input projections for states and actions, output heads.

KALM replaces the input embedding of a placeholder position with a learned projection of a
vector, and reads numeric predictions from the hidden state one position earlier. This module
holds those projections and heads; ``model.py`` composes them with any HF causal LM.

Design choices (see ``../shared/spec/grounding_notes.md`` for why):

- **States** enter either as one position (``state_tokens="state"``: an MLP over the normalised
  ball centres plus every pairwise offset and distance, so relational geometry is explicit) or as
  one position per ball (``"ball"``: the LM's own embedding of the colour word plus an MLP of that
  ball's position and its offsets to the others, so "red" in the text binds to the red ball).
- **Actions** enter as the sum of a ball vector and a direction vector, started from the LM's
  embeddings of the colour word and of the direction words: a push of red to the left starts out
  meaning "red" + "left" to the LM.
- **Heads**: the next state as a normalised change of every ball centre (MSE); the action as 40
  logits (cross-entropy); the LM head for text.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

__all__ = ["NumericCodec", "state_features", "ball_features", "PAIRS", "DIRECTION_WORDS"]

N_BALLS = 5
N_DIRS = 8
N_ACTIONS = N_BALLS * N_DIRS
OBS_DIM = 2 * N_BALLS
PAIRS = list(itertools.combinations(range(N_BALLS), 2))
# Words whose LM embeddings start the direction vectors of the 8 pushes (d = 0..7).
DIRECTION_WORDS = (
    ("right",), ("behind",), ("left",), ("front",),
    ("right", "behind"), ("left", "behind"), ("right", "front"), ("left", "front"),
)
COLOR_WORDS = ("red", "blue", "green", "purple", "cyan")
# Offsets and distances between balls are O(0.1-1); this brings them near unit scale.
_REL_SCALE = 2.0


def state_features(obs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(..., 10) ball centres -> (..., 40): normalised centres, pairwise offsets and distances."""
    p = obs.reshape(*obs.shape[:-1], N_BALLS, 2)
    i = torch.tensor([a for a, _ in PAIRS], device=obs.device)
    j = torch.tensor([b for _, b in PAIRS], device=obs.device)
    off = (p[..., j, :] - p[..., i, :]) * _REL_SCALE
    dist = off.norm(dim=-1)
    return torch.cat([(obs - mean) / std, off.flatten(-2), dist], dim=-1)


def ball_features(obs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(..., 10) -> (..., 5, 14): each ball's normalised centre, offsets to the 4 others, distances."""
    p = obs.reshape(*obs.shape[:-1], N_BALLS, 2)
    pn = ((obs - mean) / std).reshape(*obs.shape[:-1], N_BALLS, 2)
    feats = []
    for b in range(N_BALLS):
        others = [o for o in range(N_BALLS) if o != b]
        off = (p[..., others, :] - p[..., b : b + 1, :]) * _REL_SCALE
        feats.append(torch.cat([pn[..., b, :], off.flatten(-2), off.norm(dim=-1)], dim=-1))
    return torch.stack(feats, dim=-2)


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_hidden),
                         nn.GELU(), nn.Linear(d_hidden, d_out))


class NumericCodec(nn.Module):
    """Projections of states/actions into the LM's embedding space, and the numeric heads.

    ``word_embeddings``: a dict word -> (hidden,) tensor from the LM's input embeddings, used to
    start the colour and direction vectors (random init when a word is missing).
    """

    def __init__(
        self,
        hidden_size: int,
        state_tokens: str = "state",
        codec_hidden: int = 256,
        word_embeddings: dict[str, torch.Tensor] | None = None,
        embed_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.state_tokens = state_tokens
        self.positions_per_state = N_BALLS if state_tokens == "ball" else 1
        we = word_embeddings or {}

        def word_vec(words: tuple[str, ...]) -> torch.Tensor:
            vs = [we[w] for w in words if w in we]
            if not vs:
                return torch.randn(hidden_size) * embed_scale
            return torch.stack(vs).mean(0).float()

        self.color_vec = nn.Parameter(torch.stack([word_vec((c,)) for c in COLOR_WORDS]))
        self.dir_vec = nn.Parameter(torch.stack([word_vec(ws) for ws in DIRECTION_WORDS]))
        self.action_type = nn.Parameter(torch.zeros(hidden_size))
        self.action_mask = nn.Parameter(torch.randn(hidden_size) * embed_scale)
        if state_tokens == "ball":
            self.state_in = _mlp(2 + 4 * 2 + 4, codec_hidden, hidden_size)
        else:
            self.state_in = _mlp(OBS_DIM + 3 * len(PAIRS), codec_hidden, hidden_size)
        # Start numeric inputs at the scale of token embeddings.
        with torch.no_grad():
            self.state_in[-1].weight.mul_(embed_scale / 0.05)
        # LMs' final hidden states carry a few huge coordinates (SmolLM2: norm ~50, one dim ~47);
        # normalising them first keeps the heads' inputs well scaled.
        self.state_head = nn.Sequential(nn.LayerNorm(hidden_size), _mlp(hidden_size, codec_hidden, OBS_DIM))
        self.action_head = nn.Sequential(nn.LayerNorm(hidden_size),
                                         _mlp(hidden_size, codec_hidden, N_ACTIONS))
        self.register_buffer("obs_mean", torch.zeros(OBS_DIM))
        self.register_buffer("obs_std", torch.ones(OBS_DIM))
        self.register_buffer("delta_std", torch.ones(OBS_DIM))
        # Whole-episode changes (consequence objective) are ~4x larger than one push's.
        self.register_buffer("episode_delta_std", torch.ones(OBS_DIM))

    def set_stats(self, obs_mean, obs_std, delta_std, episode_delta_std=None) -> None:
        self.obs_mean.copy_(torch.as_tensor(obs_mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(obs_std, dtype=torch.float32).clamp_min(1e-3))
        self.delta_std.copy_(torch.as_tensor(delta_std, dtype=torch.float32).clamp_min(1e-3))
        ep = delta_std if episode_delta_std is None else episode_delta_std
        self.episode_delta_std.copy_(torch.as_tensor(ep, dtype=torch.float32).clamp_min(1e-3))

    # ----------------------------------------------------------------- inputs
    def embed_states(self, obs: torch.Tensor) -> torch.Tensor:
        """(N, 10) -> (N, P, hidden) with P positions per state (1 or 5)."""
        obs = obs.float()
        if self.state_tokens == "ball":
            f = ball_features(obs, self.obs_mean, self.obs_std)  # (N, 5, 14)
            return self.state_in(f) + self.color_vec.unsqueeze(0)
        return self.state_in(state_features(obs, self.obs_mean, self.obs_std)).unsqueeze(1)

    def embed_actions(self, actions: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) action ids -> (N, hidden); masked actions become the learned mask vector."""
        ball, d = actions // N_DIRS, actions % N_DIRS
        e = self.color_vec[ball] + self.dir_vec[d] + self.action_type
        if masked is not None:
            e = torch.where(masked.unsqueeze(-1), self.action_mask.expand_as(e), e)
        return e

    # ----------------------------------------------------------------- heads
    def predict_delta(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states -> normalised change of every ball centre."""
        return self.state_head(h.float())

    def next_state(self, h: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Hidden states and current states -> predicted next states (world units)."""
        return obs.float() + self.predict_delta(h) * self.delta_std

    def action_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.action_head(h.float())
