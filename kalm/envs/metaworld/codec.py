"""Meta-World's codec: the 91-d state and the 4-d action in and out of the LM.

As the paper did: a learned projection of the state vector in (one position), a learned
projection of the action in, regression heads out (``kalm.llm.codec.VectorCodec``). The twelve
entity slots of the state (``state.py``) tell the codec which objects are in the scene: each
gets a presence flag at the input, and an absent entity's slot stays all zeros in every state
the LM writes.
"""

from __future__ import annotations

from kalm.envs.metaworld.state import ENTITIES, STATE_DIM, entity_slice

__all__ = ["make_codec", "ENTITY_SLOTS"]

ENTITY_SLOTS = tuple((entity_slice(e).start, entity_slice(e).stop) for e in ENTITIES)


def make_codec(lm, tokenizer, cfg):
    """A ``VectorCodec`` for the 91-d state and Box(4) actions in [-1, 1]."""
    from kalm.llm.codec import VectorCodec
    from kalm.llm.model import embedding_scale

    hidden = lm.get_input_embeddings().weight.shape[1]
    return VectorCodec(hidden, STATE_DIM, 4, codec_hidden=cfg.codec_hidden,
                       embed_scale=embedding_scale(lm), slots=ENTITY_SLOTS, low=-1.0, high=1.0,
                       history=bool(getattr(cfg, "dynamics_history", False)))
