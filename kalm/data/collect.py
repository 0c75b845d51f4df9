"""Collect an offline dataset with the scripted expert: goal texts, rollouts, rewards.

Episode ``i`` of a run depends only on ``(seed, i)`` (and the code), never on the episodes before
it, so a run can be cut anywhere and resumed, or extended to more episodes, and gives exactly the
dataset an uninterrupted run gives:

- the goal: by default one of the 80 relation configurations drawn uniformly, phrased with a
  training phrasing (``describe(goal, rng, style)``), category = ``style`` ("train"); with
  ``suite`` the run cycles through ``suite_items(suite, seed)`` (oracle data of that category);
- the start: an env reset with a seed derived from ``(seed, i, attempt)``, redrawn (at most
  ``MAX_RESET_TRIES`` times) until the goal does not already hold;
- the rollout: ``ExpertPolicy(noise=noise)`` seeded from ``(seed, i)``, until the goal is met
  (terminated) or the goal's horizon ends it (50 steps, 1 for ``move`` goals).

While it runs, every ``chunk`` new episodes are saved (atomically) as one part file in the
folder ``{out}.partial/`` (e.g. ``train.npz.partial/episodes-0000000-0000099.npz``); an
interruption (Ctrl-C, an error) saves the episodes collected since the last part before it
propagates. A later call with the same seed, suite, noise and style resumes from those parts
(episode counts may differ: the first episodes are the same). At the end the whole dataset is
saved atomically to ``out`` and the partial folder is removed. Parts are separate files so that a
long run writes each episode once, not the whole growing dataset every ``chunk`` episodes.
"""

from __future__ import annotations

import re
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kalm.data.episodes import (
    Dataset,
    DatasetError,
    Episode,
    load_dataset,
    make_meta,
    save_dataset,
)
from kalm.envs import DEFAULT_ENV, Environment, get_env

__all__ = [
    "MAX_RESET_TRIES",
    "CollectError",
    "collect_dataset",
    "collect_episode",
    "episode_goal",
    "episode_reset_seed",
    "partial_dir",
    "load_partial",
]

# A start state where the goal already holds is redrawn; relation goals hold at a random start a
# few percent of the time, so this bound is only reached by a goal that (nearly) always holds.
MAX_RESET_TRIES = 100
# Config keys that decide what episode i is (so a partial run can be resumed with them).
_EPISODE_KEYS = ("seed", "suite", "noise", "style", "expert", "env")
# Keys added later: parts written before them hold these values.
_KEY_DEFAULTS = {"expert": "greedy", "env": DEFAULT_ENV}
# The expert's name in the config of an environment with a single expert behaviour.
_SINGLE_EXPERT = "scripted"
_PART_RE = re.compile(r"^episodes-(\d{7})-(\d{7})\.npz$")
# Streams of the per-episode seed sequence (seed, i, stream, ...).
_GOAL_STREAM, _RESET_STREAM, _EXPERT_STREAM = 0, 1, 2


class CollectError(RuntimeError):
    """Collection cannot start or go on; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# Per-episode determinism
# --------------------------------------------------------------------------------------------


def _derived_int(*entropy: int) -> int:
    return int(np.random.SeedSequence([int(x) for x in entropy]).generate_state(1)[0])


def episode_reset_seed(seed: int, index: int, attempt: int = 0) -> int:
    """The env reset seed of episode ``index``'s ``attempt``-th start draw."""
    return _derived_int(seed, index, _RESET_STREAM, attempt)


def episode_goal(
    seed: int, index: int, items: list | None = None, style: str = "train",
    env: str | Environment = DEFAULT_ENV,
) -> tuple[Any, str, str]:
    """(goal, text, category) of episode ``index``.

    Without ``items``: the environment's training-goal draw (``Environment.sample_goal``; CLEVR:
    one of the 80 relation configurations and a ``style`` phrasing, uniformly) from a generator
    seeded with ``(seed, index)``. With ``items``: item ``index % len(items)``.
    """
    if items:
        item = items[index % len(items)]
        return item.goal, item.text, item.category
    rng = np.random.default_rng([int(seed), int(index), _GOAL_STREAM])
    goal, text = get_env(env).sample_goal(rng, style)
    return goal, text, style


def collect_episode(
    env: Any,
    expert: Any,
    goal: Any,
    text: str,
    category: str,
    seed: int,
    index: int,
) -> Episode:
    """Play one expert episode of ``goal`` in the simulator ``env`` from a seeded start where it
    does not hold yet (the episode is of the environment the simulator names: ``env.env_name``).

    ``expert`` should be freshly seeded for this episode (its noise draws are part of it).
    """
    for attempt in range(MAX_RESET_TRIES):
        reset_seed = episode_reset_seed(seed, index, attempt)
        obs, info = env.reset(seed=reset_seed, options={"goal": goal})
        if not info["success"]:
            break
    else:
        raise CollectError(
            f"the goal {goal.to_dict()} already held at {MAX_RESET_TRIES} random starts; "
            "it cannot be collected as a goal-reaching episode"
        )
    expert.reset(goal, obs)
    observations = [obs]
    actions, rewards, rewards_sparse, terminals = [], [], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = expert.act(obs)
        obs, _, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(info["reward_dense"])
        rewards_sparse.append(info["reward_sparse"])
        terminals.append(terminated)
    return Episode(
        text=text,
        goal=goal.to_dict(),
        category=category,
        seed=reset_seed,
        observations=np.stack(observations),
        actions=np.array(actions),
        rewards=np.array(rewards),
        rewards_sparse=np.array(rewards_sparse),
        terminals=np.array(terminals),
        success=bool(terminated),
        info={"index": index, "reset_tries": attempt + 1},
        env=getattr(env, "env_name", DEFAULT_ENV),
    )


# --------------------------------------------------------------------------------------------
# Partial runs
# --------------------------------------------------------------------------------------------


def partial_dir(out: str | Path) -> Path:
    """The folder of part files of an unfinished run that will write ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _part_files(folder: Path) -> list[tuple[int, int, Path]]:
    if not folder.is_dir():
        return []
    parts = []
    for p in folder.iterdir():
        m = _PART_RE.match(p.name)
        if m:
            parts.append((int(m.group(1)), int(m.group(2)), p))
    return sorted(parts)


def _remove_partial(folder: Path) -> None:
    """Remove the part files (and the folder if nothing else is in it)."""
    for _, _, p in _part_files(folder):
        p.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass


def _same_episodes(a: dict, b: dict) -> bool:
    return all(a.get(k, _KEY_DEFAULTS.get(k)) == b.get(k, _KEY_DEFAULTS.get(k)) for k in _EPISODE_KEYS)


def load_partial(out: str | Path, config: dict | None = None) -> list[Episode]:
    """The episodes ``0 .. n-1`` saved so far by an unfinished run that will write ``out``.

    With ``config``, raises CollectError when the parts were made with another seed, suite,
    noise or style. Parts after a gap or an unreadable part are ignored (they are made again).
    """
    folder = partial_dir(out)
    episodes: list[Episode] = []
    for start, end, path in _part_files(folder):
        if start < len(episodes):  # overlaps what is loaded (a stale part): skip it
            continue
        if start > len(episodes):  # a gap: what follows is made again
            break
        try:
            part = load_dataset(path)
        except DatasetError as e:
            warnings.warn(f"ignoring an unreadable part of the unfinished run: {e}", stacklevel=2)
            break
        part_config = part.meta.get("config", {})
        if config is not None and not _same_episodes(part_config, config):
            mine = {k: config.get(k) for k in _EPISODE_KEYS}
            theirs = {k: part_config.get(k) for k in _EPISODE_KEYS}
            raise CollectError(
                f"{folder} holds an unfinished run made with {theirs}, not {mine}; "
                "re-run with those settings to resume it, or pass overwrite=True "
                "(--overwrite) to discard it"
            )
        indices = [ep.info.get("index") for ep in part.episodes]
        if indices != list(range(start, end + 1)):
            warnings.warn(f"ignoring {path}: its episodes are not {start}..{end}", stacklevel=2)
            break
        episodes += part.episodes
    return episodes


def _save_part(out: Path, episodes: list[Episode], config: dict) -> None:
    start = episodes[0].info["index"]
    end = episodes[-1].info["index"]
    meta = make_meta(kind="collect-part", partial=True, config=config)
    name = f"episodes-{start:07d}-{end:07d}.npz"
    save_dataset(Dataset(list(episodes), meta), partial_dir(out) / name)


# --------------------------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------------------------


def collect_dataset(
    episodes: int,
    seed: int,
    out: str | Path,
    suite: str | None = None,
    noise: float = 0.1,
    style: str = "train",
    progress: bool = True,
    chunk: int = 100,
    overwrite: bool = False,
    expert: str | None = None,
    env: str | Environment = DEFAULT_ENV,
) -> Dataset:
    """Collect ``episodes`` expert episodes and save them to ``out`` (see the module docstring).

    Resumes from ``{out}.partial/`` when it holds a run with the same seed, suite, noise and
    style. ``env``: the environment (``kalm.envs``; default CLEVR-Robot); ``expert``: one of its
    expert modes (CLEVR: greedy, direct, aim; default the first). Raises CollectError if ``out`` exists (unless ``overwrite``) or a partial run with
    other settings is in the way (``overwrite`` discards it).
    """
    out = Path(out)
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1; got {episodes}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1; got {chunk}")
    environment = get_env(env)
    if suite is not None and suite not in environment.suites:
        raise ValueError(
            f"unknown goal suite {suite!r}; valid suites: {', '.join(environment.suites)}"
        )
    if style not in environment.styles:
        raise ValueError(f"style must be one of {', '.join(environment.styles)}; got {style!r}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1]; got {noise}")
    modes = environment.expert_modes
    if expert is None:
        expert = modes[0] if modes else _SINGLE_EXPERT
    elif expert not in (modes or (_SINGLE_EXPERT,)):
        raise ValueError(
            f"expert must be one of {', '.join(modes or (_SINGLE_EXPERT,))} for "
            f"{environment.title}; got {expert!r}"
        )
    if out.exists() and not overwrite:
        raise CollectError(
            f"{out} already exists; choose another path or pass overwrite=True (--overwrite)"
        )

    config: dict[str, Any] = {
        "episodes": int(episodes),
        "seed": int(seed),
        "suite": suite,
        "noise": float(noise),
        "style": style,
        "expert": expert,
        "chunk": int(chunk),
        "env": environment.name,
    }
    try:
        done = load_partial(out, config)[:episodes]
    except CollectError:
        if not overwrite:
            raise
        _remove_partial(partial_dir(out))
        done = []

    items = environment.suite_items(suite, seed) if suite is not None else None
    sim = environment.make()
    expert_options = {"mode": expert} if modes else {}
    pending: list[Episode] = []
    n_success = sum(ep.success for ep in done)
    bar = tqdm(total=episodes, initial=len(done), desc="collect", unit="ep", disable=not progress)
    try:
        for i in range(len(done), episodes):
            goal, text, category = episode_goal(seed, i, items, style, environment)
            expert_seed = _derived_int(seed, i, _EXPERT_STREAM)
            policy = environment.expert(seed=expert_seed, noise=noise, **expert_options)
            ep = collect_episode(sim, policy, goal, text, category, seed, i)
            pending.append(ep)
            n_success += ep.success
            bar.update(1)
            bar.set_postfix(success=f"{n_success / (len(done) + len(pending)):.0%}")
            if len(pending) >= chunk and len(done) + len(pending) < episodes:
                _save_part(out, pending, config)
                done += pending
                pending = []
    except BaseException:
        if pending:  # keep what was collected since the last part
            try:
                _save_part(out, pending, config)
            except Exception as e:  # the original error matters more
                warnings.warn(f"could not save the last episodes of the unfinished run: {e}")
        raise
    finally:
        bar.close()
        sim.close()

    dataset = Dataset(
        episodes=done + pending,
        meta=make_meta(kind="collect", command=shlex.join(sys.argv), config=config,
                       **({"env": environment.name} if environment.name != DEFAULT_ENV else {})),
    )
    save_dataset(dataset, out)
    _remove_partial(partial_dir(out))
    return dataset

