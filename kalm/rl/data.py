"""Training data of offline RL: real and imagined episodes as flat transition tables, and a sampler
that mixes them in a fixed ratio in every batch.

A :class:`TransitionTable` holds, per transition, the state (the environment's: 10-d on CLEVR,
91-d on Meta-World), action (an int of a discrete action space, or a float vector of a continuous
one, clipped to the action spec's [low, high]), reward, next state, terminal flag and the index
of its episode's goal text; ``goal_vectors`` (one embedding per
distinct text) are attached at sampling time, so the observation the algorithm sees is
``concat(state, z_text)`` -- exactly the rows of ``kalm.data.episodes.to_d3rlpy(dataset,
goal_features=Z)`` and the transitions d3rlpy's ``BasicTransitionPicker`` makes of them (the
next observation of a terminal transition is all zeros; a timed-out episode's last transition
keeps its true next observation). The tests check this equality. Storing states and goal indices
instead of ``(N, 10 + k)`` observations keeps 400k transitions with 384-d embeddings small, and
sampling is vectorised (d3rlpy's replay buffers pick transitions one by one in Python).

:class:`MixedSampler` draws ``round(ratio * batch)`` imagined transitions (the fractional part by
a coin flip, so the expectation is exact) and the rest real ones, uniformly within each source.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kalm.data.episodes import OBS_DIM, Dataset, DatasetError, Episode, load_dataset
from kalm.envs.base import ActionSpec

__all__ = [
    "TransitionTable",
    "MixedSampler",
    "TrajectorySampler",
    "load_real",
    "load_imagined_sources",
    "filter_imagined",
    "file_fingerprint",
]


def file_fingerprint(path: str | Path) -> str:
    """SHA-1 of a file's bytes (first 16 hex digits)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_real(path: str | Path) -> Dataset:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"real dataset {path} not found; make one with "
                                "`python -m kalm collect --episodes N --out PATH`")
    return load_dataset(p)


def _imagined_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        if not (p / "imagined.npz").exists():
            raise FileNotFoundError(f"{p} holds no imagined.npz; run `python -m kalm imagine ... "
                                    f"--out {p}` (or let it finish)")
        return p / "imagined.npz"
    if not p.exists():
        raise FileNotFoundError(f"imagined rollouts {path} not found (an `imagine` run folder or "
                                "its imagined.npz)")
    return p


def _validity_from_csv(path: Path) -> dict[int, dict]:
    """validity.csv rows (as written by `imagine`) by rollout index, as RolloutValidity dicts."""
    out: dict[int, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            d: dict = {}
            for k, v in row.items():
                if v in ("", None):
                    d[k] = None
                elif v in ("True", "False"):
                    d[k] = v == "True"
                else:
                    try:
                        d[k] = json.loads(v)
                    except ValueError:
                        d[k] = v
            out[int(row["index"])] = d
    return out


def load_imagined_sources(paths: Sequence[str | Path]) -> list[tuple[Path, Dataset]]:
    """Each imagined source (run folder or .npz) as (file, dataset), with every episode's
    validity in ``info["validity"]`` (read from ``validity.csv`` beside the file when missing)."""
    out = []
    for path in paths:
        f = _imagined_file(path)
        ds = load_dataset(f)
        if any("validity" not in ep.info for ep in ds.episodes):
            csv_path = f.parent / "validity.csv"
            rows = _validity_from_csv(csv_path) if csv_path.exists() else {}
            for ep in ds.episodes:
                if "validity" not in ep.info and ep.info.get("index") in rows:
                    ep.info["validity"] = rows[ep.info["index"]]
        out.append((f, ds))
    return out


def filter_imagined(episodes: Sequence[Episode], require: Sequence[str]) -> tuple[list[Episode], dict]:
    """Episodes usable for training: non-empty, finite, and (with ``require``) passing the
    validity checks via ``kalm.imagine.validity.filter_rollouts``. Returns (kept, counts)."""
    counts = {"imagined_episodes": len(episodes), "dropped_empty": 0, "dropped_nonfinite": 0,
              "dropped_filter": 0}
    usable = []
    for ep in episodes:
        if ep.length == 0:
            counts["dropped_empty"] += 1
        elif not (np.isfinite(ep.observations).all() and np.isfinite(ep.rewards).all()
                  and np.isfinite(ep.rewards_sparse).all()):
            counts["dropped_nonfinite"] += 1
        else:
            usable.append(ep)
    if require:
        from kalm.imagine.validity import RolloutValidity, filter_rollouts

        missing = sum("validity" not in ep.info for ep in usable)
        if missing:
            raise DatasetError(f"{missing} imagined rollouts carry no validity checks, so they "
                               "cannot be filtered; use --filter none or rerun `imagine`")
        vs = [RolloutValidity.from_dict(ep.info["validity"]) for ep in usable]
        kept = filter_rollouts(usable, vs, require=list(require))
        counts["dropped_filter"] = len(usable) - len(kept)
        usable = kept
    counts["kept"] = len(usable)
    return usable, counts


@dataclass
class TransitionTable:
    """Flat per-transition arrays of some episodes (see the module docstring)."""

    states: np.ndarray        # float32 (N, d)
    actions: np.ndarray       # int64 (N,) discrete; float32 (N, k) continuous
    rewards: np.ndarray       # float32 (N,)
    next_states: np.ndarray   # float32 (N, d); zeros where terminal
    next_actions: np.ndarray  # like actions
    terminals: np.ndarray     # float32 (N,)
    goal_ids: np.ndarray      # int64 (N,): row of the goal's embedding
    steps: np.ndarray | None = None          # int64 (N,): the transition's step in its episode
    returns_to_go: np.ndarray | None = None  # float32 (N,): its reward plus the episode's later ones

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def discrete(self) -> bool:
        return self.actions.ndim == 1

    @classmethod
    def from_episodes(cls, episodes: Sequence[Episode], goal_ids: Sequence[int],
                      reward: str = "dense", state_dim: int = OBS_DIM,
                      action: ActionSpec | None = None) -> "TransitionTable":
        """The transitions of ``episodes``; ``action``: the action spec (default CLEVR-Robot's
        Discrete(40)); continuous actions are clipped to its [low, high]."""
        if reward not in ("dense", "sparse"):
            raise ValueError(f"reward must be 'dense' or 'sparse'; got {reward!r}")
        discrete = action is None or action.discrete
        a_dtype = np.int64 if discrete else np.float32
        a_tail: tuple[int, ...] = () if discrete else (action.size,)  # type: ignore[union-attr]
        cols: dict[str, list[np.ndarray]] = {k: [] for k in (
            "states", "actions", "rewards", "next_states", "next_actions", "terminals", "goal_ids",
            "steps", "returns_to_go")}
        for ep, g in zip(episodes, goal_ids):
            t = ep.length
            if t == 0:
                continue
            if ep.observations.shape[1] != state_dim:
                raise DatasetError(f"an episode has {ep.observations.shape[1]}-d states; this "
                                   f"environment's are {state_dim}-d")
            acts = np.asarray(ep.actions, dtype=a_dtype)
            if acts.shape[1:] != a_tail:
                raise DatasetError(f"an episode's actions have shape {acts.shape[1:]} each; this "
                                   f"environment's have {a_tail}")
            if not discrete:
                acts = np.clip(acts, action.low, action.high)  # type: ignore[union-attr]
            terminal = bool(ep.terminals[-1])
            nxt = ep.observations[1 : t + 1].copy()
            term = np.zeros(t, dtype=np.float32)
            if terminal:
                nxt[-1] = 0.0
                term[-1] = 1.0
            cols["states"].append(ep.observations[:t])
            cols["actions"].append(acts)
            rew = np.asarray(ep.rewards if reward == "dense" else ep.rewards_sparse, np.float64)
            cols["rewards"].append(rew)
            cols["steps"].append(np.arange(t, dtype=np.int64))
            cols["returns_to_go"].append(np.cumsum(rew[::-1])[::-1])
            cols["next_states"].append(nxt)
            cols["next_actions"].append(np.concatenate([acts[1:], np.zeros((1, *a_tail), a_dtype)]))
            cols["terminals"].append(term)
            cols["goal_ids"].append(np.full(t, g, dtype=np.int64))
        if not cols["actions"]:
            return cls(np.zeros((0, state_dim), np.float32), np.zeros((0, *a_tail), a_dtype),
                       np.zeros(0, np.float32), np.zeros((0, state_dim), np.float32),
                       np.zeros((0, *a_tail), a_dtype), np.zeros(0, np.float32),
                       np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        return cls(
            states=np.concatenate(cols["states"]).astype(np.float32),
            actions=np.concatenate(cols["actions"]).astype(a_dtype),
            rewards=np.concatenate(cols["rewards"]).astype(np.float32),
            next_states=np.concatenate(cols["next_states"]).astype(np.float32),
            next_actions=np.concatenate(cols["next_actions"]).astype(a_dtype),
            terminals=np.concatenate(cols["terminals"]).astype(np.float32),
            goal_ids=np.concatenate(cols["goal_ids"]),
            steps=np.concatenate(cols["steps"]),
            returns_to_go=np.concatenate(cols["returns_to_go"]).astype(np.float32),
        )

    def episode_returns(self) -> np.ndarray:
        """Each episode's return (its first transition's return to go)."""
        if self.steps is None or self.returns_to_go is None:
            raise ValueError("this table was built without episode steps")
        return self.returns_to_go[self.steps == 0]


class MixedSampler:
    """Mini-batches with a fixed share of imagined transitions (see the module docstring)."""

    def __init__(self, real: TransitionTable, imagined: TransitionTable | None,
                 goal_vectors: np.ndarray, imagined_ratio: float = 0.5, seed: int = 0) -> None:
        if len(real) == 0:
            raise DatasetError("the real dataset has no transitions to learn from")
        self.real = real
        self.imagined = imagined if imagined is not None and len(imagined) else None
        if self.imagined is not None and (
                self.imagined.states.shape[1:] != real.states.shape[1:]
                or self.imagined.actions.shape[1:] != real.actions.shape[1:]):
            raise DatasetError("the imagined transitions' states or actions do not match the "
                               "real ones' (another environment?)")
        self.ratio = float(imagined_ratio) if self.imagined is not None else 0.0
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"imagined_ratio must be in [0, 1]; got {imagined_ratio}")
        self.goal_vectors = np.asarray(goal_vectors, dtype=np.float32)
        self.rng = np.random.default_rng(seed)
        self.last_imagined = 0

    @property
    def observation_size(self) -> int:
        return int(self.real.states.shape[1]) + self.goal_vectors.shape[1]

    def _n_imagined(self, batch_size: int) -> int:
        if self.imagined is None:
            return 0
        x = self.ratio * batch_size
        n = int(np.floor(x))
        if self.rng.random() < x - n:
            n += 1
        return n

    def _draw(self, batch_size: int) -> list[tuple[TransitionTable, np.ndarray, bool]]:
        """(table, row indices, imagined?) of one batch: the real rows, then the imagined ones."""
        n_im = self._n_imagined(batch_size)
        parts = []
        if batch_size - n_im:
            parts.append((self.real, self.rng.integers(0, len(self.real), batch_size - n_im), False))
        if n_im:
            assert self.imagined is not None
            parts.append((self.imagined, self.rng.integers(0, len(self.imagined), n_im), True))
        self.last_imagined = n_im
        return parts

    def sample_arrays(self, batch_size: int) -> dict[str, np.ndarray]:
        """One batch as arrays (``observations`` ..., plus ``imagined``: bool per row)."""
        parts = self._draw(batch_size)
        z = self.goal_vectors

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(t, name)[i] for t, i, _ in parts])

        goal = z[cat("goal_ids")]
        term = cat("terminals")
        next_goal = goal * (1.0 - term)[:, None]  # d3rlpy: a terminal's next observation is zeros
        acts, next_acts = cat("actions").astype(np.float32), cat("next_actions").astype(np.float32)
        if self.real.discrete:  # d3rlpy: discrete actions as a (B, 1) column
            acts, next_acts = acts[:, None], next_acts[:, None]
        return {
            "observations": np.concatenate([cat("states"), goal], axis=1).astype(np.float32),
            "actions": acts,
            "rewards": cat("rewards").astype(np.float32)[:, None],
            "next_observations": np.concatenate([cat("next_states"), next_goal], axis=1)
            .astype(np.float32),
            "next_actions": next_acts,
            "terminals": term.astype(np.float32)[:, None],
            "imagined": np.concatenate([np.full(len(i), im) for _, i, im in parts]),
        }

    def sample(self, batch_size: int):
        """One batch as a d3rlpy ``TransitionMiniBatch``."""
        from d3rlpy.dataset import TransitionMiniBatch

        a = self.sample_arrays(batch_size)
        return TransitionMiniBatch(
            observations=a["observations"], actions=a["actions"], rewards=a["rewards"],
            next_observations=a["next_observations"], next_actions=a["next_actions"],
            terminals=a["terminals"], intervals=np.ones_like(a["terminals"]), transitions=[],
        )


class TrajectorySampler(MixedSampler):
    """Mini-batches of episode windows for a Decision Transformer: each row is the ``context``
    steps ending at a uniformly drawn transition (the same real:imagined share of rows as
    :class:`MixedSampler`), padded at the front within its episode, as d3rlpy's
    ``BasicTrajectorySlicer`` cuts them: observations ``[state | z]``, actions, rewards, returns
    to go, terminals, timesteps (1-based; 0 on padding) and masks (1 on real steps)."""

    def __init__(self, real: TransitionTable, imagined: TransitionTable | None,
                 goal_vectors: np.ndarray, imagined_ratio: float = 0.5, seed: int = 0,
                 context: int = 10) -> None:
        super().__init__(real, imagined, goal_vectors, imagined_ratio, seed)
        if context < 1:
            raise ValueError(f"context must be at least 1; got {context}")
        for t in (self.real, self.imagined):
            if t is not None and (t.steps is None or t.returns_to_go is None):
                raise ValueError("a Decision Transformer needs tables built by "
                                 "TransitionTable.from_episodes (episode steps)")
        self.context = int(context)

    def _windows(self, table: TransitionTable, ends: np.ndarray) -> dict[str, np.ndarray]:
        L = self.context
        offs = np.arange(-L + 1, 1)                         # (L,): oldest first
        idx = ends[:, None] + offs[None, :]                 # (B, L) rows of the table
        start = ends - table.steps[ends]                    # each window's episode start
        valid = idx >= start[:, None]
        idx = np.where(valid, idx, ends[:, None])           # padding reads a real row, then zeroed
        m = valid.astype(np.float32)
        z = self.goal_vectors[table.goal_ids[idx]]
        obs = np.concatenate([table.states[idx], z], axis=2) * m[..., None]
        acts = table.actions[idx].astype(np.float32)
        acts = (acts * m) if table.discrete else acts * m[..., None]
        if table.discrete:
            acts = acts[..., None]
        return {
            "observations": obs.astype(np.float32),
            "actions": acts.astype(np.float32),
            "rewards": (table.rewards[idx] * m)[..., None].astype(np.float32),
            "returns_to_go": (table.returns_to_go[idx] * m)[..., None].astype(np.float32),
            "terminals": (table.terminals[idx] * m)[..., None].astype(np.float32),
            "timesteps": ((table.steps[idx] + 1) * m).astype(np.float32),
            "masks": m,
        }

    def sample_arrays(self, batch_size: int) -> dict[str, np.ndarray]:
        """One batch of windows as arrays (``(B, context, ...)``; ``imagined``: bool per row)."""
        parts = self._draw(batch_size)
        wins = [self._windows(t, i) for t, i, _ in parts]
        out = {k: np.concatenate([w[k] for w in wins]) for k in wins[0]}
        out["imagined"] = np.concatenate([np.full(len(i), im) for _, i, im in parts])
        return out

    def sample(self, batch_size: int):
        """One batch as a d3rlpy ``TrajectoryMiniBatch``."""
        from d3rlpy.dataset import TrajectoryMiniBatch

        a = self.sample_arrays(batch_size)
        return TrajectoryMiniBatch(
            observations=a["observations"], actions=a["actions"], rewards=a["rewards"],
            returns_to_go=a["returns_to_go"], terminals=a["terminals"],
            timesteps=a["timesteps"], masks=a["masks"], length=self.context)
