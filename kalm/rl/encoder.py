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

``arch`` "roles" (environments whose state is a row of like entities with per-entity actions,
``entities = (n, e, k)``: n entities of e coordinates each, action ``a = i * k + j`` acts on
entity i; CLEVR-Robot: 5 balls, (x, y), 8 pushes) replaces the fused MLP by a goal-steered,
entity-equivariant network, so what is learnt for one pair of balls serves every pair:

    g      = MLP(sqrt(k) z)                          goal features (goal_units)
    w_r    = softmax_i(W_r g)   r = 1..R             R soft "roles" over the entities (which ball
                                                     the goal names as source, destination, ...)
    P_r    = sum_i w_ri e_i                          the roles' positions
    f_i    = [e_i, e_i - P_r, |e_i - P_r|, w_ri, sum_j phi(e_j - e_i), U g]   per entity i
                                                     (+ m_i with mention_slots M: entity i's
                                                     column of the goal's last M x n numbers,
                                                     which of the text's mentions name it;
                                                     kalm.rl.embed.MentionEmbedder)
    q_ij   = MLP_e(f_i)_j                            a score for every action j on entity i
    out    = [q (n k) | MLP([g, P, P_r - P_r'])]     the entity scores, then global features

d3rlpy's output layer (policy logits or Q-values over the n k actions) starts as the identity on
the scores and zero on the global features (``init_action_heads``), so a policy starts out scoring
each ball's pushes by the shared per-entity network.

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
           "STATE_FEATURES", "ARCHS", "state_feature_dim", "pairwise_features", "RoleTrunk",
           "init_action_heads"]

FUSIONS = ("concat", "film")
STATE_FEATURES = ("raw", "pairwise")
ARCHS = ("mlp", "roles")


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


class RoleTrunk(nn.Module):
    """The ``roles`` architecture (module docstring): goal-steered soft roles over entities and
    one shared scoring network per entity. Output: ``[n * k entity-action scores | global]``."""

    def __init__(self, state_dim: int, goal_dim: int, entities: Sequence[int], roles: int,
                 goal_units: int, entity_units: int, hidden_units: Sequence[int],
                 extra_dim: int = 0, mention_slots: int = 0) -> None:
        super().__init__()
        if len(entities) != 3 or min(entities) < 1:
            raise ValueError(f"entities must be (count, coordinates, actions per entity); got {entities}")
        n, e, k = (int(v) for v in entities)
        if n * e > state_dim:
            raise ValueError(f"{n} entities of {e} coordinates do not fit a {state_dim}-d state")
        if roles < 1:
            raise ValueError(f"roles must be at least 1; got {roles}")
        self.state_dim, self.goal_dim = state_dim, goal_dim
        self.n, self.e, self.k, self.roles = n, e, k, int(roles)
        self.goal_scale = math.sqrt(goal_dim)
        self.mention_slots = int(mention_slots)
        if self.mention_slots < 0 or self.mention_slots * n >= goal_dim:
            raise ValueError(f"mention_slots {mention_slots} x {n} entities do not fit a "
                             f"{goal_dim}-d goal")
        self.goal_net = nn.Sequential(nn.Linear(goal_dim, goal_units), nn.ReLU(),
                                      nn.Linear(goal_units, goal_units), nn.ReLU())
        self.role_logits = nn.Linear(goal_units, self.roles * n)
        self.neighbour = nn.Sequential(nn.Linear(e + 1, entity_units), nn.ReLU(),
                                       nn.Linear(entity_units, entity_units))
        self.goal_to_entity = nn.Linear(goal_units, entity_units)
        f_in = (e + self.roles * (e + 2) + entity_units + entity_units + extra_dim
                + self.mention_slots)
        self.entity_net = nn.Sequential(nn.Linear(f_in, 2 * entity_units), nn.ReLU(),
                                        nn.Linear(2 * entity_units, 2 * entity_units), nn.ReLU(),
                                        nn.Linear(2 * entity_units, k))
        pairs = self.roles * (self.roles - 1) // 2
        g_in = goal_units + self.roles * e + pairs * (e + 1) + (state_dim - n * e) + extra_dim
        self.global_net = _mlp(g_in, hidden_units)
        self.score_size = n * k

    def forward(self, x: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        b = x.shape[0]
        n, e, R = self.n, self.e, self.roles
        s, z = x[:, : self.state_dim], x[:, self.state_dim :]
        ent = s[:, : n * e].view(b, n, e)
        g = self.goal_net(z * self.goal_scale)
        w = torch.softmax(self.role_logits(g).view(b, R, n), dim=-1)  # (B, R, n)
        P = torch.einsum("brn,bne->bre", w, ent)  # (B, R, e)
        rel = ent.unsqueeze(2) - P.unsqueeze(1)  # (B, n, R, e)
        rdist = torch.sqrt((rel * rel).sum(-1) + 1e-8)  # (B, n, R)
        off = ent.unsqueeze(1) - ent.unsqueeze(2)  # (B, i, j, e): e_j - e_i
        odist = torch.sqrt((off * off).sum(-1, keepdim=True) + 1e-8)
        phi = self.neighbour(torch.cat([off, odist], -1))  # (B, n, n, U)
        eye = torch.eye(n, dtype=x.dtype, device=x.device).view(1, n, n, 1)
        ctx = (phi * (1.0 - eye)).sum(2)  # (B, n, U): the other entities around entity i
        parts = [ent, rel.reshape(b, n, R * e), rdist, w.transpose(1, 2), ctx,
                 self.goal_to_entity(g).unsqueeze(1).expand(b, n, -1)]
        if self.mention_slots:  # the goal's last M x n numbers: which entity each mention names
            m = self.mention_slots
            parts.append(z[:, -m * n:].reshape(b, m, n).transpose(1, 2) * math.sqrt(m))
        if extra is not None:
            parts.append(extra.unsqueeze(1).expand(b, n, -1))
        scores = self.entity_net(torch.cat(parts, -1)).reshape(b, n * self.k)
        iu, ju = torch.triu_indices(R, R, offset=1, device=x.device)
        pr = P[:, ju] - P[:, iu]  # (B, pairs, e)
        prd = torch.sqrt((pr * pr).sum(-1, keepdim=True) + 1e-8)
        gparts = [g, P.reshape(b, -1), torch.cat([pr, prd], -1).reshape(b, -1), s[:, n * e:]]
        if extra is not None:
            gparts.append(extra)
        return torch.cat([scores, self.global_net(torch.cat(gparts, 1))], 1)


def _trunk(state_dim: int, goal_dim: int, state_units: int, goal_units: int,
           hidden_units: Sequence[int], fusion: str, state_features: str, arch: str,
           entities: Sequence[int], roles: int, entity_units: int, extra_dim: int = 0,
           mention_slots: int = 0) -> nn.Module:
    if arch == "roles":
        return RoleTrunk(state_dim, goal_dim, entities, roles, goal_units, entity_units,
                         hidden_units, extra_dim=extra_dim, mention_slots=mention_slots)
    if arch != "mlp":
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    return _GoalTrunk(state_dim, goal_dim, state_units, goal_units, hidden_units, fusion,
                      extra_dim=extra_dim, state_features=state_features)


def init_action_heads(algo) -> int:
    """Start every output layer over a ``roles`` encoder (d3rlpy's ``_fc`` of a policy or Q-function)
    as the identity on the entity scores and zero on the rest; returns how many were set."""
    from kalm.rl.algos import algo_modules

    count = 0
    for mod in algo_modules(algo).values():
        for sub in mod.modules():
            fc, enc = getattr(sub, "_fc", None), getattr(sub, "_encoder", None)
            trunk = getattr(enc, "net", None)
            if not (isinstance(fc, nn.Linear) and isinstance(trunk, RoleTrunk)):
                continue
            if fc.out_features != trunk.score_size:
                continue
            with torch.no_grad():
                fc.weight.zero_()
                fc.weight[:, : trunk.score_size] = torch.eye(trunk.score_size)
                fc.bias.zero_()
            count += 1
    return count


class GoalEncoder(Encoder):
    def __init__(self, observation_shape: Sequence[int], state_dim: int, state_units: int,
                 goal_units: int, hidden_units: Sequence[int], fusion: str,
                 state_features: str = "raw", arch: str = "mlp", entities: Sequence[int] = (),
                 roles: int = 4, entity_units: int = 64, mention_slots: int = 0) -> None:
        super().__init__()
        goal_dim = int(observation_shape[0]) - state_dim
        if goal_dim < 1:
            raise ValueError(f"observation size {observation_shape[0]} leaves no room for a goal "
                             f"embedding after the {state_dim}-d state")
        self.net = _trunk(state_dim, goal_dim, state_units, goal_units, hidden_units, fusion,
                          state_features, arch, entities, roles, entity_units,
                          mention_slots=mention_slots)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.net(x)


class GoalEncoderWithAction(EncoderWithAction):
    def __init__(self, observation_shape: Sequence[int], action_size: int, state_dim: int,
                 state_units: int, goal_units: int, hidden_units: Sequence[int], fusion: str,
                 discrete_action: bool, state_features: str = "raw", arch: str = "mlp",
                 entities: Sequence[int] = (), roles: int = 4, entity_units: int = 64,
                 mention_slots: int = 0) -> None:
        super().__init__()
        goal_dim = int(observation_shape[0]) - state_dim
        self.action_size, self.discrete_action = action_size, discrete_action
        self.net = _trunk(state_dim, goal_dim, state_units, goal_units, hidden_units, fusion,
                          state_features, arch, entities, roles, entity_units,
                          extra_dim=action_size, mention_slots=mention_slots)

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
    arch: str = "mlp"
    entities: list[int] = field(default_factory=list)
    roles: int = 4
    entity_units: int = 64
    mention_slots: int = 0

    def _arch(self) -> dict:
        return {"arch": self.arch, "entities": list(self.entities), "roles": self.roles,
                "entity_units": self.entity_units, "mention_slots": self.mention_slots}

    def create(self, observation_shape) -> GoalEncoder:
        return GoalEncoder(observation_shape, self.state_dim, self.state_units, self.goal_units,
                           self.hidden_units, self.fusion, self.state_features, **self._arch())

    def create_with_action(self, observation_shape, action_size: int,
                           discrete_action: bool = False) -> GoalEncoderWithAction:
        return GoalEncoderWithAction(observation_shape, action_size, self.state_dim,
                                     self.state_units, self.goal_units, self.hidden_units,
                                     self.fusion, discrete_action, self.state_features,
                                     **self._arch())

    @staticmethod
    def get_type() -> str:
        return "kalm_goal"


try:
    register_encoder_factory(GoalEncoderFactory)
except AssertionError:  # already registered (module reloaded)
    pass
