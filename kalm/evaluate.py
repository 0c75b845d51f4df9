"""The evaluation harness: success per goal category, over seeded episodes shared by all policies.

Protocol (KALM's, see ``../shared/spec/clevr_robot.md``): for each category, ``episodes``
episodes; episode ``i`` takes a goal item of that category (the category's items in a seeded
order, cycled) and starts from a seeded reset whose goal does not already hold. It runs at most
the goal's horizon (50 steps; 1 for ``move`` goals) and succeeds when the goal holds at any step.
Every policy evaluated with the same ``seed`` sees exactly the same goals and initial states.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from kalm.envs import DEFAULT_ENV, Environment, get_env
from kalm.envs.base import Policy

__all__ = [
    "EpisodeRecord",
    "EvalResult",
    "episode_plan",
    "evaluate",
    "initial_state",
    "run_episode",
]

# Resets whose goal already holds are redrawn; this bounds the redraws.
_MAX_RESET_DRAWS = 1000


@dataclass
class EpisodeRecord:
    """One evaluation episode: what was asked, where it started, what happened."""

    category: str
    text: str
    goal: dict
    reset_seed: int
    success: bool
    steps: int
    actions: list = field(default_factory=list)
    """Discrete actions as ints; continuous ones as lists of floats."""
    observations: list[list[float]] | None = None
    video: str | None = None


@dataclass
class EvalResult:
    """Per-category success rates and the episodes behind them."""

    policy: str
    seed: int
    episodes_per_category: int
    categories: dict[str, dict[str, float | int]]
    episodes: list[EpisodeRecord]
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "seed": self.seed,
            "episodes_per_category": self.episodes_per_category,
            "categories": self.categories,
            "wall_time_s": round(self.wall_time_s, 3),
            "episodes": [
                {k: v for k, v in asdict(e).items() if v is not None} for e in self.episodes
            ],
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def table(self) -> str:
        """A plain-text table: category, success rate +- stderr, episodes, mean length."""
        lines = [f"{'category':<12} {'success':>16} {'episodes':>9} {'mean len':>9}"]
        for cat, m in self.categories.items():
            sr = f"{100 * m['success_rate']:.1f}% +- {100 * m['stderr']:.1f}"
            lines.append(f"{cat:<12} {sr:>16} {m['episodes']:>9} {m['mean_length']:>9.2f}")
        return "\n".join(lines)


def _category_key(category: str) -> int:
    return zlib.crc32(category.encode("utf-8"))


def episode_plan(items: Sequence[Any], episodes: int, seed: int) -> list[tuple[Any, int]]:
    """The (goal item, base reset seed) of every episode, grouped by category in first-seen order.

    Deterministic in (items, episodes, seed): the same for every policy.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1; got {episodes}")
    if not items:
        raise ValueError("no goals to evaluate")
    by_cat: dict[str, list[GoalItem]] = {}
    for it in items:
        by_cat.setdefault(it.category, []).append(it)
    plan = []
    for cat, cat_items in by_cat.items():
        ss = np.random.SeedSequence([seed, _category_key(cat)])
        rng = np.random.default_rng(ss)
        order = rng.permutation(len(cat_items))
        reset_seeds = rng.integers(0, 2**31 - 1, size=episodes)
        for i in range(episodes):
            plan.append((cat_items[order[i % len(cat_items)]], int(reset_seeds[i])))
    return plan


def initial_state(env: Any, goal: Any, base_seed: int) -> tuple[np.ndarray, int]:
    """Reset ``env`` to the first seeded state (base_seed, base_seed + 1, ...) where the goal
    does not already hold; returns (observation, the reset seed used)."""
    for k in range(_MAX_RESET_DRAWS):
        s = (base_seed + k) % (2**31 - 1)
        obs, info = env.reset(seed=s, options={"goal": goal})
        if not info.get("success", False):
            return obs, s
    raise RuntimeError(f"no initial state within {_MAX_RESET_DRAWS} draws where {goal} fails")


def _action(a: Any) -> Any:
    """An action as the simulator takes it and JSON keeps it: int, or a float vector / list."""
    if isinstance(a, (int, np.integer)) or np.ndim(a) == 0:
        return int(a)
    return np.asarray(a, dtype=np.float32).reshape(-1)


def run_episode(
    env: Any,
    policy: Policy,
    item: Any,
    base_seed: int,
    record_observations: bool = False,
    frames: list | None = None,
) -> EpisodeRecord:
    """Run one episode of ``policy`` on ``item`` from the seeded initial state, in the simulator
    ``env`` (any environment's, see ``kalm.envs.base``). ``frames``: a list to append the
    simulator's rendered frames to (``env`` made with ``render_mode="rgb_array"``)."""
    obs, reset_seed = initial_state(env, item.goal, base_seed)
    policy.reset(item.goal, np.asarray(obs, dtype=np.float64), item.text)
    actions: list = []
    observations = [env.get_obs().tolist()] if record_observations else None
    if frames is not None:
        frames.append(env.render())
    success = False
    while True:
        a = _action(policy.act(env.get_obs()))
        _, _, terminated, truncated, info = env.step(a)
        actions.append(a if isinstance(a, int) else a.tolist())
        if frames is not None:
            frames.append(env.render())
        if observations is not None:
            observations.append(env.get_obs().tolist())
        if terminated:
            success = bool(info.get("success", True))
            break
        if truncated:
            break
    return EpisodeRecord(
        category=item.category,
        text=item.text,
        goal=item.goal.to_dict(),
        reset_seed=reset_seed,
        success=success,
        steps=len(actions),
        actions=actions,
        observations=observations,
    )


def _summarise(records: Iterable[EpisodeRecord]) -> dict[str, dict[str, float | int]]:
    by_cat: dict[str, list[EpisodeRecord]] = {}
    for r in records:
        by_cat.setdefault(r.category, []).append(r)
    out: dict[str, dict[str, float | int]] = {}
    for cat, rs in by_cat.items():
        n = len(rs)
        p = sum(r.success for r in rs) / n
        out[cat] = {
            "success_rate": p,
            "episodes": n,
            "stderr": math.sqrt(p * (1 - p) / n) if n > 1 else 0.0,
            "mean_length": float(np.mean([r.steps for r in rs])),
        }
    return out


def evaluate(
    policy: Policy,
    items: Sequence[Any],
    episodes: int,
    seed: int = 0,
    video_dir: str | Path | None = None,
    videos_per_category: int = 2,
    progress: bool | Callable[[int, int], None] = False,
    env: str | Environment = DEFAULT_ENV,
) -> EvalResult:
    """Evaluate ``policy`` on ``episodes`` episodes per category of ``items`` in ``env``.

    ``env``: the environment (a ``kalm.envs`` name or object; default CLEVR-Robot).
    ``video_dir``: write an MP4 of the first ``videos_per_category`` episodes of each category.
    ``progress``: True for a tqdm bar, or a callback ``(done, total)``.
    """
    plan = episode_plan(items, episodes, seed)
    environment = get_env(env)
    trained_for = getattr(policy, "env", None)  # trained policies say their environment
    if isinstance(trained_for, str) and trained_for != environment.name:
        raise ValueError(f"policy {getattr(policy, 'name', 'policy')} was trained for "
                         f"{trained_for}, not {environment.name}; evaluate it with --env {trained_for}")
    sim = environment.make()
    # Environments whose states do not pin the whole scene are filmed as they run.
    filmed = None
    if video_dir is not None and not environment.can_set_state:
        filmed = environment.make(render_mode="rgb_array")
    records: list[EpisodeRecord] = []
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), desc=f"evaluate {getattr(policy, 'name', 'policy')}", unit="ep")
    videos_done: dict[str, int] = {}
    t0 = time.perf_counter()
    for k, (item, base_seed) in enumerate(plan):
        want_video = video_dir is not None and videos_done.get(item.category, 0) < videos_per_category
        frames: list | None = [] if want_video and filmed is not None else None
        rec = run_episode(filmed if frames is not None else sim, policy, item, base_seed,
                          record_observations=want_video, frames=frames)
        if want_video:
            from kalm.video import write_mp4

            n = videos_done.get(item.category, 0)
            videos_done[item.category] = n + 1
            path = Path(video_dir) / f"{item.category}_{n:02d}_{'success' if rec.success else 'fail'}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            if frames is None:  # drawn from the states (they carry their frame rate)
                write_mp4(environment.episode_frames(np.array(rec.observations), np.array(rec.actions)), path)
            else:  # filmed live, one frame per step
                write_mp4(frames, path, fps=environment.render_fps)
            rec.video = str(path)
            rec.observations = None
        records.append(rec)
        if bar is not None:
            bar.update(1)
            sr = np.mean([r.success for r in records])
            bar.set_postfix(success=f"{sr:.2f}")
        elif callable(progress):
            progress(k + 1, len(plan))
    if bar is not None:
        bar.close()
    sim.close()
    if filmed is not None:
        filmed.close()
    return EvalResult(
        policy=getattr(policy, "name", type(policy).__name__),
        seed=seed,
        episodes_per_category=episodes,
        categories=_summarise(records),
        episodes=records,
        wall_time_s=time.perf_counter() - t0,
    )
