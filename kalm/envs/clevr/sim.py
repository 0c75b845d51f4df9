"""CLEVR-Robot rebuilt on the ``mujoco`` bindings as a gymnasium environment."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from kalm.envs.clevr.model import BALL_RADIUS, WORKBENCH, build_xml
from kalm.envs.clevr.goals.spec import (
    COLORS,
    MAX_EPISODE_STEPS,
    Goal,
    goal_horizon,
    goal_reward,
)

__all__ = [
    "ClevrRobotEnv",
    "PUSH_DIRECTIONS",
    "N_BALLS",
    "N_DIRECTIONS",
    "N_ACTIONS",
    "OBS_DIM",
    "decode_action",
    "encode_action",
    "sample_initial_obs",
    "random_push_transitions",
    "InitialStateError",
]

N_BALLS = 5
N_DIRECTIONS = 8
N_ACTIONS = N_BALLS * N_DIRECTIONS
OBS_DIM = 2 * N_BALLS
# Push direction d of action a = ball * 8 + d (the original CLEVR-Robot's order).
PUSH_DIRECTIONS = np.array(
    [(1, 0), (0, 1), (-1, 0), (0, -1), (0.8, 0.8), (-0.8, 0.8), (0.8, -0.8), (-0.8, -0.8)],
    dtype=np.float64,
)
# The pusher starts this far behind the ball's centre along -dir, then is driven along dir.
PUSH_START_OFFSET = 0.15
PUSH_SUBSTEPS = 40
# Initial positions: x ~ U[-0.5, 0.5], y ~ U[-0.3, 0.5], centres at least 0.36 apart
# (surfaces at least 0.1 apart).
INIT_X_RANGE = (-0.5, 0.5)
INIT_Y_RANGE = (-0.3, 0.5)
INIT_MIN_CENTRE_DIST = 0.36
_INIT_TRIES_PER_BALL = 200
_INIT_RESTARTS = 1000
# Where the pusher waits between episodes: beyond the back wall, touching nothing.
PUSHER_PARK = np.array([0.0, WORKBENCH[3] + 0.5])


class InitialStateError(RuntimeError):
    """Rejection sampling of the initial positions did not find a valid layout."""


def encode_action(ball: int | str, direction: int) -> int:
    """Action index of pushing ``ball`` (index or colour) along push direction ``direction``."""
    b = COLORS.index(ball) if isinstance(ball, str) else int(ball)
    if not (0 <= b < N_BALLS and 0 <= direction < N_DIRECTIONS):
        raise ValueError(f"no action pushes ball {ball!r} along direction {direction!r}")
    return b * N_DIRECTIONS + int(direction)


def decode_action(action: int) -> tuple[int, int]:
    """(ball index, push direction index) of a Discrete(40) action."""
    a = int(action)
    if not 0 <= a < N_ACTIONS:
        raise ValueError(f"action must be in [0, {N_ACTIONS}); got {action!r}")
    return divmod(a, N_DIRECTIONS)


def sample_initial_obs(rng: np.random.Generator) -> np.ndarray:
    """Draw 5 ball centres uniformly, rejecting layouts with centres closer than 0.36.

    Each ball gets a bounded number of tries; when one runs out the whole draw restarts, so
    the sampler cannot loop forever.
    """
    for _ in range(_INIT_RESTARTS):
        placed: list[np.ndarray] = []
        for _ in range(N_BALLS):
            for _ in range(_INIT_TRIES_PER_BALL):
                p = np.array([rng.uniform(*INIT_X_RANGE), rng.uniform(*INIT_Y_RANGE)])
                if all(np.linalg.norm(p - q) >= INIT_MIN_CENTRE_DIST for q in placed):
                    placed.append(p)
                    break
            else:
                break
        if len(placed) == N_BALLS:
            return np.concatenate(placed)
    raise InitialStateError("could not place 5 balls without overlap; check the sampling ranges")


class ClevrRobotEnv(gym.Env):
    """CLEVR-Robot: push five coloured balls on a table to satisfy goals stated in language.

    ## Description
    Five spheres (radius 0.13) lie on a table inside invisible walls: 0 red, 1 blue, 2 green,
    3 purple, 4 cyan. A small pusher (a point mass on two slide joints driven by two motors)
    pushes one ball per step. Goals (``kalm.envs.clevr.goals``) are relations ("put red to the left of
    blue"), one-step moves, lines, gatherings and conjunctions; they are judged from the
    observation alone.

    ## Action Space
    ``Discrete(40)``: ``a = ball * 8 + d``.

    | d | push direction (x, y) |
    |---|-----------------------|
    | 0 | (1, 0)    right       |
    | 1 | (0, 1)    behind      |
    | 2 | (-1, 0)   left        |
    | 3 | (0, -1)   front       |
    | 4 | (.8, .8)              |
    | 5 | (-.8, .8)             |
    | 6 | (.8, -.8)             |
    | 7 | (-.8, -.8)            |

    One step teleports the pusher to ``ball_xy - 0.15 * dir`` (read from the current simulator
    state), zeroes its velocity and applies the control ``dir`` for 40 physics substeps
    (0.4 s). A clean push moves the ball 0.14-0.15 along ``dir``; it may knock other balls.

    ## Observation Space
    ``Box(-inf, inf, (10,), float32)``: the (x, y) centre of each ball in the fixed order.
    Ball centres stay inside the workbench x in [-0.6, 0.6], y in [-0.3, 0.7] (the walls).

    ## Rewards
    With a goal (``reset(options={"goal": goal})``): the goal's dense reward by default
    (``reward_mode="sparse"``: 1 on success, else 0). ``info`` reports ``success``,
    ``reward_dense`` and ``reward_sparse``, and which ball and direction were pushed.
    Without a goal the reward is 0.

    ## Starting State
    Ball centres drawn x ~ U[-0.5, 0.5], y ~ U[-0.3, 0.5], redrawn until all centres are at least
    0.36 apart; seeded by ``reset(seed=...)``. ``reset(options={"obs": obs})`` starts from a
    given observation instead (balls set at rest), and ``set_obs(obs)`` does so at any time.

    ## Episode End
    ``terminated`` when the goal holds (goal-reaching); ``truncated`` after the goal's horizon:
    50 steps, or 1 step for ``move`` goals (``max_episode_steps`` overrides).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    env_name = "clevr"  # the environment's registry name (kalm.envs.get_env)

    def __init__(
        self,
        goal: Goal | None = None,
        reward_mode: str = "dense",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        width: int = 320,
        height: int = 240,
    ) -> None:
        if reward_mode not in ("dense", "sparse"):
            raise ValueError(f"reward_mode must be 'dense' or 'sparse'; got {reward_mode!r}")
        self.model = mujoco.MjModel.from_xml_string(build_xml())
        self.data = mujoco.MjData(self.model)
        self.goal = goal
        self.reward_mode = reward_mode
        self._max_steps_override = max_episode_steps
        self.render_mode = render_mode
        self.width, self.height = width, height
        self._renderer = None
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float32)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._ball_qpos = np.array(
            [self.model.jnt_qposadr[self.model.joint(f"ball_{c}").id] for c in COLORS]
        )
        self._ball_qvel = np.array(
            [self.model.jnt_dofadr[self.model.joint(f"ball_{c}").id] for c in COLORS]
        )
        self._pusher_qpos = np.array(
            [self.model.jnt_qposadr[self.model.joint(n).id] for n in ("pusher_x", "pusher_y")]
        )
        self._pusher_qvel = np.array(
            [self.model.jnt_dofadr[self.model.joint(n).id] for n in ("pusher_x", "pusher_y")]
        )
        self._steps = 0
        self._start_obs = np.zeros(OBS_DIM)
        self.last_action: int | None = None

    # ----------------------------------------------------------------- state access
    def _get_obs(self) -> np.ndarray:
        q = self.data.qpos
        return np.concatenate([q[i : i + 2] for i in self._ball_qpos]).astype(np.float64)

    def get_obs(self) -> np.ndarray:
        """The current 10-d observation (float64 copy)."""
        return self._get_obs().copy()

    @property
    def pusher_xy(self) -> np.ndarray:
        return self.data.qpos[self._pusher_qpos].copy()

    def set_obs(self, obs: np.ndarray, pusher_xy: np.ndarray | None = None) -> None:
        """Put the balls at the centres in ``obs``, at rest on the table.

        Any observation is accepted (imagined states may be off the workbench or overlap); the
        pusher is parked out of the way unless ``pusher_xy`` is given.
        """
        obs = np.asarray(obs, dtype=np.float64).reshape(-1)
        if obs.shape != (OBS_DIM,) or not np.all(np.isfinite(obs)):
            raise ValueError(f"an observation is {OBS_DIM} finite floats; got {obs!r}")
        mujoco.mj_resetData(self.model, self.data)
        for i, adr in enumerate(self._ball_qpos):
            self.data.qpos[adr : adr + 7] = [obs[2 * i], obs[2 * i + 1], BALL_RADIUS, 1, 0, 0, 0]
        self.data.qpos[self._pusher_qpos] = PUSHER_PARK if pusher_xy is None else pusher_xy
        self.data.qvel[:] = 0.0
        self.data.ctrl[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    @property
    def max_episode_steps(self) -> int:
        if self._max_steps_override is not None:
            return self._max_steps_override
        return goal_horizon(self.goal) if self.goal is not None else MAX_EPISODE_STEPS

    @property
    def start_obs(self) -> np.ndarray:
        """The observation at the last reset (``move`` goals are judged against it)."""
        return self._start_obs.copy()

    # ----------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        if "goal" in options:
            self.goal = options["goal"]
        obs = options.get("obs")
        if obs is None:
            obs = sample_initial_obs(self.np_random)
        self.set_obs(obs)
        self._steps = 0
        self.last_action = None
        self._start_obs = self._get_obs()
        info: dict[str, Any] = {}
        if self.goal is not None:
            info["success"] = bool(self.goal.holds(self._start_obs, self._start_obs))
        return self._start_obs.astype(np.float32), info

    def push(self, action: int) -> None:
        """Run the physics of one push (no bookkeeping): teleport the pusher and drive it."""
        ball, d = decode_action(action)
        direction = PUSH_DIRECTIONS[d]
        adr = self._ball_qpos[ball]
        ball_xy = self.data.qpos[adr : adr + 2].copy()
        self.data.qpos[self._pusher_qpos] = ball_xy - PUSH_START_OFFSET * direction
        self.data.qvel[self._pusher_qvel] = 0.0
        self.data.ctrl[:] = direction
        mujoco.mj_step(self.model, self.data, nstep=PUSH_SUBSTEPS)
        # The push ends and the balls come to rest where they are: the state is the observation,
        # so set_obs(obs) + push(a) reproduces a step exactly (validity checks rely on it).
        self.set_obs(self._get_obs(), pusher_xy=self.pusher_xy)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action must be in [0, {N_ACTIONS}); got {action!r}")
        prev = self._get_obs()
        self.push(int(action))
        obs = self._get_obs()
        self._steps += 1
        self.last_action = int(action)
        ball, d = decode_action(action)
        info: dict[str, Any] = {"pushed_ball": COLORS[ball], "push_direction": d}
        reward, terminated = 0.0, False
        if self.goal is not None:
            dense = goal_reward(self.goal, prev, obs, self._start_obs, "dense")
            sparse = goal_reward(self.goal, prev, obs, self._start_obs, "sparse")
            success = sparse > 0
            info.update(success=success, reward_dense=dense, reward_sparse=sparse)
            reward = dense if self.reward_mode == "dense" else sparse
            terminated = success
        truncated = (not terminated) and self._steps >= self.max_episode_steps
        return obs.astype(np.float32), float(reward), terminated, truncated, info

    def simulate(self, obs: np.ndarray, action: int) -> np.ndarray:
        """The next observation after ``action`` from ``obs`` (balls at rest), as float64."""
        self.set_obs(obs)
        self.push(action)
        return self._get_obs()

    # ----------------------------------------------------------------- rendering
    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        from kalm.envs.clevr.render import SceneRenderer

        if self._renderer is None:
            self._renderer = SceneRenderer(self.width, self.height, model=self.model)
        return self._renderer.render_data(self.data)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def random_push_transitions(n: int, seed: int = 0, per_reset: int = 15,
                            env: ClevrRobotEnv | None = None) -> tuple[np.ndarray, ...]:
    """``n`` random pushes, ``per_reset`` after each seeded reset: states ``(n, 10)``, next states
    ``(n, 10)`` and actions ``(n,)`` (walls, contacts and balls shoved into others included)."""
    env = env or ClevrRobotEnv()
    rng = np.random.default_rng(seed)
    S, N, A = [], [], []
    while len(A) < n:
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        for _ in range(min(per_reset, n - len(A))):
            a = int(rng.integers(N_ACTIONS))
            env.push(a)
            S.append(obs)
            obs = env.get_obs()
            N.append(obs)
            A.append(a)
    return np.array(S), np.array(N), np.array(A, dtype=np.int64)
