"""GroundedLM: any HF decoder-only causal LM + an environment's codec, trained on the four objectives.

The base model is composed, not forked: vectors replace the input embeddings of placeholder
positions (``inputs_embeds``), and numeric heads read the final hidden states. The LM head is only
applied where a text token is a target, which keeps the 49k-way softmax off most positions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kalm.llm.sequences import Batch

__all__ = ["GroundedLM", "word_embeddings", "embedding_scale"]


def word_embeddings(model: nn.Module, tokenizer, words: set[str]) -> dict[str, torch.Tensor]:
    """The LM's input embedding of each word (mean over its tokens, with a leading space)."""
    layer = model.get_input_embeddings()
    n = layer.weight.shape[0]
    out = {}
    with torch.no_grad():
        for w in words:
            ids = [i for i in tokenizer(" " + w, add_special_tokens=False)["input_ids"] if 0 <= i < n]
            if ids:
                # Through the layer, not its weight: some models (Gemma) scale embeddings there.
                out[w] = layer(torch.tensor(ids)).float().mean(0)
    return out


def embedding_scale(model: nn.Module) -> float:
    """Typical size of one coordinate of the LM's input embeddings (as the layer outputs them)."""
    layer = model.get_input_embeddings()
    ids = torch.arange(0, layer.weight.shape[0], max(1, layer.weight.shape[0] // 512))
    with torch.no_grad():
        return float(layer(ids).float().std())


class GroundedLM(nn.Module):
    """A causal LM that reads and writes an environment's states and actions.

    ``codec``: the environment's numeric codec (``kalm.llm.codec``); without one, CLEVR-Robot's
    is built from the remaining options (the historical signature). ``env_name`` says which
    environment's states these are; ``rollout_windows`` whether imagination writes long rollouts
    window by window of ``window`` steps (``GroundConfig.rollout_windows``).
    """

    def __init__(self, lm: nn.Module, tokenizer, state_tokens: str = "state", codec_hidden: int = 256,
                 codec: nn.Module | None = None, prompt_style: str = "kalm",
                 action_head: str = "mlp", dynamics_head: str = "mlp",
                 explain_balls: bool = False, summary_features: str = "plain",
                 env_name: str = "clevr", window: int = 0) -> None:
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.prompt_style = prompt_style
        self.env_name = env_name
        self.window = int(window)
        if codec is None:
            from types import SimpleNamespace

            from kalm.envs import get_env

            opts = SimpleNamespace(state_tokens=state_tokens, codec_hidden=codec_hidden,
                                   action_head=action_head, dynamics_head=dynamics_head,
                                   explain_balls=explain_balls, summary_features=summary_features)
            codec = get_env(env_name).make_codec(lm, tokenizer, opts)
        self.codec = codec

    @property
    def positions_per_state(self) -> int:
        return self.codec.positions_per_state

    @property
    def device(self) -> torch.device:
        return next(self.codec.parameters()).device

    # ----------------------------------------------------------------- embedding
    def embed(self, batch: Batch, action_mask_p: float = 0.0) -> torch.Tensor:
        """Token embeddings with every placeholder replaced by its state / action vector."""
        emb = self.lm.get_input_embeddings()(batch.input_ids)
        dtype = emb.dtype
        emb = emb.clone()
        if len(batch.state_b):
            e = self.codec.embed_states(batch.state_obs).to(dtype)  # (Ns, P, H)
            P = e.shape[1]
            for k in range(P):
                emb[batch.state_b, batch.state_pos + k] = e[:, k]
        if len(batch.sm_b):
            e = self.codec.embed_summary(batch.sm_final, batch.sm_initial).to(dtype)  # (Nm, 5, H)
            for k in range(e.shape[1]):
                emb[batch.sm_b, batch.sm_pos + k] = e[:, k]
        if len(batch.action_b):
            masked = None
            if action_mask_p > 0:
                masked = batch.action_maskable & (torch.rand(len(batch.action_b), device=emb.device)
                                                  < action_mask_p)
            emb[batch.action_b, batch.action_pos] = self.codec.embed_actions(
                batch.action_ids, masked).to(dtype)
        return emb

    def hidden(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, **kw: Any):
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        out = self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                      position_ids=position_ids, output_hidden_states=True, logits_to_keep=1, **kw)
        return out.hidden_states[-1], out

    # ----------------------------------------------------------------- training
    def losses(self, batch: Batch, action_mask_p: float = 0.0) -> dict[str, torch.Tensor]:
        """Per-kind losses of a batch: state (MSE of normalised change), action (CE), text (CE)."""
        h, _ = self.hidden(self.embed(batch, action_mask_p), batch.attention_mask)
        zero = h.sum() * 0.0
        out = {"state": zero, "action": zero, "text": zero}
        if len(batch.st_b):
            if getattr(self.codec, "context_dim", 0):
                pred = self.codec.predict_delta(h[batch.st_b, batch.st_pos], batch.st_base,
                                                batch.st_action, batch.st_prev,
                                                getattr(batch, "st_ctx", None))
            elif getattr(self.codec, "history", False):
                pred = self.codec.predict_delta(h[batch.st_b, batch.st_pos], batch.st_base,
                                                batch.st_action, batch.st_prev)
            else:
                pred = self.codec.predict_delta(h[batch.st_b, batch.st_pos], batch.st_base,
                                                batch.st_action)
            scale = torch.where(batch.st_episode.unsqueeze(-1), self.codec.episode_delta_std,
                                self.codec.delta_std)
            tgt = (batch.st_target - batch.st_base) / scale
            out["state"] = F.mse_loss(pred, tgt)
        if len(batch.at_b):
            out["action"] = self.codec.action_loss(h[batch.at_b, batch.at_pos], batch.at_obs,
                                                   batch.at_target)
        if len(batch.tt_b):
            head = self.lm.get_output_embeddings()
            logits = head(h[batch.tt_b, batch.tt_pos].to(head.weight.dtype)).float()
            out["text"] = F.cross_entropy(logits, batch.tt_target)
        return out

    def forward(self, batch: Batch, action_mask_p: float = 0.0) -> dict[str, torch.Tensor]:
        """The losses of a batch (so DDP wrappers see a forward call and sync gradients)."""
        return self.losses(batch, action_mask_p)

    # ----------------------------------------------------------------- persistence
    def trainable_lm_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.lm.named_parameters() if v.requires_grad}

    def save(self, folder: str | Path, extra: dict | None = None) -> None:
        """Save only what is trained: the codec and the LM's trainable weights (safetensors)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.codec.state_dict().items()},
                  str(folder / "codec.safetensors"))
        if hasattr(self.lm, "peft_config"):
            self.lm.save_pretrained(str(folder / "adapter"), safe_serialization=True)
        else:
            save_file(self.trainable_lm_state(), str(folder / "lm_trainable.safetensors"))
        meta = {**self.codec.design(), "prompt_style": self.prompt_style, **(extra or {})}
        if self.env_name != "clevr":
            meta["env"] = self.env_name
        (folder / "grounded.json").write_text(json.dumps(meta, indent=2))

    @torch.no_grad()
    def load_trained(self, folder: str | Path) -> None:
        """Load the codec and trainable LM weights saved by ``save`` (no pickles)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        sd = load_file(str(folder / "codec.safetensors"))
        # Checkpoints from before the consequence objective had its own scale lack it.
        sd.setdefault("episode_delta_std", sd["delta_std"].clone())
        self.codec.load_state_dict(sd)
        if (folder / "adapter").exists():
            from peft import set_peft_model_state_dict
            sd = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
            set_peft_model_state_dict(self.lm, sd)
        elif (folder / "lm_trainable.safetensors").exists():
            sd = load_file(str(folder / "lm_trainable.safetensors"))
            missing = self.lm.load_state_dict(sd, strict=False)
            if missing.unexpected_keys:
                raise ValueError(f"checkpoint has unknown LM weights: {missing.unexpected_keys[:3]}")

