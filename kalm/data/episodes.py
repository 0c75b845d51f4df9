"""The episode format of the offline data, and dataset io (one ``.npz`` file per dataset).

An :class:`Episode` is one goal-reaching rollout: the instruction text, the goal it means (its
JSON form, see ``kalm.goals.spec``), the observations before and after every push, the actions,
both reward labels and the terminal flags. Rollouts collected with the expert and rollouts
imagined by the LM use the same format (``imagined`` tells them apart). A :class:`Dataset` is a
list of episodes plus a ``meta`` dict that says how it was made.

File format (``save_dataset`` / ``load_dataset``)
--------------------------------------------------
One ``.npz`` file written by ``np.savez_compressed``; it holds no pickled objects (it is read with
``allow_pickle=False``). With ``E`` episodes of lengths ``T_e`` and ``N = sum(T_e)`` transitions:

=====================  ===================  =====================================================
key                    dtype, shape         meaning
=====================  ===================  =====================================================
``meta_json``          uint8 (bytes,)       UTF-8 JSON object: ``format`` ("kalm-episodes"),
                                            ``format_version`` (1), ``created`` (ISO time),
                                            ``command`` and ``config`` of the run that made it,
                                            ``env`` (the environment: d = its state size, 10
                                            for CLEVR-Robot, the default when absent),
                                            and any other keys the maker adds
``episodes_json``      uint8 (bytes,)       UTF-8 JSON list, one object per episode: ``text``,
                                            ``goal`` (goal spec dict), ``category``, ``seed``
                                            (the env reset seed), ``success``, ``imagined``,
                                            ``info`` (free-form JSON object)
``observations``       float32 (N + E, d)   every episode's ``T_e + 1`` observations (the final
                                            one included), episodes one after another
``actions``            int64 (N,)           Discrete(40) actions ``ball * 8 + direction``
                       or float32 (N, k)    (continuous environments: Meta-World's k = 4)
``rewards``            float32 (N,)         dense reward of each transition
``rewards_sparse``     float32 (N,)         sparse reward (1 on success, else 0; see the spec)
``terminals``          bool (N,)            True at the step where the goal was met (only an
                                            episode's last step can be terminal)
``episode_lengths``    int64 (E,)           ``T_e``
``episode_offsets``    int64 (E,)           index of each episode's first transition in the
                                            per-transition arrays (its first observation is at
                                            ``episode_offsets[e] + e``)
=====================  ===================  =====================================================

Writes are atomic: the file is written to a hidden temporary file in the same folder
(``.{name}.tmp-{pid}-{token}``), flushed and fsynced, then renamed over the target, so a reader
sees either the previous file or the complete new one. ``load_dataset`` checks the format name
and version and every array's shape, and raises :class:`DatasetError` with a message that says
what to do on a missing, truncated or corrupt file.

Offline RL with d3rlpy
----------------------
``to_d3rlpy(dataset)`` builds a ``d3rlpy.dataset.MDPDataset`` (discrete actions, 40 of them).
Every episode gives exactly ``T_e`` transitions: an episode that met its goal ends with a
terminal step (d3rlpy does not bootstrap past it); an episode cut by the horizon gets its final
observation appended as one padding row (action 0, reward 0) that carries the timeout flag, so
its last real transition keeps its true next observation.

Goal conditioning: the observation alone does not say which goal is pursued. A later stage
(``kalm.policy``) embeds each episode's ``text`` (or goal) into a vector ``z_e`` and passes
``to_d3rlpy(dataset, goal_features=Z)`` with ``Z`` of shape ``(E, k)``: every observation row of
episode ``e`` (padding row included) becomes ``concat(obs, z_e)``, of size ``10 + k``; a policy
then acts on ``concat(obs, embed(goal text))`` at evaluation time.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

if TYPE_CHECKING:  # d3rlpy is slow to import; to_d3rlpy imports it when called.
    import d3rlpy

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OBS_DIM",
    "N_ACTIONS",
    "DatasetError",
    "Episode",
    "Dataset",
    "make_meta",
    "save_dataset",
    "load_dataset",
    "atomic_write",
    "to_d3rlpy",
    "concat_datasets",
    "dataset_summary",
]

FORMAT_NAME = "kalm-episodes"
FORMAT_VERSION = 1
# Kept equal to kalm.envs.clevr (not imported: reading a dataset needs no physics engine).
OBS_DIM = 10
N_ACTIONS = 40

_ARRAY_KEYS = (
    "observations",
    "actions",
    "rewards",
    "rewards_sparse",
    "terminals",
    "episode_lengths",
    "episode_offsets",
)
_JSON_KEYS = ("meta_json", "episodes_json")
_EPISODE_JSON_KEYS = ("text", "goal", "category", "seed", "success", "imagined", "info")
_REMEDY = "re-run `python -m kalm collect ...` to make it again"
DEFAULT_ENV = "clevr"


def _env(name: str):
    """The environment's interface object (its spaces; no simulator is built)."""
    from kalm.envs import get_env

    return get_env(name)


class DatasetError(ValueError):
    """A dataset (file or object) that cannot be used; the message says what is wrong."""


# --------------------------------------------------------------------------------------------
# Episodes and datasets
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Episode:
    """One goal-reaching rollout of ``T`` pushes (``T + 1`` observations)."""

    text: str
    """The instruction the rollout pursued."""
    goal: dict
    """The goal it means, as a goal spec dict (``goal_from_dict`` builds the goal object)."""
    category: str
    """train, rephrase, easy, hard, or custom."""
    seed: int
    """The env reset seed of the starting state (-1 when not started from a seeded reset)."""
    observations: np.ndarray
    """float32 (T + 1, 10): ball centres before each push, and the final one."""
    actions: np.ndarray
    """int64 (T,): Discrete(40) actions."""
    rewards: np.ndarray
    """float32 (T,): dense rewards."""
    rewards_sparse: np.ndarray
    """float32 (T,): sparse rewards."""
    terminals: np.ndarray
    """bool (T,): True at the step where the goal was met (the last step, if any)."""
    success: bool
    """Whether the goal was met."""
    imagined: bool = False
    """True for rollouts imagined by the LM rather than played in the env."""
    info: dict = field(default_factory=dict)
    """Free-form JSON-serialisable extras (collection index, reset tries, ...)."""
    env: str = "clevr"
    """The environment (``kalm.envs.get_env``) whose states and actions these are; a dataset
    stores it once, in ``meta["env"]``."""

    def __post_init__(self) -> None:
        spec = _env(self.env)
        obs_dim = spec.state.dim
        self.observations = np.asarray(self.observations, dtype=np.float32)
        try:
            self.actions = spec.action.check(self.actions)
        except ValueError as e:
            raise DatasetError(str(e)) from None
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.rewards_sparse = np.asarray(self.rewards_sparse, dtype=np.float32).reshape(-1)
        self.terminals = np.asarray(self.terminals, dtype=bool).reshape(-1)
        self.seed = int(self.seed)
        self.success = bool(self.success)
        self.imagined = bool(self.imagined)
        t = self.actions.shape[0]
        if self.observations.shape != (t + 1, obs_dim):
            raise DatasetError(
                f"an episode of {t} actions needs observations of shape ({t + 1}, {obs_dim}); "
                f"got {self.observations.shape}"
            )
        for name in ("rewards", "rewards_sparse", "terminals"):
            if getattr(self, name).shape != (t,):
                raise DatasetError(
                    f"an episode of {t} actions needs {name} of shape ({t},); "
                    f"got {getattr(self, name).shape}"
                )
        if t and self.terminals[:-1].any():
            raise DatasetError("only an episode's last step can be terminal")
        if not isinstance(self.goal, dict) or "kind" not in self.goal:
            raise DatasetError(f"an episode's goal must be a goal spec dict; got {self.goal!r}")
        if not isinstance(self.info, dict):
            raise DatasetError(f"an episode's info must be a dict; got {type(self.info).__name__}")

    @property
    def length(self) -> int:
        """Number of pushes ``T``."""
        return int(self.actions.shape[0])

    @property
    def timeouts(self) -> np.ndarray:
        """bool (T,): True at the last step when the episode ended without meeting its goal."""
        out = np.zeros(self.length, dtype=bool)
        if self.length and not self.terminals[-1]:
            out[-1] = True
        return out

    def goal_object(self):
        """The goal as its environment's goal object (to judge observations with)."""
        return _env(self.env).goal_from_dict(self.goal)

    def header(self) -> dict:
        """The episode's JSON fields (everything but the arrays)."""
        return {
            "text": self.text,
            "goal": self.goal,
            "category": self.category,
            "seed": self.seed,
            "success": self.success,
            "imagined": self.imagined,
            "info": self.info,
        }


def make_meta(**extra: Any) -> dict:
    """A meta dict with the format name and version and the creation time, plus ``extra``."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


@dataclass
class Dataset:
    """Episodes plus ``meta`` (format version, creation time, the command and config)."""

    episodes: list[Episode] = field(default_factory=list)
    meta: dict = field(default_factory=make_meta)

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]

    @property
    def env(self) -> str:
        """The environment of the episodes (``meta["env"]``; CLEVR-Robot for older files)."""
        if self.episodes:
            return self.episodes[0].env
        return str(self.meta.get("env", DEFAULT_ENV))

    @property
    def n_transitions(self) -> int:
        return sum(ep.length for ep in self.episodes)


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _json_bytes(value: Any) -> np.ndarray:
    text = json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=True)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _to_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    eps = dataset.episodes
    env_name = dataset.env
    if any(ep.env != env_name for ep in eps):
        names = sorted({ep.env for ep in eps})
        raise DatasetError(f"a dataset holds one environment's episodes; got {', '.join(names)}")
    spec = _env(env_name)
    # Written for every environment but the default, so CLEVR-Robot files read as before.
    meta = dataset.meta if env_name == DEFAULT_ENV else {**dataset.meta, "env": env_name}
    lengths = np.array([ep.length for ep in eps], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if eps else lengths

    def cat(name: str, dtype: Any, tail: tuple[int, ...] = ()) -> np.ndarray:
        if not eps:
            return np.zeros((0, *tail), dtype=dtype)
        return np.concatenate([getattr(ep, name) for ep in eps]).astype(dtype, copy=False)

    try:
        episodes_json = _json_bytes([ep.header() for ep in eps])
        meta_json = _json_bytes(meta)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"episode info and meta must be JSON-serialisable: {e}") from e
    return {
        "meta_json": meta_json,
        "episodes_json": episodes_json,
        "observations": cat("observations", np.float32, (spec.state.dim,)),
        "actions": cat("actions", np.int64 if spec.action.discrete else np.float32, spec.action.shape),
        "rewards": cat("rewards", np.float32),
        "rewards_sparse": cat("rewards_sparse", np.float32),
        "terminals": cat("terminals", bool),
        "episode_lengths": lengths,
        "episode_offsets": offsets,
    }


def atomic_write(path: str | Path, write: Any) -> Path:
    """Call ``write(f)`` on a binary file object, then put the file at ``path`` atomically.

    The bytes go to a hidden temporary file in the same folder, are flushed and fsynced, and the
    file is renamed over ``path``; if anything goes wrong (including KeyboardInterrupt) the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (best effort: not every platform allows it)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def save_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` to one compressed ``.npz`` file at ``path``, atomically."""
    arrays = _to_arrays(dataset)
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_json(arrays: dict[str, np.ndarray], key: str, path: Path) -> Any:
    raw = arrays[key]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise DatasetError(f"{path} is not a kalm dataset ({key} is not UTF-8 bytes); {_REMEDY}")
    try:
        return json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path} is corrupt ({key} is not valid JSON: {e}); {_REMEDY}") from None


def _expect(path: Path, name: str, a: np.ndarray, shape: tuple, kinds: str) -> None:
    if a.shape != shape or a.dtype.kind not in kinds:
        raise DatasetError(
            f"{path} is corrupt: {name} has shape {a.shape} and dtype {a.dtype}, expected shape "
            f"{shape}; {_REMEDY}"
        )


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset written by ``save_dataset``; raises DatasetError for anything unusable."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset file; make it with `python -m kalm collect`")
    if path.is_dir():
        raise DatasetError(f"{path} is a folder, not a dataset file (.npz)")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DatasetError(f"{path} is not a kalm dataset (a single .npy array); {_REMEDY}")
        with npz:
            missing = [k for k in (*_JSON_KEYS, *_ARRAY_KEYS) if k not in npz.files]
            if missing:
                raise DatasetError(
                    f"{path} is not a kalm dataset (missing key {missing[0]}); {_REMEDY}"
                )
            arrays = {k: npz[k] for k in (*_JSON_KEYS, *_ARRAY_KEYS)}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(
            f"{path} is not a readable kalm dataset (truncated or corrupt: "
            f"{type(e).__name__}: {e}); {_REMEDY}"
        ) from None

    meta = _read_json(arrays, "meta_json", path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetError(
            f"{path} is not a kalm dataset (format is not {FORMAT_NAME!r}); {_REMEDY}"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise DatasetError(
            f"{path} has dataset format version {version!r}; this kalm reads version "
            f"{FORMAT_VERSION}"
            + ("; update kalm to read it" if newer else f"; {_REMEDY}")
        )
    headers = _read_json(arrays, "episodes_json", path)
    if not isinstance(headers, list):
        raise DatasetError(f"{path} is corrupt (episodes_json is not a list); {_REMEDY}")

    e = len(headers)
    lengths, offsets = arrays["episode_lengths"], arrays["episode_offsets"]
    _expect(path, "episode_lengths", lengths, (e,), "iu")
    _expect(path, "episode_offsets", offsets, (e,), "iu")
    n = int(lengths.sum())
    if (lengths < 0).any() or not np.array_equal(
        offsets, np.concatenate([[0], np.cumsum(lengths)[:-1]]) if e else offsets
    ):
        raise DatasetError(f"{path} is corrupt (episode offsets and lengths disagree); {_REMEDY}")
    env_name = meta.get("env", DEFAULT_ENV)
    try:
        spec = _env(env_name)
    except ValueError as err:
        raise DatasetError(f"{path} was made in an environment this kalm does not have: {err}") from None
    _expect(path, "observations", arrays["observations"], (n + e, spec.state.dim), "f")
    _expect(path, "actions", arrays["actions"], (n, *spec.action.shape), "iu" if spec.action.discrete else "f")
    _expect(path, "rewards", arrays["rewards"], (n,), "f")
    _expect(path, "rewards_sparse", arrays["rewards_sparse"], (n,), "f")
    _expect(path, "terminals", arrays["terminals"], (n,), "b")

    episodes: list[Episode] = []
    for i, h in enumerate(headers):
        if not isinstance(h, dict) or any(k not in h for k in _EPISODE_JSON_KEYS):
            raise DatasetError(
                f"{path} is corrupt (episode {i} lacks its text/goal/...); {_REMEDY}"
            )
        s, t = int(offsets[i]), int(lengths[i])
        try:
            episodes.append(
                Episode(
                    text=h["text"],
                    goal=h["goal"],
                    category=h["category"],
                    seed=h["seed"],
                    observations=arrays["observations"][s + i : s + i + t + 1],
                    actions=arrays["actions"][s : s + t],
                    rewards=arrays["rewards"][s : s + t],
                    rewards_sparse=arrays["rewards_sparse"][s : s + t],
                    terminals=arrays["terminals"][s : s + t],
                    success=h["success"],
                    imagined=h["imagined"],
                    info=h["info"],
                    env=env_name,
                )
            )
        except (DatasetError, TypeError, ValueError) as err:
            raise DatasetError(f"{path} is corrupt (episode {i}: {err}); {_REMEDY}") from None
    return Dataset(episodes=episodes, meta=meta)


# --------------------------------------------------------------------------------------------
# Offline RL, merging, statistics
# --------------------------------------------------------------------------------------------


def to_d3rlpy(
    dataset: Dataset, reward: str = "dense", goal_features: np.ndarray | None = None
) -> "d3rlpy.dataset.MDPDataset":
    """The dataset as a d3rlpy ``MDPDataset`` (discrete or continuous, as its environment's).

    ``reward``: "dense" or "sparse". ``goal_features``: optional ``(E, k)`` array appended to
    every observation of episode ``e`` (goal conditioning; see the module docstring). Episodes
    with no steps are skipped. Each episode gives exactly ``T_e`` d3rlpy transitions.
    """
    import d3rlpy

    if reward not in ("dense", "sparse"):
        raise ValueError(f"reward must be 'dense' or 'sparse'; got {reward!r}")
    if goal_features is not None:
        goal_features = np.asarray(goal_features, dtype=np.float32)
        if goal_features.ndim != 2 or goal_features.shape[0] != len(dataset):
            raise ValueError(
                f"goal_features must have shape ({len(dataset)}, k); got {goal_features.shape}"
            )
    spec = _env(dataset.env).action
    pad_action = np.zeros((1, *spec.shape), dtype=np.int64 if spec.discrete else np.float32)
    obs, acts, rews, terms, touts = [], [], [], [], []
    for e, ep in enumerate(dataset.episodes):
        t = ep.length
        if t == 0:
            continue
        r = ep.rewards if reward == "dense" else ep.rewards_sparse
        terminal = bool(ep.terminals[-1])
        rows = t if terminal else t + 1  # a timed-out episode keeps its final observation
        o = ep.observations[:rows]
        if goal_features is not None:
            z = np.broadcast_to(goal_features[e], (rows, goal_features.shape[1]))
            o = np.concatenate([o, z], axis=1)
        term = np.zeros(rows, dtype=np.float32)
        tout = np.zeros(rows, dtype=np.float32)
        if terminal:
            term[-1] = 1.0
            a, rr = ep.actions, r
        else:
            tout[-1] = 1.0
            a = np.concatenate([ep.actions, pad_action])
            rr = np.concatenate([r, [0.0]])
        obs.append(o)
        acts.append(a)
        rews.append(rr)
        terms.append(term)
        touts.append(tout)
    if not obs:
        raise DatasetError("the dataset has no steps to learn from (no episodes, or all empty)")
    return d3rlpy.dataset.MDPDataset(
        observations=np.concatenate(obs).astype(np.float32),
        actions=np.concatenate(acts).astype(np.int64 if spec.discrete else np.float32),
        rewards=np.concatenate(rews).astype(np.float32),
        terminals=np.concatenate(terms),
        timeouts=np.concatenate(touts),
        action_space=(d3rlpy.constants.ActionSpace.DISCRETE if spec.discrete
                      else d3rlpy.constants.ActionSpace.CONTINUOUS),
        action_size=spec.size,
    )


def concat_datasets(datasets: Iterable[Dataset], meta: dict | None = None) -> Dataset:
    """One dataset with the episodes of all ``datasets`` in order.

    The new meta is ``meta`` (or a fresh one) with the sources' metas under ``"sources"``.
    """
    datasets = list(datasets)
    out_meta = make_meta(**(meta or {}))
    if datasets:
        out_meta.setdefault("env", datasets[0].env)
    out_meta.setdefault("sources", [d.meta for d in datasets])
    return Dataset(episodes=[ep for d in datasets for ep in d.episodes], meta=out_meta)


def dataset_summary(dataset: Dataset) -> dict:
    """Counts for people: episodes, transitions, success rate, mean length, and breakdowns."""
    eps = dataset.episodes
    n = len(eps)
    lengths = np.array([ep.length for ep in eps], dtype=np.float64)
    return {
        "episodes": n,
        "transitions": int(lengths.sum()),
        "success_rate": float(np.mean([ep.success for ep in eps])) if n else 0.0,
        "mean_length": float(lengths.mean()) if n else 0.0,
        "mean_return_dense": float(np.mean([ep.rewards.sum() for ep in eps])) if n else 0.0,
        "imagined": sum(ep.imagined for ep in eps),
        "categories": dict(sorted(Counter(ep.category for ep in eps).items())),
        "goal_kinds": dict(sorted(Counter(str(ep.goal.get("kind")) for ep in eps).items())),
    }
