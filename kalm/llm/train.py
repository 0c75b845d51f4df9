"""Grounding: fine-tune a causal LM on the four objectives; one run folder per training.

Run folder layout (``python -m kalm ground --data PATH --out runs/NAME``):

    config.json      the GroundConfig (the same dataclass drives the CLI and the app)
    status.json      state / step / message, rewritten atomically (the app polls it)
    metrics.csv      step, losses per kind, learning rate, samples/s, val losses
    checkpoint/      the latest checkpoint: model files + trainer_state.pt (resume)
    model/           the final grounded model (codec + adapter + grounded.json + config.json)
    split.json       which episodes are held out for validation

It runs unchanged under ``accelerate launch`` (DDP): the Accelerator handles devices, mixed
precision and gradient syncing; only the main process writes files.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kalm.llm.config import GroundConfig
from kalm.llm.model import GroundedLM
from kalm.llm.sequences import (
    collate,
    consequence_sequence,
    dynamics_sequence,
    explain_sequence,
    rollout_sequence,
)
from kalm.runs import RunDir, replace_dir, write_json_atomic

__all__ = ["GroundingData", "build_model", "train_grounding", "load_grounded", "split_episodes"]


def split_episodes(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), split by episode, seeded."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class _Ep:
    text: str
    obs: np.ndarray
    actions: np.ndarray
    success: bool


class GroundingData:
    """Samples training sequences of the four objectives from a dataset's episodes."""

    def __init__(self, episodes: list[_Ep], cfg: GroundConfig) -> None:
        self.cfg = cfg
        self.all = episodes
        self.succ = [e for e in episodes if e.success and len(e.actions) > 0]
        if not self.succ:
            raise ValueError("the dataset has no successful episodes to ground on")
        names = list(cfg.objectives)
        w = np.array([cfg.objective_weights.get(o, 1.0) for o in names], dtype=np.float64)
        self.objectives, self.weights = names, w / w.sum()
        self.summary = bool(cfg.explain_balls)
        """Explanation prompts end with the codec's summary positions (set from the codec)."""
        self.codec = None
        """The model's codec, where it carries a dynamics context (set from the codec): rollout
        windows then carry each step's context, computed from the episode's start."""
        self._contexts: dict[int, np.ndarray] = {}

    def contexts(self, e: "_Ep") -> np.ndarray | None:
        """The codec's dynamics context before each of the episode's actions (None: none)."""
        if self.codec is None or not getattr(self.codec, "context_dim", 0):
            return None
        if id(e) not in self._contexts:
            self._contexts[id(e)] = self.codec.context_replay(e.obs[0], e.actions)
        return self._contexts[id(e)]

    @classmethod
    def from_dataset(cls, dataset, indices: np.ndarray, cfg: GroundConfig) -> "GroundingData":
        eps = []
        for i in indices:
            e = dataset[int(i)]
            a = np.asarray(e.actions)
            a = a.astype(np.int64) if a.ndim == 1 else a.astype(np.float32)
            eps.append(_Ep(e.text, np.asarray(e.observations, np.float32), a, bool(e.success)))
        return cls(eps, cfg)

    def sample(self, rng: np.random.Generator, objective: str | None = None):
        obj = objective or self.objectives[rng.choice(len(self.objectives), p=self.weights)]
        T = self.cfg.max_steps_per_episode
        st = self.cfg.prompt_style
        if obj == "dynamics":
            e = self.all[rng.integers(len(self.all))]
            while len(e.actions) == 0:
                e = self.all[rng.integers(len(self.all))]
            t = rng.integers(len(e.actions))
            return dynamics_sequence(e.obs[t], e.actions[t], e.obs[t + 1], st)
        e = self.succ[rng.integers(len(self.succ))]
        if obj == "consequence":
            return consequence_sequence(e.text, e.obs[0], e.obs[-1], st)
        start = 0
        if self.cfg.rollout_windows and len(e.actions) > T:
            start = int(rng.integers(len(e.actions) - T + 1))
        obs, act = e.obs[start : start + T + 1], e.actions[start : start + T]
        if obj == "rollout":
            # the state before the window (an episode's start: its own, at rest)
            ctx = self.contexts(e)
            return rollout_sequence(e.text, obs, act, st, prev=e.obs[max(start - 1, 0)],
                                    contexts=None if ctx is None else ctx[start: start + T])
        return explain_sequence(e.text, obs, act, st, self.summary)

    def stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Observation mean/std, one-push change std, whole-episode change std."""
        obs = np.concatenate([e.obs for e in self.all])
        deltas = np.concatenate([e.obs[1:] - e.obs[:-1] for e in self.all if len(e.actions)])
        episode = np.stack([e.obs[-1] - e.obs[0] for e in self.succ])
        return obs.mean(0), obs.std(0), deltas.std(0), episode.std(0)


def build_model(cfg: GroundConfig, lm=None, tokenizer=None) -> GroundedLM:
    """The base LM (loaded unless given) with its adapter and a fresh codec."""
    if lm is None:
        from kalm.llm.base import load_base_lm

        lm, tokenizer = load_base_lm(cfg.model)
    if cfg.lm_layers:
        from kalm.llm.base import truncate_layers

        truncate_layers(lm, cfg.lm_layers)
    if cfg.adapter == "lora":
        from peft import LoraConfig, get_peft_model

        lm = get_peft_model(lm, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                           target_modules=list(cfg.lora_targets),
                                           lora_dropout=0.0, task_type="CAUSAL_LM"))
    else:
        for p in lm.parameters():
            p.requires_grad_(True)
    from kalm.envs import get_env

    codec = get_env(cfg.env).make_codec(lm, tokenizer, cfg)
    if getattr(cfg, "dynamics_context", False) and not getattr(codec, "context_dim", 0):
        raise ValueError(f"dynamics_context: the {cfg.env} codec carries no dynamics context")
    return GroundedLM(lm, tokenizer, codec=codec, prompt_style=cfg.prompt_style, env_name=cfg.env,
                      window=cfg.max_steps_per_episode if cfg.rollout_windows else 0)


def load_grounded(folder: str | Path, lm=None, tokenizer=None) -> GroundedLM:
    """Load a grounded model folder (a run's ``model/`` or ``checkpoint/``, or the run itself)."""
    folder = Path(folder)
    if (folder / "model" / "grounded.json").exists():
        folder = folder / "model"
    if not (folder / "grounded.json").exists():
        raise FileNotFoundError(
            f"{folder} is not a grounded model (no grounded.json); train one with "
            "`python -m kalm ground --data PATH --out runs/NAME`")
    cfg = GroundConfig.load(folder / "config.json")
    model = build_model(cfg, lm, tokenizer)
    model.load_trained(folder)
    model.eval()
    return model


# Config fields that decide the shape of what is trained: an init_from folder must share them.
_DESIGN_KEYS = ("env", "model", "lm_layers", "prompt_style", "state_tokens", "adapter", "lora_r", "lora_alpha",
                "lora_targets", "codec_hidden", "action_head", "dynamics_head", "explain_balls",
                "summary_features")


def _init_from(model: GroundedLM, cfg: GroundConfig) -> None:
    folder = Path(cfg.init_from)
    if (folder / "model" / "grounded.json").exists():
        folder = folder / "model"
    if not (folder / "grounded.json").exists():
        raise ValueError(f"init_from {cfg.init_from!r} is not a grounded model folder (no grounded.json)")
    other = GroundConfig.load(folder / "config.json")
    diff = [k for k in _DESIGN_KEYS if getattr(other, k) != getattr(cfg, k)]
    if diff:
        raise ValueError(f"init_from {cfg.init_from!r} has another design: "
                         + ", ".join(f"{k}={getattr(other, k)!r} (here {getattr(cfg, k)!r})" for k in diff))
    model.load_trained(folder)


def _batch_losses(model: GroundedLM, seqs, cfg: GroundConfig, tokens, action_mask_p: float,
                  wrapped=None):
    batch = collate(seqs, model.tokenizer, model.positions_per_state, tokens=tokens)
    batch.to(model.device)
    # Call the (possibly DDP-)wrapped module so that gradients are synchronised across processes.
    L = (wrapped or model)(batch, action_mask_p)
    total = (cfg.state_loss_weight * L["state"] + cfg.action_loss_weight * L["action"]
             + cfg.text_loss_weight * L["text"])
    return total, L


def _lr_lambda(cfg: GroundConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        prog = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))
    return f


def _save_checkpoint(run: RunDir, model: GroundedLM, opt, sched, step: int, rng, cfg) -> None:
    tmp = run.path / ".checkpoint.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp, {"step": step})
    cfg.save(tmp / "config.json")
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                "torch_rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
    (tmp / "rng.json").write_text(json.dumps(rng.bit_generator.state))
    replace_dir(tmp, run.path / "checkpoint")


def train_grounding(
    cfg: GroundConfig,
    out: str | Path,
    lm=None,
    tokenizer=None,
    progress: bool = True,
    resume: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> GroundedLM:
    """Train (or resume) a grounding run into the folder ``out``; returns the trained model."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    from kalm.data.episodes import load_dataset

    cfg.validate()
    run = RunDir(out, "ground")
    # Objectives differ per batch, so some heads get no gradient in a step: tell DDP.
    acc = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no",
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    main = acc.is_main_process
    prev_cfg = run.path / "config.json"
    if prev_cfg.exists() and resume:
        old = GroundConfig.load(prev_cfg)
        keep = {"steps", "max_minutes", "eval_every", "save_every"}
        diff = {k for k, v in cfg.to_dict().items() if k not in keep and old.to_dict()[k] != v}
        if diff and (run.path / "checkpoint").exists():
            raise ValueError(f"{out} holds a run with a different config ({', '.join(sorted(diff))}); "
                             "use another --out or delete the folder")
    if main:
        run.save_config(cfg.to_dict())
        run.status("running", 0, cfg.steps, "loading data and model")

    dataset = load_dataset(cfg.data)
    if dataset.env != cfg.env:
        raise ValueError(f"{cfg.data} holds {dataset.env} episodes; ground it with --env {dataset.env}")
    tr_idx, val_idx = split_episodes(len(dataset), cfg.val_fraction, cfg.seed)
    if main:
        write_json_atomic(run.path / "split.json", {"train": tr_idx.tolist(), "val": val_idx.tolist(),
                                                    "data": str(cfg.data)})
    train_data = GroundingData.from_dataset(dataset, tr_idx, cfg)
    val_data = None
    if len(val_idx) and any(dataset[int(i)].success for i in val_idx):
        val_data = GroundingData.from_dataset(dataset, val_idx, cfg)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, lm, tokenizer)
    model.codec.set_stats(*train_data.stats())
    for d in (train_data, val_data):
        if d is not None:
            d.summary = bool(model.codec.summary_positions)
            d.codec = model.codec if getattr(model.codec, "context_dim", 0) else None
    if cfg.init_from and not (resume and (run.path / "checkpoint" / "trainer_state.pt").exists()):
        _init_from(model, cfg)
    codec_params = list(model.codec.parameters())
    lm_params = [p for p in model.lm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": lm_params, "lr": cfg.lr},
                             {"params": codec_params, "lr": cfg.codec_lr}],
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    rng = np.random.default_rng(cfg.seed + acc.process_index)
    start = 0
    ck = run.path / "checkpoint"
    if resume and (ck / "trainer_state.pt").exists():
        model.load_trained(ck)
        st = torch.load(ck / "trainer_state.pt", weights_only=True)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        torch.set_rng_state(st["torch_rng"])
        rng.bit_generator.state = json.loads((ck / "rng.json").read_text())
        start = int(st["step"])
    model, opt = acc.prepare(model, opt)
    core: GroundedLM = acc.unwrap_model(model)
    from kalm.llm.sequences import _Tokens

    tokens = _Tokens(core.tokenizer)
    val_rng = np.random.default_rng(10_000 + cfg.seed)
    val_batches = []
    if val_data is not None:
        for obj in cfg.objectives:
            val_batches.append((obj, [val_data.sample(val_rng, obj) for _ in range(cfg.batch_size)]))

    bar = None
    if progress and main and start < cfg.steps:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="ground", unit="step")
    t_start = time.time()
    step = start
    stopped = budget_hit = False
    try:
        while step < cfg.steps:
            model.train()
            t0 = time.time()
            seqs = [train_data.sample(rng) for _ in range(cfg.batch_size)]
            with acc.autocast():
                loss, L = _batch_losses(core, seqs, cfg, tokens, cfg.action_input_dropout, model)
            acc.backward(loss)
            acc.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            row = {"step": step, "loss": loss.item(), **{f"loss_{k}": v.item() for k, v in L.items()},
                   "lr": sched.get_last_lr()[0], "samples_per_s": cfg.batch_size / (time.time() - t0)}
            row.update({k: "" for k in _val_keys(cfg)} if val_batches else {})
            if val_batches and (step % cfg.eval_every == 0 or step == cfg.steps):
                row.update(_validate(core, val_batches, cfg, tokens))
            if main:
                run.log_metrics(row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", act=f"{row['loss_action']:.2f}")
                run.status("running", step, cfg.steps, f"loss {row['loss']:.3f}")
                if step % cfg.save_every == 0:
                    _save_checkpoint(run, core, opt, sched, step, rng, cfg)
            if on_step is not None:
                on_step(step, row)
            if cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes and step < cfg.steps:
                budget_hit = True
                break
    except KeyboardInterrupt:
        stopped = True
    finally:
        if bar is not None:
            bar.close()
    if main:
        _save_checkpoint(run, core, opt, sched, step, rng, cfg)
        if stopped:
            run.status("stopped", step, cfg.steps, "stopped; rerun the same command to resume")
        else:
            final = run.path / "model"
            tmp = run.path / ".model.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            core.save(tmp, {"step": step})
            cfg.save(tmp / "config.json")
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            msg = (f"time budget of {cfg.max_minutes} min reached at step {step}; rerun the same "
                   "command to continue" if budget_hit else "finished")
            run.status("done", step, cfg.steps, msg)
    core.eval()
    return core


_VAL_KINDS = {"rollout": ("action", "state"), "dynamics": ("state",), "consequence": ("state",),
              "explain": ("text",)}


def _val_keys(cfg: GroundConfig) -> list[str]:
    return [f"val_{o}_{k}" for o in cfg.objectives for k in _VAL_KINDS[o]]


@torch.no_grad()
def _validate(model: GroundedLM, val_batches, cfg: GroundConfig, tokens) -> dict[str, float]:
    model.eval()
    out = {}
    for obj, seqs in val_batches:
        _, L = _batch_losses(model, seqs, cfg, tokens, 0.0)
        for k in _VAL_KINDS[obj]:
            out[f"val_{obj}_{k}"] = float(L[k])
    model.train()
    return out
