"""Videos of imagined rollouts: the LM's states beside the simulator's replay of its actions.

The left half draws the imagined states as given (``episode_frames(mode="states")``), the right
half replays the same actions in the simulator from ``s_0`` (``mode="simulate"``), so a reader
sees at once where the imagination and the physics part ways. Labels: "imagined", "simulator".

Headless machines need ``MUJOCO_GL=egl`` (or ``osmesa``) set before anything imports ``mujoco``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from kalm.envs.clevr import ClevrRobotEnv
from kalm.imagine.validity import ABSURD_COORD, replay_rollout
from kalm.render import DEFAULT_HEIGHT, DEFAULT_WIDTH, SceneRenderer, episode_frames, side_by_side
from kalm.video import write_mp4

__all__ = ["render_imagined", "imagined_frames", "render_examples"]


def _drawable(observations: np.ndarray) -> np.ndarray:
    """Imagined states made drawable: NaN and huge values put the ball far off the table."""
    obs = np.asarray(observations, dtype=np.float64)
    obs = np.nan_to_num(obs, nan=ABSURD_COORD, posinf=ABSURD_COORD, neginf=-ABSURD_COORD)
    return np.clip(obs, -ABSURD_COORD, ABSURD_COORD)


def imagined_frames(
    observations: np.ndarray,
    actions: Sequence[int] | np.ndarray,
    side_by_side_replay: bool = True,
    start_obs: np.ndarray | None = None,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
) -> list[np.ndarray]:
    """Frames of an imagined rollout, beside the simulator's replay when ``side_by_side_replay``."""
    obs = _drawable(observations)
    acts = np.asarray(actions, dtype=np.int64).reshape(-1)
    with SceneRenderer(width, height) as r:
        imagined = episode_frames(obs, acts, mode="states", renderer=r)
        if not side_by_side_replay:
            return imagined
        s0 = obs[0] if start_obs is None else np.asarray(start_obs, dtype=np.float64)
        env = ClevrRobotEnv()
        try:
            replayed = replay_rollout(env, s0, acts)
        finally:
            env.close()
        simulated = episode_frames(replayed, acts, mode="simulate", renderer=r)
    return side_by_side(imagined, simulated, labels=("imagined", "simulator"))


def render_imagined(
    observations: np.ndarray,
    actions: Sequence[int] | np.ndarray,
    path: str | Path,
    side_by_side_replay: bool = True,
    start_obs: np.ndarray | None = None,
    fps: float = 10,
) -> Path:
    """Write an MP4 of an imagined rollout (beside the simulator's replay); returns the path."""
    return write_mp4(imagined_frames(observations, actions, side_by_side_replay, start_obs), path,
                     fps=fps)


def render_examples(dataset, folder: str | Path, per_category: int = 2,
                    side_by_side_replay: bool = True) -> list[Path]:
    """MP4s of the first ``per_category`` rollouts of each category of an imagined dataset.

    Files: ``{folder}/{category}_{index:05d}_{match|nomatch}.mp4``.
    """
    folder = Path(folder)
    counts: dict[str, int] = {}
    paths = []
    for j, ep in enumerate(dataset.episodes):
        if counts.get(ep.category, 0) >= per_category:
            continue
        counts[ep.category] = counts.get(ep.category, 0) + 1
        index = int(ep.info.get("index", j))
        name = f"{ep.category}_{index:05d}_{'match' if ep.success else 'nomatch'}.mp4"
        paths.append(render_imagined(ep.observations, ep.actions, folder / name,
                                     side_by_side_replay=side_by_side_replay))
    return paths
