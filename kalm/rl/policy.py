"""A trained goal-conditioned policy, as the evaluation harness uses it.

A train run saves ``policy/`` (see ``kalm.rl.train``):

    policy.json          format ("kalm-policy", version 1), algorithm, observation and action
                         sizes, goal embedder and its dimension, training step, the TrainConfig
    policy.safetensors   the networks' weights (no pickles)

``TrainedPolicy.load(folder)`` rebuilds the d3rlpy algorithm from ``policy.json`` and loads the
weights. It follows ``kalm.policy.base.Policy``: ``reset`` embeds the goal text once per episode
(the goal's training phrasing when no text is given), ``act`` returns the greedy action on
``concat(obs, z)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kalm.data.episodes import OBS_DIM

__all__ = ["TrainedPolicy", "POLICY_FORMAT", "policy_dir", "describe_run_folder"]

POLICY_FORMAT = "kalm-policy"
POLICY_VERSION = 1


def policy_dir(path: str | Path) -> Path | None:
    """The folder holding ``policy.json`` for a train run folder or its ``policy/``; else None."""
    p = Path(path)
    for cand in (p / "policy", p):
        if (cand / "policy.json").exists():
            return cand
    return None


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

    def __init__(self, algo, embedder, name: str = "trained", state_dim: int = OBS_DIM) -> None:
        self.algo = algo
        self.embedder = embedder
        self.name = name
        self.state_dim = state_dim
        self._z: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", embedder=None) -> "TrainedPolicy":
        from kalm.rl.algos import build_algo, load_weights
        from kalm.rl.config import TrainConfig
        from kalm.rl.embed import make_embedder

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
        algo = build_algo(cfg, int(meta["observation_size"]), int(meta["action_size"]),
                          discrete=bool(meta.get("discrete", True)), device=device)
        load_weights(algo, weights)
        emb = embedder if embedder is not None else make_embedder(meta["embedder"])
        if emb.dim != int(meta["goal_dim"]):
            raise ValueError(f"embedder {emb.name} gives {emb.dim}-d vectors but the policy was "
                             f"trained on {meta['goal_dim']}-d ones")
        run = folder.parent if folder.name == "policy" else folder
        return cls(algo, emb, name=f"{meta['algo']}:{run.name}")

    def goal_vector(self, text: str) -> np.ndarray:
        return self.embedder.embed([text])[0]

    def reset(self, goal, obs: np.ndarray, text: str = "") -> None:
        if not text:
            from kalm.goals.language import describe

            text = describe(goal)
        self._z = self.goal_vector(text)

    def act(self, obs: np.ndarray) -> int:
        if self._z is None:
            raise RuntimeError("call reset(goal, obs, text) before act(obs)")
        s = np.asarray(obs, dtype=np.float32).reshape(-1)[: self.state_dim]
        x = np.concatenate([s, self._z])[None, :].astype(np.float32)
        return int(np.asarray(self.algo.predict(x)).reshape(-1)[0])

    def act_batch(self, obs: np.ndarray, texts: list[str]) -> np.ndarray:
        """Greedy actions for many (state, text) pairs at once."""
        z = self.embedder.embed(texts)
        s = np.asarray(obs, dtype=np.float32)[:, : self.state_dim]
        return np.asarray(self.algo.predict(np.concatenate([s, z], axis=1))).reshape(-1).astype(int)
