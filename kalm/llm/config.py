"""The typed configuration of LLM grounding; saved as ``config.json`` in every grounding run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kalm.configio import JsonConfig

__all__ = ["GroundConfig", "PRESETS", "OBJECTIVES"]

OBJECTIVES = ("rollout", "dynamics", "consequence", "explain")


@dataclass
class GroundConfig(JsonConfig):
    """Grounding a causal LM on (goal text, rollout) pairs."""

    KIND: ClassVar[str] = "grounding"
    # Runs saved before these options existed were made with the plain heads.
    LEGACY: ClassVar[dict[str, Any]] = {"action_head": "mlp", "dynamics_head": "mlp",
                                        "dynamics_history": False, "dynamics_context": False,
                                        "explain_balls": False, "summary_features": "plain"}

    # --- data
    env: str = "clevr"
    """The environment the data comes from and the LM learns (``--env``): it makes the codec."""
    data: str = ""
    """Path of the offline dataset (.npz from `python -m kalm collect`)."""
    val_fraction: float = 0.1
    """Fraction of episodes held out for validation (split by episode, seeded)."""
    max_steps_per_episode: int = 12
    """Rollouts longer than this are cut (the expert needs ~4.5 steps for relations)."""
    rollout_windows: bool = False
    """False: a training rollout is the first ``max_steps_per_episode`` steps of an episode (CLEVR).
    True: a window of that many steps starting anywhere in the episode, and imagination writes
    long rollouts window by window, each prompted afresh with the goal and the window's first
    state (Meta-World: 100-200-step episodes, which one CPU could not ground on whole)."""
    # --- model
    model: str = "smollm2-135m"
    """Base LM: a packaged name (smollm2-135m, gemma3-270m), a local HF folder or a .gguf file."""
    lm_layers: int = 0
    """Keep only the base LM's first N decoder layers (0 = all). Training and generation cost
    scale with the layer count; the lower layers keep the word meanings grounding needs."""
    prompt_style: str = "short"
    """'kalm' (the published prompt wording) or 'short' (same structure, ~20 fewer tokens)."""
    state_tokens: str = "state"
    """How a state enters the LM: 'state' (one position) or 'ball' (one position per ball)."""
    adapter: str = "lora"
    """'lora' (peft adapter, default) or 'full' (fine-tune every weight)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Modules that get LoRA adapters."""
    codec_hidden: int = 256
    """Hidden width of the numeric input projections and output heads."""
    dynamics_history: bool = False
    """Continuous-state codecs (``VectorCodec``): the dynamics head also reads the last change of
    the state (its velocity), which a mocap-driven arm's next state depends on and one state does
    not show. Rollout windows then carry the state before their first one."""
    dynamics_context: bool = False
    """Codecs with a dynamics context (Meta-World's ``MocapCodec``: the arm's mocap target, which
    the rollout's first state and its actions determine): the dynamics head also reads it; rollout
    windows then carry each step's context, replayed from the episode's start. A grounded model's
    head can also be refitted to read it (``bench/refit_metaworld_dynamics.py --context``)."""
    action_head: str = "geometric"
    """'mlp' (40 logits from the hidden state), 'geometric' (the hidden state picks the ball and a
    target point in scene coordinates: weights on the ball centres plus an offset; each direction
    is scored by where it lands the ball; the MLP stays as a residual) or 'pointer' (the same with
    the weights a softmax over the balls and "no ball"; not yet trained at the full preset)."""
    dynamics_head: str = "physics"
    """'mlp' (every ball's change from the hidden state), 'physics' (one per-ball network that
    also sees the state and which ball is pushed which way; used where the action is known) or
    'contact' (the same, each ball also reading every other ball's place relative to it and to the
    push, so a pushed ball can stop at, or shove, the ball in its way; CLEVR-Robot)."""
    explain_balls: bool = True
    """Explanation prompts end with one position per ball of the final state (colour-word
    embedding + displacement and offsets), so the explanation can name the destination ball."""
    summary_features: str = "plain"
    """What each summary position holds: 'plain' (displacement, offsets to the other balls) or
    'mover' (plus its offset from the ball that moved furthest; not yet trained at the full preset)."""
    action_input_dropout: float = 0.3
    """In goal->rollout sequences, probability that an action's input is masked (breaks the
    shortcut of copying the previous action)."""
    init_from: str = ""
    """Start from the trained weights (adapter or LM weights, codec) of a grounded model folder
    of the same design (model, prompt style, state tokens, adapter, LoRA settings, codec width),
    e.g. to continue the shipped checkpoint on new data; its data statistics are kept."""
    # --- objectives
    objectives: list[str] = field(default_factory=lambda: list(OBJECTIVES))
    """Training objectives among rollout, dynamics, consequence, explain."""
    objective_weights: dict[str, float] = field(
        default_factory=lambda: {"rollout": 1.0, "dynamics": 0.4, "consequence": 0.2, "explain": 0.4}
    )
    """Sampling weight of each objective in a batch."""
    state_loss_weight: float = 0.5
    """Weight of the next-state MSE (on normalised deltas)."""
    action_loss_weight: float = 1.0
    """Weight of the action cross-entropy."""
    text_loss_weight: float = 0.5
    """Weight of the token cross-entropy on target text."""
    # --- optimisation
    steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 16
    """Sequences per step."""
    lr: float = 3e-4
    """Learning rate of the LM adapter (or of all LM weights with adapter='full': use ~5e-5)."""
    codec_lr: float = 1e-3
    """Learning rate of the numeric projections and heads."""
    warmup_steps: int = 50
    """Linear warm-up steps, then cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    bf16: bool = False
    """bf16 autocast: use on GPUs; on CPUs without native bf16 it was 15x slower here."""
    seed: int = 0
    """Seed of the split, sampling and initialisation."""
    # --- bookkeeping
    eval_every: int = 100
    """Validation losses every N steps."""
    save_every: int = 100
    """Checkpoint every N steps (resume continues from the last one)."""
    max_minutes: float = 0.0
    """Stop (with a checkpoint) after this many minutes; 0 = no limit."""

    def validate(self) -> "GroundConfig":
        from kalm.envs import env_names

        if self.env not in env_names():
            raise ValueError(f"env must be one of {', '.join(env_names())}; got {self.env!r}")
        if self.max_steps_per_episode < 1:
            raise ValueError(f"max_steps_per_episode must be at least 1; got {self.max_steps_per_episode}")
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives:
            raise ValueError(f"objectives must be a non-empty subset of {OBJECTIVES}; got {self.objectives}")
        if self.state_tokens not in ("state", "ball"):
            raise ValueError(f"state_tokens must be 'state' or 'ball'; got {self.state_tokens!r}")
        if self.prompt_style not in ("kalm", "short"):
            raise ValueError(f"prompt_style must be 'kalm' or 'short'; got {self.prompt_style!r}")
        if self.adapter not in ("lora", "full"):
            raise ValueError(f"adapter must be 'lora' or 'full'; got {self.adapter!r}")
        if self.action_head not in ("mlp", "geometric", "pointer"):
            raise ValueError(f"action_head must be 'mlp', 'geometric' or 'pointer'; got {self.action_head!r}")
        if self.summary_features not in ("plain", "mover"):
            raise ValueError(f"summary_features must be 'plain' or 'mover'; got {self.summary_features!r}")
        if self.dynamics_head not in ("mlp", "physics", "contact"):
            raise ValueError(f"dynamics_head must be 'mlp', 'physics' or 'contact'; got "
                             f"{self.dynamics_head!r}")
        if self.lm_layers < 0:
            raise ValueError(f"lm_layers must be >= 0 (0 = all layers); got {self.lm_layers}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # 2 CPU cores, about an hour.
    "cpu": {"steps": 800, "batch_size": 16, "bf16": False, "adapter": "lora"},
    # One GPU: longer, bigger batches; full fine-tuning works for models up to ~1B in 80 GB.
    "gpu": {"steps": 6000, "batch_size": 64, "bf16": True, "adapter": "lora", "lr": 2e-4},
    # Seconds: for tests and smoke runs with a tiny model.
    "tiny": {"steps": 20, "batch_size": 4, "bf16": False, "eval_every": 10, "save_every": 10},
}
