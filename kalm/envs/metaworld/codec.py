"""Meta-World's codec: the 91-d state and the 4-d action in and out of the LM.

As the paper did: a learned projection of the state vector in (one position), a learned
projection of the action in, regression heads out (``kalm.llm.codec.VectorCodec``). The twelve
entity slots of the state (``state.py``) tell the codec which objects are in the scene: each
gets a presence flag at the input, and an absent entity's slot stays all zeros in every state
the LM writes.

With ``dynamics_context`` (``MocapCodec``) the state head also reads where the arm's **mocap
target** is. Meta-World moves the arm by moving a mocap body ``action[:3] * 0.01`` per step
(clipped to a box), and the hand follows it through a weld over the next steps: where the hand
goes next depends on how far the target leads it, which no single state shows but the rollout's
first state and its own actions determine exactly (the target starts a few millimetres from the
hand at a reset). The codec carries that target along a rollout (``context_start``,
``context_step``); it is arithmetic on the LM's own actions, never the simulator.
"""

from __future__ import annotations

import numpy as np
import torch

from kalm.envs.metaworld.state import ENTITIES, STATE_DIM, entity_slice
from kalm.llm.codec import VectorCodec

__all__ = ["make_codec", "ENTITY_SLOTS", "MocapCodec", "ACTION_SCALE", "MOCAP_LOW", "MOCAP_HIGH",
           "MOCAP_OFFSET", "LEAD_SCALE"]

ENTITY_SLOTS = tuple((entity_slice(e).start, entity_slice(e).stop) for e in ENTITIES)

# Meta-World's arm (SawyerXYZEnv): the mocap moves ``ACTION_SCALE`` per unit of action[:3] per
# step, clipped to [MOCAP_LOW, MOCAP_HIGH] (the z floor is -0.15 in the door and faucet scenes;
# the others' 0.05 is used for all). At a reset the mocap sits ``MOCAP_OFFSET`` from the hand's
# point (measured over the 22 tasks: -4.6..+10.6 mm in x, the door scenes being the outliers).
ACTION_SCALE = 0.01
MOCAP_LOW = (-0.5, 0.4, 0.05)
MOCAP_HIGH = (0.5, 1.0, 0.5)
MOCAP_OFFSET = (-0.0045, -0.0008, 0.0046)
LEAD_SCALE = 0.02
"""The lead (mocap target minus hand) is read in units of 2 cm, clipped to +-``LEAD_CLIP``."""
LEAD_CLIP = 10.0


class MocapCodec(VectorCodec):
    """``VectorCodec`` whose state head also reads the arm's mocap target (see the module): 7
    features, the target's lead on the hand before and after the action in ``LEAD_SCALE`` units,
    and whether it is known."""

    CONTEXT_DIM = 7

    def __init__(self, hidden_size: int, **kw) -> None:
        super().__init__(hidden_size, STATE_DIM, 4, context_dim=self.CONTEXT_DIM, **kw)

    def context_start(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float().reshape(-1, STATE_DIM)
        return self._clip_mocap(obs[:, 0:3] + obs.new_tensor(MOCAP_OFFSET))

    def context_step(self, ctx, action: torch.Tensor):
        if ctx is None:
            return None
        a = action.float().reshape(len(ctx), -1)[:, 0:3].clamp(-1.0, 1.0)
        return self._clip_mocap(ctx + ACTION_SCALE * torch.nan_to_num(a))

    @staticmethod
    def _clip_mocap(m: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(m, m.new_tensor(MOCAP_HIGH)), m.new_tensor(MOCAP_LOW))

    def context_features(self, obs: torch.Tensor, action: torch.Tensor, ctx) -> torch.Tensor:
        n = len(obs)
        if ctx is None:
            return torch.zeros(n, self.CONTEXT_DIM, device=obs.device)
        ctx = ctx.float().reshape(n, 3).to(obs.device)
        known = ~torch.isnan(ctx).any(-1, keepdim=True)
        c0 = torch.nan_to_num(ctx)
        c1 = self.context_step(c0, action)
        hand = obs[:, 0:3]
        lead = torch.cat([c0 - hand, c1 - hand], -1) / LEAD_SCALE
        lead = torch.where(known, lead.clamp(-LEAD_CLIP, LEAD_CLIP), torch.zeros_like(lead))
        return torch.cat([lead, known.float()], -1)


def make_codec(lm, tokenizer, cfg):
    """A ``VectorCodec`` for the 91-d state and Box(4) actions in [-1, 1] (a ``MocapCodec`` with
    ``dynamics_context``)."""
    from kalm.llm.model import embedding_scale

    hidden = lm.get_input_embeddings().weight.shape[1]
    kw = dict(codec_hidden=cfg.codec_hidden, embed_scale=embedding_scale(lm), slots=ENTITY_SLOTS,
              low=-1.0, high=1.0, history=bool(getattr(cfg, "dynamics_history", False)))
    if getattr(cfg, "dynamics_context", False):
        return MocapCodec(hidden, **kw)
    return VectorCodec(hidden, STATE_DIM, 4, **kw)
