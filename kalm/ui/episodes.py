"""Tables and filters over a dataset's episodes (the Data page), and episode videos.

``episode_table`` lists every episode with its goal kind, category, outcome and length;
``filter_episodes`` selects by goal kind, category and outcome; ``render_episode`` draws an
episode in MuJoCo and returns its MP4 and the frame at the start of every step (for a step
slider beside the video).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from kalm.data.episodes import Dataset, Episode

__all__ = [
    "OUTCOMES",
    "goal_kind",
    "episode_table",
    "filter_episodes",
    "episode_label",
    "RenderedEpisode",
    "render_env_episode",
    "render_episode",
    "replay_frames",
    "step_of_frame",
]

OUTCOMES = ("all", "success", "failure")


def goal_kind(ep: Episode) -> str:
    """The episode's goal kind (relation, move, line, gather, all)."""
    return str(ep.goal.get("kind", "?"))


def episode_table(dataset: Dataset) -> list[dict]:
    """One row per episode: index, category, goal kind, text, success, steps, seed."""
    return [
        {"episode": i, "category": ep.category, "kind": goal_kind(ep), "text": ep.text,
         "success": ep.success, "steps": ep.length, "seed": ep.seed}
        for i, ep in enumerate(dataset.episodes)
    ]


def filter_episodes(
    dataset: Dataset,
    kinds: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
    outcome: str = "all",
    text: str = "",
) -> list[int]:
    """Indices of the episodes with one of ``kinds`` and ``categories`` (None or empty: any),
    the given ``outcome`` (all, success, failure) and ``text`` in their instruction."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}; got {outcome!r}")
    kinds = set(kinds or ())
    categories = set(categories or ())
    needle = text.strip().lower()
    out = []
    for i, ep in enumerate(dataset.episodes):
        if kinds and goal_kind(ep) not in kinds:
            continue
        if categories and ep.category not in categories:
            continue
        if outcome == "success" and not ep.success:
            continue
        if outcome == "failure" and ep.success:
            continue
        if needle and needle not in ep.text.lower():
            continue
        out.append(i)
    return out


def episode_label(i: int, ep: Episode, width: int = 70) -> str:
    """``#12 ✓ [relation] Put the red ball ... (5 steps)`` for a picker."""
    text = ep.text if len(ep.text) <= width else ep.text[: width - 1] + "…"
    mark = "✓" if ep.success else "✗"
    return f"#{i} {mark} [{goal_kind(ep)}] {text} ({ep.length} steps)"


@dataclass
class RenderedEpisode:
    """An episode drawn in MuJoCo: its MP4 and the frame at the start of each step."""

    mp4: bytes
    step_frames: np.ndarray
    """uint8 (T + 1, H, W, 3): the scene before each push (pusher at its start) and the end."""
    frames: int
    """Frames in the video."""
    fps: float


def step_of_frame(frame: int, substep_frames: int) -> int:
    """The step a video frame belongs to."""
    return frame // substep_frames


def render_episode(
    observations: np.ndarray,
    actions: Sequence[int],
    mode: str = "simulate",
    substep_frames: int = 4,
    fps: float = 10,
    env: str = "clevr",
) -> RenderedEpisode:
    """Render an episode with each step animated (``Environment.animated_frames`` of ``env``:
    CLEVR-Robot's pushes) and encode it as MP4 (``kalm.video.mp4_bytes``)."""
    from kalm.envs import get_env
    from kalm.video import mp4_bytes

    frames = get_env(env).animated_frames(observations, actions, mode=mode,
                                          substep_frames=substep_frames)
    return RenderedEpisode(mp4=mp4_bytes(frames, fps=fps),
                           step_frames=np.stack(frames[::substep_frames]),
                           frames=len(frames), fps=fps)


def replay_frames(env_name: str, goal: dict, reset_seed: int, actions, width: int = 320,
                  height: int = 240) -> list[np.ndarray]:
    """Frames of an episode of any environment: ``actions`` replayed in its simulator from the
    seeded reset of ``goal`` (a goal's JSON form), one frame per state
    (``Environment.replay_frames``)."""
    from kalm.envs import get_env

    return get_env(env_name).replay_frames(goal, reset_seed, actions, width=width, height=height)


def render_env_episode(env_name: str, ep: Episode, mode: str = "simulate",
                       width: int = 320, height: int = 240) -> RenderedEpisode:
    """Render an episode of any environment, one frame per state, and encode it as MP4.

    ``simulate``: the episode's actions replayed from its seeded reset (real frames; needs the
    reset seed); ``states``: each recorded state shown as the environment poses it (also what an
    imagined episode gets, as no seed can reproduce it)."""
    from kalm.envs import get_env
    from kalm.video import mp4_bytes

    env = get_env(env_name)
    if mode == "simulate" and ep.seed >= 0 and not ep.imagined:
        frames = replay_frames(env_name, ep.goal, ep.seed, ep.actions, width, height)
    else:
        goal = env.goal_from_dict(ep.goal)
        kw = {"task": goal.task} if hasattr(goal, "task") else {}
        frames = env.episode_frames(ep.observations, None, width=width, height=height, **kw)
    fps = float(env.render_fps)
    return RenderedEpisode(mp4=mp4_bytes(frames, fps=fps), step_frames=np.stack(frames),
                           frames=len(frames), fps=fps)
