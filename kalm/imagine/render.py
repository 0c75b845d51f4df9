"""Videos of imagined rollouts: the LM's states beside the simulator's replay of its actions.

The left half draws the imagined states, the right half the simulator running the same actions
(labels: "imagined", "simulator"), so a reader sees at once where the imagination and the
physics part ways. Every video is made by the rollout's environment
(``Environment.imagined_video_frames``; ``env`` below, default CLEVR-Robot):

- CLEVR-Robot (``kalm.envs.clevr.imagined``): the replay starts from ``s_0`` (the simulator can
  be set to it); each push is shown in ``VIDEO_SUBSTEP_FRAMES`` (2) frames, the pusher at its
  start point beside ``s_t``, then halfway through the push, a push every ``VIDEO_STEP_SECONDS``
  (0.4 s); the frames come from the process's shared renderer of video quality.
- Meta-World: the imagined states are *posed* in the scene (``kalm.envs.metaworld.pose``), the
  replay runs open loop from the rollout's seeded reset (``goal`` and ``seed`` are needed), one
  frame a step at the environment's ``render_fps`` (10).

Headless machines need ``MUJOCO_GL=egl`` (or ``osmesa``) set before anything imports ``mujoco``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kalm.video import Mp4Encoder, VideoFrames, write_mp4

DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 240

__all__ = [
    "PANE_LABELS",
    "VIDEO_STEP_SECONDS",
    "VIDEO_SUBSTEP_FRAMES",
    "imagined_frames",
    "imagined_video",
    "render_examples",
    "render_imagined",
]


def _env(env: Any):
    from kalm.envs import get_env

    return get_env(env or "clevr") if env is None or isinstance(env, str) else env


def _substeps(environment, substep_frames: int | None) -> int:
    if substep_frames is not None:
        return int(substep_frames)
    return int(getattr(environment, "imagined_substep_frames", 1))


def imagined_frames(
    observations: np.ndarray,
    actions: Sequence[int] | np.ndarray,
    side_by_side_replay: bool = True,
    start_obs: np.ndarray | None = None,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    *,
    substep_frames: int | None = None,
    renderer: Any = None,
    env: Any = None,
    goal: Any = None,
    seed: int | None = None,
    **options: Any,
) -> VideoFrames:
    """Frames of an imagined rollout, beside the simulator's replay when ``side_by_side_replay``.

    ``env``: the environment (a name or an ``Environment``; default CLEVR-Robot). ``goal`` and
    ``seed``: the goal and the reset seed ``s_0`` came from (Meta-World replays from there;
    CLEVR-Robot replays from ``start_obs``, default ``s_0``). ``substep_frames`` frames a step
    (default: the environment's, 2 for CLEVR-Robot, 1 for Meta-World); the frames' ``fps`` is the
    environment's pace. ``renderer`` (CLEVR-Robot): one to draw with (then ``width`` and
    ``height`` are its own); by default the process's shared renderer of video quality.
    ``options``: more of the environment's own (Meta-World: ``step_stride``).
    """
    return _imagined(observations, actions, side_by_side_replay, start_obs, width, height,
                     substep_frames, renderer, None, env, goal, seed, options)


def imagined_video(
    observations: np.ndarray,
    actions: Sequence[int] | np.ndarray,
    start_obs: np.ndarray | None = None,
    *,
    substep_frames: int | None = None,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    fps: float | None = None,
    env: Any = None,
    goal: Any = None,
    seed: int | None = None,
    **options: Any,
) -> tuple[bytes, VideoFrames]:
    """The MP4 of an imagined rollout beside the simulator's replay, and its frames.

    The same video as ``mp4_bytes(imagined_frames(...))``, encoded while it is drawn: each
    side-by-side frame goes to the encoder (``kalm.video.Mp4Encoder``) as soon as both its panes
    are drawn. ``fps`` defaults to the frames' own.
    """
    environment = _env(env)
    k = _substeps(environment, substep_frames)
    rate = environment.imagined_video_fps(k) / max(1, int(options.get("step_stride", 1)))
    with Mp4Encoder(rate if fps is None else fps) as encoder:
        frames = _imagined(observations, actions, True, start_obs, width, height, k, None,
                           encoder, environment, goal, seed, options)
        return encoder.finish(), frames


def _imagined(observations, actions, side_by_side_replay: bool, start_obs, width: int, height: int,
              substep_frames: int | None, renderer, encoder: Mp4Encoder | None, env, goal,
              seed, options: dict | None = None) -> VideoFrames:
    environment = _env(env)
    extra = dict(options or {})
    if renderer is not None:
        extra["renderer"] = renderer
    return environment.imagined_video_frames(
        goal, seed, observations, actions, start_obs=start_obs,
        substep_frames=_substeps(environment, substep_frames), width=width, height=height,
        side_by_side=side_by_side_replay, on_frame=None if encoder is None else encoder.add,
        **extra)


def render_imagined(
    observations: np.ndarray,
    actions: Sequence[int] | np.ndarray,
    path: str | Path,
    side_by_side_replay: bool = True,
    start_obs: np.ndarray | None = None,
    fps: float | None = None,
    *,
    env: Any = None,
    goal: Any = None,
    seed: int | None = None,
) -> Path:
    """Write an MP4 of an imagined rollout (beside the simulator's replay); returns the path.

    ``fps`` defaults to the frames' own (the environment's pace)."""
    return write_mp4(imagined_frames(observations, actions, side_by_side_replay, start_obs,
                                     env=env, goal=goal, seed=seed), path, fps=fps)


def render_examples(dataset, folder: str | Path, per_category: int = 2,
                    side_by_side_replay: bool = True) -> list[Path]:
    """MP4s of the first ``per_category`` rollouts of each category of an imagined dataset, each
    made by its episode's environment (``Episode.env``) from its goal and reset seed.

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
        env = getattr(ep, "env", None) or "clevr"
        paths.append(render_imagined(ep.observations, ep.actions, folder / name,
                                     side_by_side_replay=side_by_side_replay, env=env,
                                     goal=ep.goal, seed=ep.seed))
    return paths


# CLEVR-Robot's video constants and helpers under their historical names
# (``kalm.envs.clevr.imagined``), served on first use.
_CLEVR_NAMES = {"PANE_LABELS": "PANE_LABELS", "VIDEO_STEP_SECONDS": "VIDEO_STEP_SECONDS",
                "VIDEO_SUBSTEP_FRAMES": "VIDEO_SUBSTEP_FRAMES", "_drawable": "drawable",
                "_in_turns": "in_turns"}


def __getattr__(name: str) -> Any:
    if name in _CLEVR_NAMES:
        import importlib

        return getattr(importlib.import_module("kalm.envs.clevr.imagined"), _CLEVR_NAMES[name])
    raise AttributeError(f"module 'kalm.imagine.render' has no attribute {name!r}")
