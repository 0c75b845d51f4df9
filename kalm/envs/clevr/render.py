"""Pictures of the CLEVR-Robot scene: single frames, episode frames, and side-by-side comparisons.

``SceneRenderer`` wraps ``mujoco.Renderer``. It draws a simulator state (``render_data``) or an
observation, balls set at the given centres (``render_obs``); the pusher is drawn only where it
is pushing, never where it is parked. ``episode_frames`` turns an episode (observations and
actions) into frames: replayed through the physics so the pusher is seen moving the ball
(``mode="simulate"``), or drawn as given, for imagined rollouts whose states come from a model
(``mode="states"``). ``kalm.video`` writes the frames as MP4 or GIF.

``shared_renderer`` lends one cached ``SceneRenderer`` per size, camera and quality to every
caller of the process, one caller at a time (a lock): opening an OpenGL context costs a few tenths
of a second, and the app renders from several threads. A context is current in one thread at a
time, so the renderer lets go of it when it is handed back; whichever thread borrows it next makes
it current again.

``quality="video"`` draws about four times as fast as ``"full"`` on Mesa's software rasteriser,
for a difference that is hard to see at video size: no multisampling, and, instead of MuJoCo's
shadow map (a depth pass and a second lit pass of the whole scene), a flat disc under each sphere
where the key light's shadow falls, in the colour of the shadowed workbench.

Headless machines need an offscreen OpenGL: set ``MUJOCO_GL=egl`` (or ``osmesa``) before
anything imports ``mujoco``.
"""

from __future__ import annotations

import atexit
import copy
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

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
from kalm.envs.clevr.model import WORKBENCH
from kalm.video import side_by_side  # noqa: F401 - served here under its historical name

__all__ = [
    "DEFAULT_CAMERA",
    "DEFAULT_HEIGHT",
    "DEFAULT_WIDTH",
    "EPISODE_MODES",
    "QUALITIES",
    "RenderQuality",
    "SceneRenderer",
    "episode_frames",
    "episode_frame_count",
    "episode_shots",
    "iter_episode_frames",
    "shared_renderer",
    "side_by_side",
]

DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 240
DEFAULT_CAMERA = "slanted"
EPISODE_MODES = ("simulate", "states")


@dataclass(frozen=True)
class RenderQuality:
    """How a ``SceneRenderer`` draws."""

    multisamples: int | None
    """Samples a pixel for anti-aliasing; None: the model's own (4)."""
    disc_shadows: bool
    """A flat disc per sphere instead of the shadow map: no depth pass, no second lit pass."""


QUALITIES = {"full": RenderQuality(None, False), "video": RenderQuality(0, True)}

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
        quality: a name in ``QUALITIES``: ``"full"`` (the model's multisampling and shadow map)
            or ``"video"`` (no multisampling, disc shadows: about four times as fast).

    ``render_obs`` sets the state in a private simulator, never in the caller's data. Use as a
    context manager, or call ``close()``, to free the OpenGL context.
    """

    def __init__(
        self,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        model: mujoco.MjModel | None = None,
        camera: str = DEFAULT_CAMERA,
        quality: str = "full",
    ) -> None:
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {tuple(QUALITIES)}; got {quality!r}")
        self._sim = ClevrRobotEnv() if model is None else None
        self.model = self._sim.model if model is None else model
        self.width, self.height = int(width), int(height)
        if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"the scene has no camera {camera!r}; use 'slanted' or 'top'")
        self.camera = camera
        self.quality = quality
        q = QUALITIES[quality]
        try:
            self._renderer = _open_renderer(self.model, self.width, self.height, q.multisamples)
        except Exception as e:  # no display and no offscreen GL configured
            raise RuntimeError(
                f"could not open an OpenGL context to render ({e}). On a machine without a "
                "display, set MUJOCO_GL=egl (or osmesa) before importing kalm or mujoco."
            ) from e
        self._scratch = mujoco.MjData(self.model)
        self._pusher_qpos = _pusher_qpos(self.model)
        self._discs = None
        _track(self)
        if q.disc_shadows:
            self._discs = _DiscShadows(self)

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
        if self._discs is not None:
            self._discs.add_to(self._renderer.scene, data)
        return self._renderer.render()

    def render_panes(self, shots: Sequence) -> np.ndarray:
        """Several scenes side by side, drawn in one pass: shot ``i`` into the ``i``-th of
        ``len(shots)`` equal columns of this renderer's frame, read back once (one readback of
        the whole frame costs much less than one per pane with the software renderer).

        A shot is a simulator state (an ``MjData``, drawn as it is, the pusher too) or
        ``(observation, pusher point or None)`` (balls at rest, as ``render_obs``). Returns the
        ``(H, W, 3)`` uint8 frame; the width must divide evenly.
        """
        n = len(shots)
        if n < 1 or self.width % n:
            raise ValueError(f"cannot split a frame {self.width} wide into {n} equal panes")
        r = self._renderer
        if r is None:
            raise RuntimeError("render_panes cannot be called after close")
        pane = self.width // n
        if r._gl_context:
            r._gl_context.make_current()
        for i, shot in enumerate(shots):
            if isinstance(shot, mujoco.MjData):
                data = shot
            else:
                obs, pusher_xy = shot
                data = self.sim.data
                self.sim.set_obs(obs, pusher_xy=_PUSHER_HIDDEN if pusher_xy is None else pusher_xy)
            r.update_scene(data, camera=self.camera)
            if self._discs is not None:
                self._discs.add_to(r.scene, data)
            mujoco.mjr_render(mujoco.MjrRect(i * pane, 0, pane, self.height), r.scene,
                              r._mjr_context)
        out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(out, None, mujoco.MjrRect(0, 0, self.width, self.height),
                              r._mjr_context)
        return np.ascontiguousarray(out[::-1])

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
    def release_context(self) -> None:
        """Let go of the OpenGL context in the calling thread, so another thread can render next.

        Rendering makes the context current again, in whichever thread renders.
        """
        if getattr(self, "_renderer", None) is not None:
            _release_gl_context(self._renderer)

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


def _open_renderer(model: mujoco.MjModel, width: int, height: int,
                   multisamples: int | None) -> mujoco.Renderer:
    """A ``mujoco.Renderer`` whose context has this multisampling; ``model``'s is left as it was."""
    quality = model.vis.quality
    saved = int(quality.offsamples)
    if multisamples is not None:
        quality.offsamples = multisamples
    try:  # the context reads it once, when it is made
        return mujoco.Renderer(model, height, width)
    finally:
        quality.offsamples = saved


class _DiscShadows:
    """Shadows drawn as geometry: a flat disc on the workbench under each sphere (balls, pusher).

    A disc lies where the key light (the model's shadow-casting light) puts the sphere's shadow,
    stretched along that light's direction as a sphere's shadow is. Its colour is measured once:
    the empty workbench drawn without the key light, divided by how a disc there is lit. The
    renderer's shadow map is switched off.
    """

    # Lifted above the workbench plane (at z = 0.001) so the two never flicker into each other.
    _LIFT = 0.002

    def __init__(self, r: SceneRenderer) -> None:
        m = r.model
        r._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        spheres = [g for g in range(m.ngeom)
                   if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE and m.geom_rgba[g, 3] > 0]
        keys = [i for i in range(m.nlight) if m.light_castshadow[i]]
        self._spheres: list[int] = []
        if not keys or not spheres:
            return
        key = keys[0]
        d = m.light_dir[key] / np.linalg.norm(m.light_dir[key])
        self._shift = -d[:2] / min(d[2], -0.1)  # where a point's shadow falls, per unit of height
        self._stretch = 1.0 / max(-d[2], 0.1)
        angle = np.arctan2(d[1], d[0])
        c, s = np.cos(angle), np.sin(angle)
        self._mat = np.array([c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0])
        self._radii = {g: float(m.geom_size[g, 0]) for g in spheres}
        self._rgba = np.ones(4, dtype=np.float32)
        self._rgba[:3] = self._shadow_colour(r, key)
        self._spheres = spheres

    def _shadow_colour(self, r: SceneRenderer, key: int) -> np.ndarray:
        """The disc colour (0..1) that draws as the workbench does where the key light is blocked."""
        m = r.model
        x0, x1, y0, y1 = WORKBENCH
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        col, row = np.round(r.world_to_pixel(np.append(centre, 0.0))).astype(int)
        empty = np.tile(_PUSHER_HIDDEN, 5)  # every ball out of view
        probe = np.full(3, 0.5)
        self._rgba = np.append(probe, 1.0).astype(np.float32)
        saved = int(m.light_active[key])
        try:
            m.light_active[key] = 0
            dark = r.render_obs(empty)[row, col].astype(np.float64)
            m.light_active[key] = saved
            r.sim.set_obs(empty, pusher_xy=_PUSHER_HIDDEN)
            r._renderer.update_scene(r.sim.data, camera=r.camera)
            self._add_disc(r._renderer.scene, centre, 0.1)
            lit_disc = r._renderer.render()[row, col].astype(np.float64)
        finally:
            m.light_active[key] = saved
        # A disc without specular light draws as (its colour) x (the light there): solve for the colour.
        return np.clip(probe * dark / np.maximum(lit_disc, 1.0), 0.0, 1.0)

    def _add_disc(self, scn: mujoco.MjvScene, xy: np.ndarray, radius: float) -> None:
        if scn.ngeom >= scn.maxgeom:
            return
        geom = scn.geoms[scn.ngeom]
        mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_ELLIPSOID,
                            np.array([radius * self._stretch, radius, 1e-4]),
                            np.array([xy[0], xy[1], self._LIFT]), self._mat, self._rgba)
        geom.specular = 0.0
        geom.category = mujoco.mjtCatBit.mjCAT_DECOR
        scn.ngeom += 1

    def add_to(self, scn: mujoco.MjvScene, data: mujoco.MjData) -> None:
        """Add the discs of the spheres in view in ``data`` to ``scn`` (after ``update_scene``)."""
        for g in self._spheres:
            pos = data.geom_xpos[g]
            if _pusher_in_view(pos[:2]):
                self._add_disc(scn, pos[:2] + self._shift * pos[2], self._radii[g])


def _release_gl_context(renderer: mujoco.Renderer) -> None:
    """Make no context current in this thread (EGL and GLFW bind a context to one thread)."""
    ctx = getattr(renderer, "_gl_context", None)
    backend = type(ctx).__module__ if ctx is not None else ""
    if backend.startswith("mujoco.egl"):
        from mujoco import egl
        from mujoco.egl import egl_ext as EGL

        EGL.eglMakeCurrent(egl.EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
    elif backend.startswith("mujoco.glfw"):
        import glfw

        glfw.make_context_current(None)
    # OSMesa: a context is not bound to a thread; the lock of shared_renderer is enough.


# --------------------------------------------------------------------- the shared renderer
_SHARED: dict[tuple[int, int, str, str], SceneRenderer] = {}
_SHARED_LOCK = threading.RLock()


@contextmanager
def shared_renderer(
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    camera: str = DEFAULT_CAMERA,
    quality: str = "video",
) -> Iterator[SceneRenderer]:
    """Lend the process's cached ``SceneRenderer`` of this size, camera and quality.

    Made on first use and kept until exit (one per distinct size, camera and quality asked for).
    One borrower at a time, from any thread: the others wait. Do not close it; do not keep it
    beyond the ``with`` block.
    """
    key = (int(width), int(height), camera, quality)
    with _SHARED_LOCK:
        r = _SHARED.get(key)
        if r is None or r._renderer is None:
            r = _SHARED[key] = SceneRenderer(width, height, camera=camera, quality=quality)
        try:
            yield r
        finally:
            r.release_context()


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
    ``renderer``: an open ``SceneRenderer`` to draw with (then ``width``, ``height``, ``camera`` are
    its own); by default the process's shared one of full quality (``shared_renderer``).
    """
    if renderer is None:
        _episode_inputs(observations, actions, mode, substep_frames)  # bad input: no renderer opened
        with shared_renderer(width, height, camera, quality="full") as r:
            return list(iter_episode_frames(observations, actions, mode=mode,
                                            substep_frames=substep_frames, renderer=r))
    return list(iter_episode_frames(observations, actions, mode=mode,
                                    substep_frames=substep_frames, renderer=renderer))


def iter_episode_frames(
    observations: Sequence[np.ndarray] | np.ndarray,
    actions: Sequence[int] | np.ndarray,
    *,
    mode: str = "simulate",
    substep_frames: int = 4,
    renderer: SceneRenderer,
) -> Iterator[np.ndarray]:
    """``episode_frames``, drawn one frame at a time as they are asked for.

    The physics (``mode="simulate"``) runs in this call, before any frame is drawn, so several of
    these iterators can take turns on one renderer (the panes of a side-by-side video, drawn frame
    by frame while an encoder takes the finished ones). Hold the renderer while iterating.
    """
    shots = episode_shots(observations, actions, mode=mode, substep_frames=substep_frames,
                          sim=renderer.sim)
    return (_draw_shot(renderer, shot) for shot in shots)


def episode_shots(observations: Sequence[np.ndarray] | np.ndarray, actions: Sequence[int] | np.ndarray,
                  *, mode: str = "simulate", substep_frames: int = 4,
                  sim: ClevrRobotEnv | None = None) -> list:
    """What each frame of ``episode_frames`` shows, before it is drawn: a copy of the simulator's
    state (``mode="simulate"``: the physics runs here, in ``sim``, a scratch simulator) or
    ``(observation, pusher point or None)``; for ``SceneRenderer.render_panes``."""
    obs, acts = _episode_inputs(observations, actions, mode, substep_frames)
    if mode == "simulate":
        return _simulated_shots(sim if sim is not None else ClevrRobotEnv(), obs, acts,
                                substep_frames)
    return _state_shots(obs, acts, substep_frames)


def _episode_inputs(observations, actions, mode: str, substep_frames: int) -> tuple[np.ndarray, list[int]]:
    """The episode as (observations ``(T or T + 1, 10)`` float64, actions); raises on bad input."""
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
    return obs, acts


def _draw_shot(r: SceneRenderer, shot) -> np.ndarray:
    """Draw what one frame shows: a simulator state as it is (a copy of its MjData, the pusher
    always drawn), or ``(observation, pusher point or None)``: balls at rest, as ``render_obs``."""
    if isinstance(shot, mujoco.MjData):
        return r._render(shot)
    obs, pusher_xy = shot
    return r.render_obs(obs, pusher_xy=pusher_xy)


def _simulated_shots(sim: ClevrRobotEnv, obs: np.ndarray, acts: list[int], n: int) -> list:
    # Substep counts at which a frame is drawn; chunks of mj_step add up to ClevrRobotEnv.push.
    marks = np.linspace(0, PUSH_SUBSTEPS, n + 1).round().astype(int)
    shots: list = []
    for t, a in enumerate(acts):
        start, direction = _push_start(obs[t], a)
        sim.set_obs(obs[t], pusher_xy=start)  # balls at rest, pusher still, controls zero
        sim.data.ctrl[:] = direction
        for k in range(n):
            shots.append(copy.copy(sim.data))  # the pusher is pushing: always drawn
            mujoco.mj_step(sim.model, sim.data, nstep=int(marks[k + 1] - marks[k]))
        sim.data.ctrl[:] = 0.0
    shots.append((obs[-1] if len(obs) > len(acts) else sim.get_obs(), None))
    return shots


def _state_shots(obs: np.ndarray, acts: list[int], n: int) -> list:
    shots: list = []
    for t, a in enumerate(acts):
        nxt = obs[t + 1] if t + 1 < len(obs) else obs[t]
        ball, _ = decode_action(a)
        start, _ = _push_start(obs[t], a)
        for k in range(n):
            f = k / n
            state = (1 - f) * obs[t] + f * nxt
            moved = state[2 * ball : 2 * ball + 2] - obs[t][2 * ball : 2 * ball + 2]
            shots.append((state, start + moved))
    if len(obs) > len(acts):
        shots.append((obs[-1], None))
    return shots
