"""A d3rlpy encoder over (state, goal embedding) pairs packed into one flat observation.

Observation layout (what ``kalm.data.episodes.to_d3rlpy(dataset, goal_features=Z)`` builds and
what ``TrainedPolicy`` feeds at evaluation time)::

    x = [ s (state_dim: the environment's state, 10 ball centres on CLEVR, 91 on Meta-World)
        | z (goal_dim = k: unit-norm sentence embedding) ]

The encoder splits ``x`` and treats the halves separately before fusing them:

    h_s = ReLU(W_s f(s))                 state branch (state_units); f = state_features:
                                         "raw": the state vector; "pairwise" (CLEVR): the coordinates
                                         plus, for each of the 10 ball pairs i < j, the offset
                                         (dx, dy) = s_j - s_i and its length (40 features)
    h_g = ReLU(W_g (sqrt(k) * z))        goal projection (goal_units); sqrt(k) rescales a unit
                                         vector to per-component variance ~1, like the state
    fusion "concat": h = MLP([h_s, h_g])                      hidden_units, ReLU
    fusion "film":   h = MLP(h_s * (1 + gamma(h_g)) + beta(h_g))

``hidden_units`` defaults to the paper's 256-256. With an action (the critics of continuous
algorithms) the action (one-hot for discrete ones) joins the fused MLP's input. The factory is a
d3rlpy ``EncoderFactory`` registered as ``"kalm_goal"`` so d3rlpy configs can serialise it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from d3rlpy.models.encoders import EncoderFactory, register_encoder_factory
from d3rlpy.models.torch import Encoder, EncoderWithAction
from torch import nn

__all__ = ["GoalEncoderFactory", "GoalEncoder", "GoalEncoderWithAction", "FUSIONS",
           "STATE_FEATURES", "state_feature_dim", "pairwise_features"]

FUSIONS = ("concat", "film")
STATE_FEATURES = ("raw", "pairwise")


def state_feature_dim(state_dim: int, features: str) -> int:
    """Width of the state branch's input for ``features`` (``state_dim`` = 2 x balls)."""
    if features == "raw":
        return state_dim
    if features == "pairwise":
        if state_dim % 2:
            raise ValueError(f"pairwise state features need (x, y) pairs; state_dim is {state_dim}")
        n = state_dim // 2
        return state_dim + 3 * (n * (n - 1) // 2)
    raise ValueError(f"state_features must be one of {', '.join(STATE_FEATURES)}; got {features!r}")


def pairwise_features(s: torch.Tensor) -> torch.Tensor:
    """``[s | dx, dy, dist of every ball pair i < j]`` for states ``s`` of shape (B, 2n)."""
    b, d = s.shape
    pts = s.view(b, d // 2, 2)
    i, j = torch.triu_indices(d // 2, d // 2, offset=1, device=s.device)
    off = pts[:, j] - pts[:, i]  # (B, pairs, 2)
    dist = torch.sqrt((off * off).sum(-1) + 1e-8)
    return torch.cat([s, off.reshape(b, -1), dist], dim=1)


def _mlp(n_in: int, units: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for u in units:
        layers += [nn.Linear(n_in, u), nn.ReLU()]
        n_in = u
    return nn.Sequential(*layers)


class _GoalTrunk(nn.Module):
    def __init__(self, state_dim: int, goal_dim: int, state_units: int, goal_units: int,
                 hidden_units: Sequence[int], fusion: str, extra_dim: int = 0,
                 state_features: str = "raw") -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}; got {fusion!r}")
        if not hidden_units:
            raise ValueError("hidden_units must name at least one layer")
        self.state_dim, self.goal_dim, self.fusion = state_dim, goal_dim, fusion
        self.state_features = state_features
        self.goal_scale = math.sqrt(goal_dim)
        self.state_net = nn.Sequential(
            nn.Linear(state_feature_dim(state_dim, state_features), state_units), nn.ReLU())
        self.goal_net = nn.Sequential(nn.Linear(goal_dim, goal_units), nn.ReLU())
        if fusion == "film":
            self.film = nn.Linear(goal_units, 2 * state_units)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
            n_in = state_units
        else:
            n_in = state_units + goal_units
        self.trunk = _mlp(n_in + extra_dim, hidden_units)

    def forward(self, x: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        s, z = x[:, : self.state_dim], x[:, self.state_dim :]
        if self.state_features == "pairwise":
            s = pairwise_features(s)
        hs = self.state_net(s)
        hg = self.goal_net(z * self.goal_scale)
        if self.fusion == "film":
            gamma, beta = self.film(hg).chunk(2, dim=1)
            h = hs * (1.0 + gamma) + beta
        else:
            h = torch.cat([hs, hg], dim=1)
        if extra is not None:
            h = torch.cat([h, extra], dim=1)
        return self.trunk(h)


class GoalEncoder(Encoder):
    def __init__(self, observation_shape: Sequence[int], state_dim: int, state_units: int,
                 goal_units: int, hidden_units: Sequence[int], fusion: str,
                 state_features: str = "raw") -> None:
        super().__init__()
        goal_dim = int(observation_shape[0]) - state_dim
        if goal_dim < 1:
            raise ValueError(f"observation size {observation_shape[0]} leaves no room for a goal "
                             f"embedding after the {state_dim}-d state")
        self.net = _GoalTrunk(state_dim, goal_dim, state_units, goal_units, hidden_units, fusion,
                              state_features=state_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.net(x)


class GoalEncoderWithAction(EncoderWithAction):
    def __init__(self, observation_shape: Sequence[int], action_size: int, state_dim: int,
                 state_units: int, goal_units: int, hidden_units: Sequence[int], fusion: str,
                 discrete_action: bool, state_features: str = "raw") -> None:
        super().__init__()
        goal_dim = int(observation_shape[0]) - state_dim
        self.action_size, self.discrete_action = action_size, discrete_action
        self.net = _GoalTrunk(state_dim, goal_dim, state_units, goal_units, hidden_units, fusion,
                              extra_dim=action_size, state_features=state_features)

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.discrete_action:
            action = F.one_hot(action.view(-1).long(), num_classes=self.action_size).float()
        return self.net(x, action)


@dataclass()
class GoalEncoderFactory(EncoderFactory):
    """Encoder over ``[state | goal embedding]`` (see the module docstring)."""

    state_dim: int = 10
    state_units: int = 128
    goal_units: int = 128
    hidden_units: list[int] = field(default_factory=lambda: [256, 256])
    fusion: str = "concat"
    state_features: str = "raw"

    def create(self, observation_shape) -> GoalEncoder:
        return GoalEncoder(observation_shape, self.state_dim, self.state_units, self.goal_units,
                           self.hidden_units, self.fusion, self.state_features)

    def create_with_action(self, observation_shape, action_size: int,
                           discrete_action: bool = False) -> GoalEncoderWithAction:
        return GoalEncoderWithAction(observation_shape, action_size, self.state_dim,
                                     self.state_units, self.goal_units, self.hidden_units,
                                     self.fusion, discrete_action, self.state_features)

    @staticmethod
    def get_type() -> str:
        return "kalm_goal"


try:
    register_encoder_factory(GoalEncoderFactory)
except AssertionError:  # already registered (module reloaded)
    pass
