"""CLEVR-Robot's codec: numbers in and out of the LM for five balls and 40 pushes.

KALM replaces the input embedding of a placeholder position with a learned projection of a
vector, and reads numeric predictions from the hidden state one position earlier. This module
holds CLEVR's projections and heads (the codec contract is in ``kalm.llm.codec``);
``kalm.llm.model`` composes them with any HF causal LM; ``make_codec`` builds one for a config.

Design choices (see ``../shared/spec/grounding_notes.md`` for why):

- **States** enter either as one position (``state_tokens="state"``: an MLP over the normalised
  ball centres plus every pairwise offset and distance, so relational geometry is explicit) or as
  one position per ball (``"ball"``: the LM's own embedding of the colour word plus an MLP of that
  ball's position and its offsets to the others, so "red" in the text binds to the red ball).
- **Actions** enter as the sum of a ball vector and a direction vector, started from the LM's
  embeddings of the colour word and of the direction words: a push of red to the left starts out
  meaning "red" + "left" to the LM.
- **Heads**: the next state as a normalised change of every ball centre (MSE); the action as 40
  logits (cross-entropy); the LM head for text. Both numeric heads may also read the numbers the
  LM was just given (a skip connection around the LM), so that the LM carries the meaning of the
  goal and the head the arithmetic of the scene:

  - ``action_head="geometric"`` / ``"pointer"``: the LM's hidden state chooses the ball to push and a target
    point written in the scene's own coordinates (a weighted sum of ball centres plus an offset,
    e.g. "beside blue, on its left"); each push direction is scored by how close it lands the
    ball to that point. A plain MLP over the hidden state is added as a residual. ``pointer``
    writes the point's ball weights as a softmax over the balls and "no ball" (a crisp anchor).
  - ``dynamics_head="physics"``: where the action is known (rollout and dynamics sites), each
    ball's change is predicted by one small network shared across balls from the hidden state,
    whether it is the pushed ball, the push direction and its offset from the pushed ball (a
    pushed-ball gate; the plain head had to infer which ball moved). The consequence objective,
    which has no action, keeps the plain head.
- **Explanation summary** (``explain_balls``): explanation prompts end with one position per ball
  of the final state, built from the LM's colour-word embedding plus that ball's displacement over
  the rollout and its offsets to the others, so the explanation can name the destination ball by
  copying a colour, as it names the source.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from kalm.envs.clevr.model import WORKBENCH
from kalm.llm.codec import CodecStats

__all__ = ["make_codec", "NumericCodec", "GeometricActionHead", "PhysicsHead", "ContactHead",
           "state_features", "ball_features",
           "summary_features", "PAIRS", "DIRECTION_WORDS", "ACTION_HEADS", "DYNAMICS_HEADS"]

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
# One clean push moves a ball about 0.145 along its direction (bench/calibrate_push.py).
_PUSH = 0.145
_PUSH_DIRECTIONS = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0),
                    (0.8, 0.8), (-0.8, 0.8), (0.8, -0.8), (-0.8, -0.8))
ACTION_HEADS = ("mlp", "geometric", "pointer")
DYNAMICS_HEADS = ("mlp", "physics", "contact")


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


def summary_features(final: torch.Tensor, initial: torch.Tensor, mean: torch.Tensor,
                     std: torch.Tensor, mover: bool = False) -> torch.Tensor:
    """(N, 10) final and initial states -> (N, 5, 34) (or 38 with ``mover``): per ball, who it is
    (one-hot), its normalised final centre, its displacement over the rollout, and for each other
    ball the offset to it, their distance and that ball's displacement. ``mover`` adds where the
    ball ends up relative to the ball that moved furthest (offset, distance, and whether it is
    that ball): the relation a rollout about one ball is most likely to be about."""
    p = final.reshape(-1, N_BALLS, 2)
    disp = (p - initial.reshape(-1, N_BALLS, 2)) * _REL_SCALE
    pn = ((final - mean) / std).reshape(-1, N_BALLS, 2)
    eye = torch.eye(N_BALLS, device=final.device).expand(p.shape[0], -1, -1)
    feats = []
    for b in range(N_BALLS):
        others = [o for o in range(N_BALLS) if o != b]
        off = (p[:, others] - p[:, b : b + 1]) * _REL_SCALE
        dj = disp[:, others]
        per = torch.cat([off, off.norm(dim=-1, keepdim=True), dj, dj.norm(dim=-1, keepdim=True)], -1)
        feats.append(torch.cat([eye[:, b], pn[:, b], disp[:, b], disp[:, b].norm(dim=-1, keepdim=True),
                                per.flatten(1)], dim=-1))
    out = torch.stack(feats, dim=1)
    if mover:
        m = disp.norm(dim=-1).argmax(dim=1)  # (N,)
        pm = p[torch.arange(p.shape[0], device=p.device), m]
        off = (p - pm.unsqueeze(1)) * _REL_SCALE
        is_m = F.one_hot(m, N_BALLS).float().unsqueeze(-1)
        out = torch.cat([out, off, off.norm(dim=-1, keepdim=True), is_m], dim=-1)
    return out


SUMMARY_DIM = N_BALLS + 2 + 3 + 4 * 6
SUMMARY_KINDS = ("plain", "mover")


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_hidden),
                         nn.GELU(), nn.Linear(d_hidden, d_out))


class GeometricActionHead(nn.Module):
    """Action logits from a ball choice and a target point in scene coordinates.

    ``logit(b, d) = log p(b | h) + log_softmax_d(-kappa(h) * |v_b - D_d|^2 / 0.01)`` with
    ``v_b = sum_k alpha_k(h) p_k + c(h) - p_b``: the vector from ball b to the target point, and
    ``D_d`` the (learned, push-calibrated) displacement of push direction d. The LM decides what
    the goal asks (which ball; a point such as "0.3 left of blue": alpha = one-hot(blue),
    c = (-0.3, 0)); the head does the geometry for the current state. A small network shared by
    all 40 pushes adds a score from where the push lands relative to the target point and to the
    anchor ``sum_k alpha_k p_k`` (the destination ball, which a ball must go around, not through).
    """

    def __init__(self, hidden_size: int, width: int, pointer: bool = False) -> None:
        super().__init__()
        self.pointer = pointer
        self.norm = nn.LayerNorm(hidden_size)
        self.ball = _mlp(hidden_size, width, N_BALLS)
        # alpha (5; with ``pointer`` 6 logits: a softmax over the balls and "no ball"), c (2), kappa
        self.n_alpha = N_BALLS + 1 if pointer else N_BALLS
        self.point = _mlp(hidden_size, width, self.n_alpha + 3)
        d = torch.tensor(_PUSH_DIRECTIONS)
        self.push = nn.Parameter(d / d.norm(dim=-1, keepdim=True) * _PUSH)
        self.score = _mlp(12, 64, 1)
        with torch.no_grad():
            self.score[-1].weight.zero_()
            self.score[-1].bias.zero_()

    def forward(self, h: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        z = self.norm(h.float())
        p = obs.float().reshape(-1, N_BALLS, 2)
        out = self.point(z)
        alpha, c = self._alpha(out), out[:, self.n_alpha : self.n_alpha + 2] * 0.3
        kappa = F.softplus(out[:, -1] + 1.0)
        anchor = (alpha.unsqueeze(-1) * p).sum(1)  # (N, 2)
        target = anchor + c
        v = target.unsqueeze(1) - p  # (N, 5, 2): from each ball to the target point
        d2 = ((v.unsqueeze(2) - self.push.view(1, 1, N_DIRS, 2)) ** 2).sum(-1)  # (N, 5, 8)
        # Where each push lands, relative to the target and to the anchor (scaled to ~unit).
        land = p.unsqueeze(2) + self.push.view(1, 1, N_DIRS, 2)  # (N, 5, 8, 2)
        to_t = (land - target.view(-1, 1, 1, 2)) * _REL_SCALE
        to_a = (land - anchor.view(-1, 1, 1, 2)) * _REL_SCALE
        from_a = ((p - anchor.unsqueeze(1)) * _REL_SCALE).unsqueeze(2).expand_as(to_a)
        now_t = (v.norm(dim=-1, keepdim=True) * _REL_SCALE).unsqueeze(2).expand(-1, -1, N_DIRS, -1)
        u = (self.push / _PUSH).view(1, 1, N_DIRS, 2).expand_as(to_a)
        f = torch.cat([to_t, to_t.norm(dim=-1, keepdim=True), to_a, to_a.norm(dim=-1, keepdim=True),
                       from_a, from_a.norm(dim=-1, keepdim=True), now_t, u], dim=-1)
        dir_logp = torch.log_softmax(-kappa.view(-1, 1, 1) * d2 / 0.01 + self.score(f).squeeze(-1), dim=-1)
        ball_logp = torch.log_softmax(self.ball(z), dim=-1)
        return (ball_logp.unsqueeze(-1) + dir_logp).flatten(1)

    def _alpha(self, out: torch.Tensor) -> torch.Tensor:
        if self.pointer:
            return out[:, : self.n_alpha].softmax(-1)[:, :N_BALLS]
        return out[:, :N_BALLS]

    def target_point(self, h: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """(N, 2): the point the head aims at (for inspection and tests)."""
        z = self.norm(h.float())
        out = self.point(z)
        p = obs.float().reshape(-1, N_BALLS, 2)
        return (self._alpha(out).unsqueeze(-1) * p).sum(1) + out[:, self.n_alpha : self.n_alpha + 2] * 0.3


class PhysicsHead(nn.Module):
    """Per-ball normalised change from (hidden state, state, action), one network for all balls."""

    CTX = 32

    def __init__(self, hidden_size: int, width: int) -> None:
        super().__init__()
        self.ctx = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, self.CTX))
        self.net = _mlp(self.CTX + 10, width, 2)
        d = torch.tensor(_PUSH_DIRECTIONS)
        self.register_buffer("dirs", d / d.norm(dim=-1, keepdim=True), persistent=False)

    def ball_features(self, h: torch.Tensor, obs: torch.Tensor, action: torch.Tensor,
                      mean: torch.Tensor, std: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each ball's input (``f``: (N, 5, CTX + 10)) and the pieces it is made of: ball
        centres ``p``, push direction ``u`` (N, 2), ``pushed`` flags, ``along`` / ``perp`` (each
        ball's offset from the pushed ball along and across the push)."""
        n = obs.shape[0]
        p = obs.float().reshape(n, N_BALLS, 2)
        a = action.clamp_min(0)
        b, u = a // N_DIRS, self.dirs[a % N_DIRS]  # (N,), (N, 2)
        pb = p[torch.arange(n, device=obs.device), b]
        rel = (p - pb.unsqueeze(1)) * _REL_SCALE  # (N, 5, 2)
        uu = u.unsqueeze(1).expand(-1, N_BALLS, -1)
        along = (rel * uu).sum(-1, keepdim=True)
        perp = (rel[..., :1] * uu[..., 1:] - rel[..., 1:] * uu[..., :1])
        pushed = F.one_hot(b, N_BALLS).float().unsqueeze(-1)
        pn = ((obs.float() - mean) / std).reshape(n, N_BALLS, 2)
        ctx = self.ctx(h.float()).unsqueeze(1).expand(-1, N_BALLS, -1)
        f = torch.cat([ctx, pushed, uu, rel, rel.norm(dim=-1, keepdim=True), along, perp, pn], -1)
        return {"f": f, "p": p, "u": u, "pushed": pushed, "along": along, "perp": perp}

    def forward(self, h: torch.Tensor, obs: torch.Tensor, action: torch.Tensor, mean: torch.Tensor,
                std: torch.Tensor) -> torch.Tensor:
        return self.net(self.ball_features(h, obs, action, mean, std)["f"]).flatten(1)


class ContactHead(PhysicsHead):
    """The physics head with contacts: each ball's features also sum, over every other ball, a
    small network of where that ball lies relative to it along and across the push (and which of
    the two is pushed), and hold its room to each of the four walls. The pushed ball then sees the ball in its way (and stops at it or shoves
    it, as the simulator does); with the per-ball features alone it could not, and moved a full
    push through it (10% of the aim expert's pushes are blocked: error 0.077 there, 0.017 else)."""

    PAIR = 32

    def __init__(self, hidden_size: int, width: int) -> None:
        super().__init__(hidden_size, width)
        self.pair = _mlp(8, 64, self.PAIR)
        self.net = _mlp(self.CTX + 10 + self.PAIR + 4, width, 2)
        x0, x1, y0, y1 = WORKBENCH
        self.register_buffer("walls", torch.tensor([x0, x1, y0, y1], dtype=torch.float32),
                             persistent=False)
        off = ~torch.eye(N_BALLS, dtype=torch.bool)
        self.register_buffer("others", off.float(), persistent=False)

    def forward(self, h: torch.Tensor, obs: torch.Tensor, action: torch.Tensor, mean: torch.Tensor,
                std: torch.Tensor) -> torch.Tensor:
        x = self.ball_features(h, obs, action, mean, std)
        p, u, pushed, along, perp = x["p"], x["u"], x["pushed"], x["along"], x["perp"]
        n = p.shape[0]
        # pairs (i, j): j's offset from i, along and across the push, its length, who is pushed
        d = (p.unsqueeze(1) - p.unsqueeze(2)) * _REL_SCALE  # (N, i, j, 2) = p_j - p_i
        u4 = u.view(n, 1, 1, 2)
        d_along = (d * u4).sum(-1, keepdim=True)
        d_perp = d[..., :1] * u4[..., 1:] - d[..., 1:] * u4[..., :1]
        E = (N_BALLS, N_BALLS)
        pf = torch.cat([d_along, d_perp, d.norm(dim=-1, keepdim=True),
                        pushed.unsqueeze(2).expand(-1, *E, -1),   # i pushed
                        pushed.unsqueeze(1).expand(-1, *E, -1),   # j pushed
                        along.unsqueeze(2).expand(-1, *E, -1), perp.unsqueeze(2).expand(-1, *E, -1),
                        (d.norm(dim=-1, keepdim=True) < 0.6 * _REL_SCALE).float()], -1)  # 8
        g = (self.pair(pf) * self.others.view(1, *E, 1)).sum(2)  # (N, 5, PAIR)
        w = self.walls
        wall = torch.stack([p[..., 0] - w[0], w[1] - p[..., 0], p[..., 1] - w[2], w[3] - p[..., 1]],
                           -1) * _REL_SCALE  # (N, 5, 4): room to each wall
        return self.net(torch.cat([x["f"], g, wall], -1)).flatten(1)


class NumericCodec(CodecStats, nn.Module):
    """Projections of states/actions into the LM's embedding space, and the numeric heads.

    ``word_embeddings``: a dict word -> (hidden,) tensor from the LM's input embeddings, used to
    start the colour and direction vectors (random init when a word is missing).
    """

    obs_dim = OBS_DIM
    action_kind = "discrete"
    action_dim = N_ACTIONS

    def __init__(
        self,
        hidden_size: int,
        state_tokens: str = "state",
        codec_hidden: int = 256,
        word_embeddings: dict[str, torch.Tensor] | None = None,
        embed_scale: float = 1.0,
        action_head: str = "mlp",
        dynamics_head: str = "mlp",
        explain_balls: bool = False,
        summary_features: str = "plain",
    ) -> None:
        super().__init__()
        if action_head not in ACTION_HEADS:
            raise ValueError(f"action_head must be one of {ACTION_HEADS}; got {action_head!r}")
        if dynamics_head not in DYNAMICS_HEADS:
            raise ValueError(f"dynamics_head must be one of {DYNAMICS_HEADS}; got {dynamics_head!r}")
        self.hidden_size = hidden_size
        self.codec_hidden = codec_hidden
        self.state_tokens = state_tokens
        self.action_head_kind = action_head
        self.dynamics_head_kind = dynamics_head
        self.explain_balls = bool(explain_balls)
        if summary_features not in SUMMARY_KINDS:
            raise ValueError(f"summary_features must be one of {SUMMARY_KINDS}; got {summary_features!r}")
        self.summary_kind = summary_features
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
        self.geometric = (GeometricActionHead(hidden_size, codec_hidden, pointer=action_head == "pointer")
                          if action_head in ("geometric", "pointer") else None)
        self.physics = ({"physics": PhysicsHead, "contact": ContactHead}[dynamics_head](
            hidden_size, codec_hidden) if dynamics_head in ("physics", "contact") else None)
        self.summary_in = None
        if self.explain_balls:
            self.summary_in = _mlp(SUMMARY_DIM + (4 if summary_features == "mover" else 0),
                                   codec_hidden, hidden_size)
            with torch.no_grad():
                self.summary_in[-1].weight.mul_(embed_scale / 0.05)
        # Whole-episode changes (consequence objective) are ~4x larger than one push's: their own std.
        self._register_stats(OBS_DIM)

    @property
    def summary_positions(self) -> int:
        return N_BALLS if self.explain_balls else 0

    def design(self) -> dict:
        """The options that shape this codec (saved in ``grounded.json``)."""
        return {"state_tokens": self.state_tokens, "codec_hidden": self.codec_hidden,
                "action_head": self.action_head_kind, "dynamics_head": self.dynamics_head_kind,
                "explain_balls": self.explain_balls, "summary_features": self.summary_kind}

    # ----------------------------------------------------------------- inputs
    def embed_states(self, obs: torch.Tensor) -> torch.Tensor:
        """(N, 10) -> (N, P, hidden) with P positions per state (1 or 5)."""
        obs = obs.float()
        if self.state_tokens == "ball":
            f = ball_features(obs, self.obs_mean, self.obs_std)  # (N, 5, 14)
            return self.state_in(f) + self.color_vec.unsqueeze(0)
        return self.state_in(state_features(obs, self.obs_mean, self.obs_std)).unsqueeze(1)

    def embed_summary(self, final: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        """(N, 10) final and initial states -> (N, 5, hidden): one position per ball."""
        if self.summary_in is None:
            raise ValueError("this codec has no explanation summary (explain_balls=False)")
        f = summary_features(final.float(), initial.float(), self.obs_mean, self.obs_std,
                             mover=self.summary_kind == "mover")
        return self.summary_in(f) + self.color_vec.unsqueeze(0)

    def embed_actions(self, actions: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) action ids -> (N, hidden); masked actions become the learned mask vector."""
        ball, d = actions // N_DIRS, actions % N_DIRS
        e = self.color_vec[ball] + self.dir_vec[d] + self.action_type
        if masked is not None:
            e = torch.where(masked.unsqueeze(-1), self.action_mask.expand_as(e), e)
        return e

    # ----------------------------------------------------------------- heads
    def predict_delta(self, h: torch.Tensor, obs: torch.Tensor | None = None,
                      action: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states -> normalised change of every ball centre.

        ``obs`` (the state the change starts from) and ``action`` (the push in between, -1 where
        none) feed the physics head where there is one and an action is known.
        """
        plain = self.state_head(h.float())
        if self.physics is None or obs is None or action is None:
            return plain
        action = torch.as_tensor(action, device=plain.device).reshape(-1)
        phys = self.physics(h, obs, action, self.obs_mean, self.obs_std)
        return torch.where((action >= 0).unsqueeze(-1), phys, plain)

    def next_state(self, h: torch.Tensor, obs: torch.Tensor,
                   action: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states, current states (and the pushes) -> predicted next states (world units)."""
        return obs.float() + self.predict_delta(h, obs, action) * self.delta_std

    def action_logits(self, h: torch.Tensor, obs: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (and the current states, for the geometric head) -> 40 logits."""
        logits = self.action_head(h.float())
        if self.geometric is not None:
            if obs is None:
                raise ValueError("the geometric action head needs the current states")
            logits = logits + self.geometric(h, obs)
        return logits

    def predict_action(self, h: torch.Tensor, obs: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy actions: the argmax of the 40 logits, (N,) long."""
        return self.action_logits(h, obs).argmax(-1)

    def action_loss(self, h: torch.Tensor, obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the 40 logits against the target pushes."""
        return F.cross_entropy(self.action_logits(h, obs), target.long())


# Words whose LM embeddings start the codec's colour and direction vectors.
CODEC_WORDS = frozenset(COLOR_WORDS) | {w for ws in DIRECTION_WORDS for w in ws}


def make_codec(lm, tokenizer, cfg) -> NumericCodec:
    """The codec a grounding config (``kalm.llm.config.GroundConfig``) asks for, its colour and
    direction vectors started from ``lm``'s embeddings of those words."""
    from kalm.llm.model import embedding_scale, word_embeddings

    hidden = lm.get_input_embeddings().weight.shape[1]
    return NumericCodec(hidden, cfg.state_tokens, cfg.codec_hidden,
                        word_embeddings(lm, tokenizer, set(CODEC_WORDS)),
                        embed_scale=embedding_scale(lm), action_head=cfg.action_head,
                        dynamics_head=cfg.dynamics_head, explain_balls=cfg.explain_balls,
                        summary_features=cfg.summary_features)
