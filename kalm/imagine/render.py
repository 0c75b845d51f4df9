"""Videos of imagined rollouts: the LM's states beside the simulator's replay of its actions.

The left half draws the imagined states as given (``episode_frames(mode="states")``), the right
half replays the same actions in the simulator from ``s_0`` (``mode="simulate"``), so a reader
sees at once where the imagination and the physics part ways. Labels: "imagined", "simulator".

A video shows each push in ``VIDEO_SUBSTEP_FRAMES`` (2) frames: the pusher at its start point
beside ``s_t``, then halfway through the push; it plays at ``VIDEO_STEP_SECONDS`` (0.4 s) a push,
the pace of the 4-frames-a-push videos at 10 fps it replaces, for half the frames to render. The
frames come from the process's shared renderer of video quality (``kalm.render.shared_renderer``).

Headless machines need ``MUJOCO_GL=egl`` (or ``osmesa``) set before anything imports ``mujoco``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from itertools import zip_longest
from pathlib import Path
from typing import Sequence

import numpy as np

from kalm.imagine.validity import ABSURD_COORD, replay_rollout
from kalm.render import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    SceneRenderer,
    iter_episode_frames,
    shared_renderer,
    side_by_side,
)
from kalm.video import Mp4Encoder, VideoFrames, write_mp4

__all__ = [
    "PANE_LABELS",
    "VIDEO_STEP_SECONDS",
    "VIDEO_SUBSTEP_FRAMES",
    "imagined_frames",
    "imagined_video",
    "render_examples",
    "render_imagined",
]

VIDEO_SUBSTEP_FRAMES = 2
VIDEO_STEP_SECONDS = 0.4
PANE_LABELS = ("imagined", "simulator")


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
    *,
    substep_frames: int = VIDEO_SUBSTEP_FRAMES,
    renderer: SceneRenderer | None = None,
) -> VideoFrames:
    """Frames of an imagined rollout, beside the simulator's replay when ``side_by_side_replay``.

    ``substep_frames`` frames a push (as ``kalm.render.episode_frames``); the frames' ``fps``
    plays a push in ``VIDEO_STEP_SECONDS``. ``renderer``: one to draw with (then ``width`` and
    ``height`` are its own); by default the process's shared renderer of video quality.
    """
    return _imagined(observations, actions, side_by_side_replay, start_obs, width, height,
                     substep_frames, renderer, encoder=None)


def imagined_video(
    observations: np.ndarray,
    actions: Sequence[int] | np.ndarray,
    start_obs: np.ndarray | None = None,
    *,
    substep_frames: int = VIDEO_SUBSTEP_FRAMES,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    fps: float | None = None,
) -> tuple[bytes, VideoFrames]:
    """The MP4 of an imagined rollout beside the simulator's replay, and its frames.

    The same video as ``mp4_bytes(imagined_frames(...))``, encoded while it is drawn: each
    side-by-side frame goes to the encoder (``kalm.video.Mp4Encoder``) as soon as both its panes
    are drawn. ``fps`` defaults to the frames' own.
    """
    with Mp4Encoder(substep_frames / VIDEO_STEP_SECONDS if fps is None else fps) as encoder:
        frames = _imagined(observations, actions, True, start_obs, width, height, substep_frames,
                           None, encoder=encoder)
        return encoder.finish(), frames


def _imagined(observations, actions, side_by_side_replay: bool, start_obs, width: int, height: int,
              substep_frames: int, renderer: SceneRenderer | None,
              encoder: Mp4Encoder | None) -> VideoFrames:
    """The frames of ``imagined_frames``, each also given to ``encoder`` as soon as it is made."""
    obs = _drawable(observations)
    acts = np.asarray(actions, dtype=np.int64).reshape(-1)
    lend = nullcontext(renderer) if renderer is not None else shared_renderer(width, height)
    frames = VideoFrames(fps=substep_frames / VIDEO_STEP_SECONDS)
    with lend as r:
        imagined = iter_episode_frames(obs, acts, mode="states", substep_frames=substep_frames,
                                       renderer=r)
        if side_by_side_replay:
            s0 = obs[0] if start_obs is None else np.asarray(start_obs, dtype=np.float64)
            replayed = replay_rollout(r.sim, s0, acts)
            simulated = iter_episode_frames(replayed, acts, mode="simulate",
                                            substep_frames=substep_frames, renderer=r)
            made = (side_by_side([a], [b], labels=PANE_LABELS)[0]
                    for a, b in _in_turns(imagined, simulated))
        else:
            made = imagined
        for frame in made:
            frames.append(frame)
            if encoder is not None:
                encoder.add(frame)
    return frames


def _in_turns(a: Iterator[np.ndarray], b: Iterator[np.ndarray]) -> Iterator[tuple]:
    """Frame pairs drawn in turns; the shorter side is held on its last frame (as side_by_side)."""
    last_a = last_b = None
    for x, y in zip_longest(a, b):
        last_a = last_a if x is None else x
        last_b = last_b if y is None else y
        yield last_a, last_b


def render_imagined(
    observations: np.ndarray,
    actions: Sequence[int] | np.ndarray,
    path: str | Path,
    side_by_side_replay: bool = True,
    start_obs: np.ndarray | None = None,
    fps: float | None = None,
) -> Path:
    """Write an MP4 of an imagined rollout (beside the simulator's replay); returns the path.

    ``fps`` defaults to the frames' own (a push in ``VIDEO_STEP_SECONDS``)."""
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
