"""Pictures of the CLEVR-Robot scene: single frames, episode frames, and side-by-side comparisons.

``SceneRenderer`` wraps ``mujoco.Renderer``. It draws a simulator state (``render_data``) or an
observation, balls set at the given centres (``render_obs``); the pusher is drawn only where it
is pushing, never where it is parked. ``episode_frames`` turns an episode (observations and
actions) into frames: replayed through the physics so the pusher is seen moving the ball
(``mode="simulate"``), or drawn as given, for imagined rollouts whose states come from a model
(``mode="states"``). ``kalm.video`` writes the frames as MP4 or GIF.

Headless machines need an offscreen OpenGL: set ``MUJOCO_GL=egl`` (or ``osmesa``) before
anything imports ``mujoco``.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Sequence

import mujoco
import numpy as np

from kalm.envs.clevr import (
    N_ACTIONS,
    OBS_DIM,
    PUSH_DIRECTIONS,
    PUSH_START_OFFSET,
    PUSH_SUBSTEPS,
    ClevrRobotEnv,
    decode_action,
)
from kalm.envs.clevr_model import WORKBENCH

__all__ = [
    "DEFAULT_CAMERA",
    "DEFAULT_HEIGHT",
    "DEFAULT_WIDTH",
    "EPISODE_MODES",
    "SceneRenderer",
    "episode_frames",
    "episode_frame_count",
    "side_by_side",
]

DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 240
DEFAULT_CAMERA = "slanted"
EPISODE_MODES = ("simulate", "states")
# The pusher is drawn only within this margin around the workbench: a push starts at most
# 0.15 beyond a ball at a wall. Farther out it is parked (ClevrRobotEnv parks it at y = 1.2).
_PUSHER_DRAW_MARGIN = 0.25
# Where an undrawn pusher is put: behind every camera, out of view and out of the light.
_PUSHER_HIDDEN = np.array([0.0, -50.0])
# Renderers still open at exit are closed before mujoco's own exit hook terminates the EGL
# display (freeing a context after that raises noisy errors). The hook is registered after the
# first context exists, so that it runs before mujoco's (atexit runs last-registered first).
_OPEN_RENDERERS: weakref.WeakSet = weakref.WeakSet()
_exit_hook_registered = False


def _close_open_renderers() -> None:
    for r in list(_OPEN_RENDERERS):
        r.close()


def _track(renderer: SceneRenderer) -> None:
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_close_open_renderers)
        _exit_hook_registered = True
    _OPEN_RENDERERS.add(renderer)


class SceneRenderer:
    """Offscreen renderer of the CLEVR-Robot scene.

    Args:
        width, height: frame size in pixels (keep both multiples of 16 for H.264 video).
        model: the ``MjModel`` to draw (``ClevrRobotEnv.model``); a fresh one when ``None``.
        camera: a camera of the model, ``"slanted"`` (the CLEVR-Robot view) or ``"top"``.

    ``render_obs`` sets the state in a private simulator, never in the caller's data. Use as a
    context manager, or call ``close()``, to free the OpenGL context.
    """

    def __init__(
        self,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        model: mujoco.MjModel | None = None,
        camera: str = DEFAULT_CAMERA,
    ) -> None:
        self._sim = ClevrRobotEnv() if model is None else None
        self.model = self._sim.model if model is None else model
        self.width, self.height = int(width), int(height)
        if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"the scene has no camera {camera!r}; use 'slanted' or 'top'")
        self.camera = camera
        try:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
        except Exception as e:  # no display and no offscreen GL configured
            raise RuntimeError(
                f"could not open an OpenGL context to render ({e}). On a machine without a "
                "display, set MUJOCO_GL=egl (or osmesa) before importing kalm or mujoco."
            ) from e
        self._scratch = mujoco.MjData(self.model)
        self._pusher_qpos = _pusher_qpos(self.model)
        _track(self)

    # ----------------------------------------------------------------- state to pixels
    @property
    def sim(self) -> ClevrRobotEnv:
        """The private simulator whose state ``render_obs`` and ``episode_frames`` set."""
        if self._sim is None:
            self._sim = ClevrRobotEnv()
            if self._sim.model.nq != self.model.nq:
                raise ValueError("render_obs needs a CLEVR-Robot model; this one has another layout")
        return self._sim

    def render_data(self, data: mujoco.MjData) -> np.ndarray:
        """Render a simulator state as an ``(H, W, 3)`` uint8 frame (a parked pusher is not drawn)."""
        if self._pusher_qpos is not None and not _pusher_in_view(data.qpos[self._pusher_qpos]):
            self._scratch.qpos[:] = data.qpos
            self._scratch.qpos[self._pusher_qpos] = _PUSHER_HIDDEN
            self._update_poses(self._scratch)
            data = self._scratch
        return self._render(data)

    def _update_poses(self, data: mujoco.MjData) -> None:
        mujoco.mj_kinematics(self.model, data)
        mujoco.mj_camlight(self.model, data)

    def _render(self, data: mujoco.MjData) -> np.ndarray:
        self._renderer.update_scene(data, camera=self.camera)
        return self._renderer.render()

    def render_obs(self, obs: np.ndarray, pusher_xy: np.ndarray | None = None) -> np.ndarray:
        """Render the balls at the centres in ``obs`` (10 floats), at rest.

        The pusher is drawn at ``pusher_xy``, or not at all when it is ``None``.
        """
        sim = self.sim
        sim.set_obs(obs, pusher_xy=_PUSHER_HIDDEN if pusher_xy is None else pusher_xy)
        return self._render(sim.data)

    def world_to_pixel(self, points: np.ndarray) -> np.ndarray:
        """Project world points ``(..., 3)`` to ``(..., 2)`` pixel coordinates (column, row)."""
        self._update_poses(self._scratch)
        cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
        pos = self._scratch.cam_xpos[cid]
        rot = self._scratch.cam_xmat[cid].reshape(3, 3)  # columns: camera x, y, z in world
        local = (np.asarray(points, dtype=np.float64) - pos) @ rot
        depth = -local[..., 2]  # the camera looks along its -z
        focal = 0.5 * self.height / np.tan(np.radians(self.model.cam_fovy[cid]) / 2)
        col = 0.5 * self.width + focal * local[..., 0] / depth
        row = 0.5 * self.height - focal * local[..., 1] / depth
        return np.stack([col, row], axis=-1)

    # ----------------------------------------------------------------- lifetime
    def close(self) -> None:
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _pusher_qpos(model: mujoco.MjModel) -> np.ndarray | None:
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in ("pusher_x", "pusher_y")]
    if min(ids) < 0:
        return None
    return model.jnt_qposadr[ids]


def _pusher_in_view(xy: np.ndarray) -> bool:
    x0, x1, y0, y1 = WORKBENCH
    m = _PUSHER_DRAW_MARGIN
    return bool(x0 - m <= xy[0] <= x1 + m and y0 - m <= xy[1] <= y1 + m)


def _push_start(obs: np.ndarray, action: int) -> tuple[np.ndarray, np.ndarray]:
    """(pusher start point, push direction) of ``action`` from ``obs``, as ClevrRobotEnv.push."""
    ball, d = decode_action(action)
    direction = PUSH_DIRECTIONS[d]
    return obs[2 * ball : 2 * ball + 2] - PUSH_START_OFFSET * direction, direction


# --------------------------------------------------------------------- episodes
def episode_frame_count(n_observations: int, n_actions: int, mode: str = "simulate",
                        substep_frames: int = 4) -> int:
    """How many frames ``episode_frames`` makes for an episode of these lengths."""
    n = n_actions * substep_frames
    if mode == "simulate" or n_observations > n_actions:
        n += 1  # the final state
    return n


def episode_frames(
    observations: Sequence[np.ndarray] | np.ndarray,
    actions: Sequence[int] | np.ndarray,
    *,
    mode: str = "simulate",
    substep_frames: int = 4,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    camera: str = DEFAULT_CAMERA,
    renderer: SceneRenderer | None = None,
) -> list[np.ndarray]:
    """Frames of an episode: ``observations`` ``s_0..s_T`` (or ``s_0..s_{T-1}``), ``actions`` ``a_0..a_{T-1}``.

    Each step gives ``substep_frames`` frames, the first with the pusher at its start point
    (``ball - 0.15 * dir``) beside the balls of ``s_t``:

    - ``mode="simulate"``: the simulator is set to ``s_t`` and runs the push of ``a_t``
      (40 substeps), drawn every ``40 / substep_frames`` substeps. A last frame shows ``s_T``
      (or, when it is not given, where the physics left the balls), the pusher withdrawn.
    - ``mode="states"``: for states that come from a model, not from physics. ``s_t`` is drawn
      as given, with ``substep_frames - 1`` frames interpolated toward ``s_{t+1}``, the pusher
      following the pushed ball. A last frame shows ``s_T`` when it is given.

    Both modes give ``episode_frame_count(...)`` frames, so their videos line up side by side.
    ``renderer`` reuses an open ``SceneRenderer`` (then ``width``, ``height``, ``camera`` are its own).
    """
    if mode not in EPISODE_MODES:
        raise ValueError(f"mode must be one of {EPISODE_MODES}; got {mode!r}")
    if substep_frames < 1:
        raise ValueError(f"substep_frames must be at least 1; got {substep_frames}")
    obs = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
    acts = [int(a) for a in np.asarray(actions).reshape(-1)]
    if obs.shape[0] == 0 or obs.shape[1] != OBS_DIM:
        raise ValueError(f"observations must be a non-empty list of {OBS_DIM}-float states; got {obs.shape}")
    if obs.shape[0] not in (len(acts), len(acts) + 1):
        raise ValueError(
            f"an episode of {len(acts)} actions has {len(acts)} or {len(acts) + 1} observations; "
            f"got {obs.shape[0]}"
        )
    if any(not 0 <= a < N_ACTIONS for a in acts):
        raise ValueError(f"actions must be in [0, {N_ACTIONS}); got {acts}")

    own = renderer is None
    r = SceneRenderer(width, height, camera=camera) if own else renderer
    try:
        if mode == "simulate":
            frames = _simulated_frames(r, obs, acts, substep_frames)
        else:
            frames = _state_frames(r, obs, acts, substep_frames)
    finally:
        if own:
            r.close()
    return frames


def _simulated_frames(r: SceneRenderer, obs: np.ndarray, acts: list[int], n: int) -> list[np.ndarray]:
    sim = r.sim
    # Substep counts at which a frame is drawn; chunks of mj_step add up to ClevrRobotEnv.push.
    marks = np.linspace(0, PUSH_SUBSTEPS, n + 1).round().astype(int)
    frames = []
    for t, a in enumerate(acts):
        start, direction = _push_start(obs[t], a)
        sim.set_obs(obs[t], pusher_xy=start)  # balls at rest, pusher still, controls zero
        sim.data.ctrl[:] = direction
        for k in range(n):
            frames.append(r._render(sim.data))  # the pusher is pushing: always drawn
            mujoco.mj_step(sim.model, sim.data, nstep=int(marks[k + 1] - marks[k]))
        sim.data.ctrl[:] = 0.0
    if len(obs) > len(acts):
        frames.append(r.render_obs(obs[-1]))
    else:
        frames.append(r.render_obs(sim.get_obs()))
    return frames


def _state_frames(r: SceneRenderer, obs: np.ndarray, acts: list[int], n: int) -> list[np.ndarray]:
    frames = []
    for t, a in enumerate(acts):
        nxt = obs[t + 1] if t + 1 < len(obs) else obs[t]
        ball, _ = decode_action(a)
        start, _ = _push_start(obs[t], a)
        for k in range(n):
            f = k / n
            state = (1 - f) * obs[t] + f * nxt
            moved = state[2 * ball : 2 * ball + 2] - obs[t][2 * ball : 2 * ball + 2]
            frames.append(r.render_obs(state, pusher_xy=start + moved))
    if len(obs) > len(acts):
        frames.append(r.render_obs(obs[-1]))
    return frames


# --------------------------------------------------------------------- composition
def side_by_side(
    frames_a: Sequence[np.ndarray],
    frames_b: Sequence[np.ndarray],
    labels: tuple[str, str] | None = ("imagined", "simulator"),
) -> list[np.ndarray]:
    """Put two frame lists next to each other, each frame labelled; the shorter is held on its last frame."""
    if not frames_a or not frames_b:
        raise ValueError("side_by_side needs at least one frame on each side")
    n = max(len(frames_a), len(frames_b))
    h = max(frames_a[0].shape[0], frames_b[0].shape[0])
    la, lb = labels if labels is not None else (None, None)
    out = []
    for i in range(n):
        a = _fit_height(frames_a[min(i, len(frames_a) - 1)], h, la)
        b = _fit_height(frames_b[min(i, len(frames_b) - 1)], h, lb)
        out.append(np.concatenate([a, b], axis=1))
    return out


def _fit_height(frame: np.ndarray, height: int, label: str | None) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.uint8)
    if frame.shape[0] < height:
        frame = np.pad(frame, ((0, height - frame.shape[0]), (0, 0), (0, 0)), mode="edge")
    return _draw_label(frame, label) if label else frame


def _draw_label(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with ``text`` in white on a dark box in its top-left corner."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img, "RGBA")
    font = _label_font()
    left, top, right, bottom = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((left - 4, top - 3, right + 4, bottom + 3), fill=(20, 20, 20, 170))
    draw.text((6, 4), text, fill=(255, 255, 255, 255), font=font)
    return np.asarray(img)


def _label_font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()
