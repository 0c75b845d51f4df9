"""A trained goal-conditioned policy, as the evaluation harness uses it.

A train run saves ``policy/`` and, at its last 5 epoch ends, ``snapshots/step-<N>/`` folders of
the same kind (see ``kalm.rl.train``; ``snapshot_dirs`` lists them):

    policy.json          format ("kalm-policy", version 1), algorithm, environment ("env";
                         CLEVR-Robot when absent), whether actions are discrete, observation,
                         state and action sizes (continuous: the action range), goal embedder
                         and its dimension, training step, the TrainConfig
    policy.safetensors   the networks' weights (no pickles)

``TrainedPolicy.load(folder)`` rebuilds the d3rlpy algorithm from ``policy.json`` and loads the
weights. It follows ``kalm.policy.base.Policy``: ``reset`` embeds the goal text once per episode
(the goal's training phrasing when no text is given), ``act`` returns the greedy action on
``concat(obs, z)``: an int for a discrete action space, a float32 vector of the action size,
clipped to the action spec's [low, high], for a continuous one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kalm.data.episodes import OBS_DIM

__all__ = ["TrainedPolicy", "POLICY_FORMAT", "policy_dir", "describe_run_folder", "snapshot_dirs"]

POLICY_FORMAT = "kalm-policy"
POLICY_VERSION = 1


def policy_dir(path: str | Path) -> Path | None:
    """The folder holding ``policy.json`` for a train run folder or its ``policy/``; else None."""
    p = Path(path)
    for cand in (p / "policy", p):
        if (cand / "policy.json").exists():
            return cand
    return None


def snapshot_dirs(path: str | Path, last: int = 5) -> list[Path]:
    """The policy snapshots of a train run folder (``snapshots/step-<N>/`` holding a
    ``policy.json``), oldest first, the last ``last`` of them (0 = all); [] when it has none."""
    root = Path(path) / "snapshots"
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        name = d.name
        if (d.is_dir() and name.startswith("step-") and name[5:].isdigit()
                and (d / "policy.json").exists() and (d / "policy.safetensors").exists()):
            found.append((int(name[5:]), d))
    dirs = [d for _, d in sorted(found)]
    return dirs[-last:] if last > 0 else dirs


def describe_run_folder(path: str | Path) -> str:
    """Why ``path`` is not a loadable trained policy (for error messages)."""
    p = Path(path)
    status = {}
    try:
        status = json.loads((p / "status.json").read_text())
    except (OSError, ValueError):
        pass
    stage = status.get("stage")
    if stage == "train" or (p / "checkpoint" / "trainer.json").exists():
        state = status.get("state", "unknown")
        return (f"{path} is an unfinished train run (state {state}, step {status.get('step', '?')}"
                f"/{status.get('total', '?')}: no policy/ yet); rerun its train command to finish it")
    if stage == "ground" or (p / "model" / "grounded.json").exists() or (p / "grounded.json").exists():
        return (f"{path} is a grounding run (a grounded LM), not a trained policy; evaluate the "
                f"LM as a policy with --policy llm:{path}, or train a policy with "
                "`python -m kalm train --real DATA --out runs/NAME`")
    if stage:
        return (f"{path} is a run of the {stage!r} stage, not a trained policy; train one with "
                "`python -m kalm train --real DATA --out runs/NAME`")
    return (f"{path} holds no trained policy (no policy/policy.json); train one with "
            "`python -m kalm train --real DATA --out runs/NAME`")


class TrainedPolicy:
    """A d3rlpy policy acting on ``concat(state, embed(goal text))``."""

    def __init__(self, algo, embedder, name: str = "trained", state_dim: int | None = None,
                 env: str = "clevr", target_return: float | None = None,
                 reward: str = "dense") -> None:
        from kalm.envs import get_env

        self.algo = algo
        # a Decision Transformer acts from the episode so far: the return it is asked for, the
        # reward label of its training data (computed from the states, as the data's were)
        self.sequence = hasattr(algo, "as_stateful_wrapper")
        if self.sequence and target_return is None:
            raise ValueError("a Decision Transformer policy needs the target return it was "
                             "trained for (policy.json target_return)")
        self.target_return = None if target_return is None else float(target_return)
        self.reward = reward
        self._wrapper = None
        self._goal = None
        self._prev: np.ndarray | None = None
        self.embedder = embedder
        self.name = name
        self.env = env
        self.environment = get_env(env)
        self.action_spec = self.environment.action
        self.state_dim = int(state_dim) if state_dim is not None else self.environment.state.dim
        self._z: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", embedder=None) -> "TrainedPolicy":
        from kalm.rl.algos import build_algo, load_weights
        from kalm.rl.config import TrainConfig
        from kalm.rl.embed import make_embedder, with_mentions

        folder = policy_dir(path)
        if folder is None:
            raise ValueError(describe_run_folder(path))
        try:
            meta = json.loads((folder / "policy.json").read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{folder / 'policy.json'} is unreadable ({e}); retrain the policy") from None
        if meta.get("format") != POLICY_FORMAT:
            raise ValueError(f"{folder / 'policy.json'} is not a kalm policy")
        if meta.get("format_version") != POLICY_VERSION:
            raise ValueError(f"{folder} has policy format version {meta.get('format_version')!r}; "
                             f"this kalm reads version {POLICY_VERSION}")
        weights = folder / "policy.safetensors"
        if not weights.exists():
            raise ValueError(f"{folder} lacks policy.safetensors; rerun the train command")
        cfg = TrainConfig.from_dict(meta["config"])
        env = str(meta.get("env", cfg.env))
        if env != cfg.env:
            raise ValueError(f"{folder / 'policy.json'} names env {env!r} but its config "
                             f"{cfg.env!r}; retrain the policy")
        from kalm.envs import get_env

        spec = get_env(env).action
        discrete = bool(meta.get("discrete", True))
        if discrete != spec.discrete or int(meta["action_size"]) != spec.size:
            raise ValueError(f"{folder} holds a policy whose actions do not fit {env}'s "
                             f"({spec.kind} {spec.size}); retrain the policy")
        state_dim = int(meta.get("state_dim", OBS_DIM))
        algo = build_algo(cfg, int(meta["observation_size"]), int(meta["action_size"]),
                          discrete=discrete, device=device, state_dim=state_dim,
                          action_range=(spec.low, spec.high))
        load_weights(algo, weights)
        emb = embedder if embedder is not None else make_embedder(meta["embedder"])
        emb = with_mentions(emb, get_env(env), cfg.mentions)
        if emb.dim != int(meta["goal_dim"]):
            raise ValueError(f"embedder {emb.name} gives {emb.dim}-d vectors but the policy was "
                             f"trained on {meta['goal_dim']}-d ones")
        if folder.parent.name == "snapshots":
            name = f"{meta['algo']}:{folder.parent.parent.name}@{meta.get('step', folder.name)}"
        else:
            run = folder.parent if folder.name == "policy" else folder
            name = f"{meta['algo']}:{run.name}"
        return cls(algo, emb, name=name, state_dim=state_dim, env=env,
                   target_return=meta.get("target_return"), reward=cfg.reward)

    def goal_vector(self, text: str) -> np.ndarray:
        return self.embedder.embed([text])[0]

    def reset(self, goal, obs: np.ndarray, text: str = "") -> None:
        if not text:
            text = self.environment.describe(goal)
        self._z = self.goal_vector(text)
        if self.sequence:
            from d3rlpy.algos import (GreedyTransformerActionSampler,
                                      IdentityTransformerActionSampler)

            if self._wrapper is None:  # greedy: the argmax push, or the regressed action
                sampler = (GreedyTransformerActionSampler() if self.action_spec.discrete
                           else IdentityTransformerActionSampler())
                self._wrapper = self.algo.as_stateful_wrapper(self.target_return, sampler)
            self._wrapper.reset()
            self._goal, self._prev = goal, None

    def _sequence_act(self, s: np.ndarray) -> int | np.ndarray:
        """A Decision Transformer's action: the reward of the step that led to ``s`` (from the
        states, 0 at the episode's start) joins the window of past steps."""
        r = 0.0
        if self._prev is not None:
            dense, sparse = self.environment.reward_labels(
                self._goal, np.stack([self._prev, s]).astype(np.float64))
            r = float((dense if self.reward == "dense" else sparse)[0])
        self._prev = s
        x = np.concatenate([s, self._z]).astype(np.float32)
        a = self._wrapper.predict(x, r)
        spec = self.action_spec
        if spec.discrete:
            return int(np.asarray(a).reshape(-1)[0])
        return np.clip(np.asarray(a, np.float32).reshape(spec.size), spec.low, spec.high)

    def _actions(self, x: np.ndarray) -> np.ndarray:
        """The greedy actions for observation rows ``x``: int64 (B,) or float32 (B, k), clipped."""
        a = np.asarray(self.algo.predict(x.astype(np.float32)))
        spec = self.action_spec
        if spec.discrete:
            return a.reshape(-1).astype(np.int64)
        return np.clip(a.reshape(-1, spec.size), spec.low, spec.high).astype(np.float32)

    def act(self, obs: np.ndarray) -> int | np.ndarray:
        if self._z is None:
            raise RuntimeError("call reset(goal, obs, text) before act(obs)")
        s = np.asarray(obs, dtype=np.float32).reshape(-1)[: self.state_dim]
        if self.sequence:
            return self._sequence_act(s)
        x = np.concatenate([s, self._z])[None, :].astype(np.float32)
        a = self._actions(x)
        return int(a[0]) if self.action_spec.discrete else a[0]

    def act_batch(self, obs: np.ndarray, texts: list[str]) -> np.ndarray:
        """Greedy actions for many (state, text) pairs at once (not for a Decision Transformer,
        which acts from an episode's history: use reset and act)."""
        if self.sequence:
            raise ValueError(f"{self.name} is a Decision Transformer: it acts from the episode "
                             "so far, one episode at a time (reset, then act)")
        z = self.embedder.embed(texts)
        s = np.asarray(obs, dtype=np.float32)[:, : self.state_dim]
        a = self._actions(np.concatenate([s, z], axis=1))
        return a.astype(int) if self.action_spec.discrete else a
