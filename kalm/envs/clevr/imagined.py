"""CLEVR-Robot's videos of imagined rollouts: the LM's states beside the simulator's replay.

The left half draws the imagined states as given (``episode_frames(mode="states")``), the right
half replays the same actions in the simulator from ``s_0`` (``mode="simulate"``). A push is
shown in ``VIDEO_SUBSTEP_FRAMES`` (2) frames: the pusher at its start point beside ``s_t``, then
halfway through the push; the video plays a push in ``VIDEO_STEP_SECONDS`` (0.4 s). The frames
come from the process's shared renderer of video quality (``kalm.envs.clevr.render``).

``kalm.imagine.render`` reaches this through the environment
(``ClevrEnvironment.imagined_video_frames``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from itertools import zip_longest
from typing import Callable, Sequence

import numpy as np

from kalm.envs.clevr.render import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    SceneRenderer,
    episode_shots,
    iter_episode_frames,
    shared_renderer,
    side_by_side,
)
from kalm.envs.clevr.validity import ABSURD_COORD, replay_rollout
from kalm.video import VideoFrames, label_panes

__all__ = ["PANE_LABELS", "VIDEO_STEP_SECONDS", "VIDEO_SUBSTEP_FRAMES", "drawable",
           "imagined_frames"]

VIDEO_SUBSTEP_FRAMES = 2
VIDEO_STEP_SECONDS = 0.4
PANE_LABELS = ("imagined", "simulator")


def drawable(observations: np.ndarray) -> np.ndarray:
    """Imagined states made drawable: NaN and huge values put the ball far off the table."""
    obs = np.asarray(observations, dtype=np.float64)
    obs = np.nan_to_num(obs, nan=ABSURD_COORD, posinf=ABSURD_COORD, neginf=-ABSURD_COORD)
    return np.clip(obs, -ABSURD_COORD, ABSURD_COORD)


def imagined_frames(observations, actions: Sequence[int] | np.ndarray,
                    side_by_side_replay: bool = True, start_obs: np.ndarray | None = None,
                    width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, *,
                    substep_frames: int = VIDEO_SUBSTEP_FRAMES,
                    renderer: SceneRenderer | None = None,
                    on_frame: Callable[[np.ndarray], None] | None = None) -> VideoFrames:
    """The frames of an imagined rollout (beside the replay from ``start_obs``, default ``s_0``),
    each also given to ``on_frame`` as soon as it is made. ``renderer``: one to draw with (then
    ``width`` and ``height`` are its own); by default the process's shared one.

    Side by side with the shared renderer, both panes of a frame are drawn in one pass
    (``SceneRenderer.render_panes``: one readback a frame instead of two, about 30% less time);
    with a given renderer they are drawn in turns and put together."""
    obs = drawable(observations)
    acts = np.asarray(actions, dtype=np.int64).reshape(-1)
    frames = VideoFrames(fps=substep_frames / VIDEO_STEP_SECONDS)
    s0 = obs[0] if start_obs is None else np.asarray(start_obs, dtype=np.float64)

    def emit(made: Iterator[np.ndarray]) -> VideoFrames:
        for frame in made:
            frames.append(frame)
            if on_frame is not None:
                on_frame(frame)
        return frames

    if side_by_side_replay and renderer is None:
        with shared_renderer(2 * width, height) as r:
            imagined = episode_shots(obs, acts, mode="states", substep_frames=substep_frames)
            replayed = replay_rollout(r.sim, s0, acts)
            simulated = episode_shots(replayed, acts, mode="simulate",
                                      substep_frames=substep_frames, sim=r.sim)
            return emit(label_panes(r.render_panes(pair), PANE_LABELS)
                        for pair in in_turns(iter(imagined), iter(simulated)))
    lend = nullcontext(renderer) if renderer is not None else shared_renderer(width, height)
    with lend as r:
        imagined = iter_episode_frames(obs, acts, mode="states", substep_frames=substep_frames,
                                       renderer=r)
        if side_by_side_replay:
            replayed = replay_rollout(r.sim, s0, acts)
            simulated = iter_episode_frames(replayed, acts, mode="simulate",
                                            substep_frames=substep_frames, renderer=r)
            return emit(side_by_side([a], [b], labels=PANE_LABELS)[0]
                        for a, b in in_turns(imagined, simulated))
        return emit(imagined)


def in_turns(a: Iterator[np.ndarray], b: Iterator[np.ndarray]) -> Iterator[tuple]:
    """Frame pairs drawn in turns; the shorter side is held on its last frame (as side_by_side)."""
    last_a = last_b = None
    for x, y in zip_longest(a, b):
        last_a = last_a if x is None else x
        last_b = last_b if y is None else y
        yield last_a, last_b
