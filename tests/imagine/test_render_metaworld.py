"""Videos of imagined Meta-World rollouts (kalm.imagine.render through the environment): the
imagined states posed in the scene beside the simulator's open-loop replay from the seeded
reset; and CLEVR-Robot's videos, now made through its environment, unchanged."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import imageio_ffmpeg
import numpy as np
import pytest

from kalm.envs import get_env
from kalm.imagine.render import (
    VIDEO_STEP_SECONDS,
    VIDEO_SUBSTEP_FRAMES,
    imagined_frames,
    imagined_video,
    render_examples,
)
from kalm.ui.imagine import side_by_side_video, video_stride

W, H = 320, 240
LABEL_ROWS = 30
MW = get_env("metaworld")
SEED = 4


@pytest.fixture(scope="module")
def mw_rollout():
    """4 real steps of reach-wall from the reset of SEED, the imagined hand pushed 10 cm off at
    step 3 and a NaN at step 2."""
    from kalm.envs.metaworld.tasks import TaskGoal

    goal = TaskGoal("reach-wall")
    sim = MW.make(goal)
    try:
        obs, _ = sim.reset(seed=SEED, options={"goal": goal})
        acts = np.array([[1, 0, 0, -1], [1, 0.5, 0, -1], [0, 1, 0, 1], [-1, 0, 1, 1]], np.float32)
        states = [obs]
        for a in acts:
            states.append(sim.step(a)[0])
    finally:
        sim.close()
    imagined = np.array(states, np.float64)
    imagined[3, 0] += 0.1
    imagined[2, 5] = np.nan
    return goal.to_dict(), imagined, acts


def test_metaworld_video_is_posed_states_beside_the_replay(mw_rollout):
    goal, obs, acts = mw_rollout
    frames = imagined_frames(obs, acts, env="metaworld", goal=goal, seed=SEED)
    assert len(frames) == len(acts) + 1  # one frame a step
    assert frames.fps == MW.render_fps == 10
    assert all(f.shape == (H, 2 * W, 3) and f.dtype == np.uint8 for f in frames)
    alone = imagined_frames(obs, acts, side_by_side_replay=False, env="metaworld", goal=goal,
                            seed=SEED)
    assert len(alone) == len(frames) and alone[0].shape == (H, W, 3)
    for f, a in zip(frames, alone):
        np.testing.assert_array_equal(f[LABEL_ROWS:, :W], a[LABEL_ROWS:])
        assert (f[:LABEL_ROWS, :W] != a[:LABEL_ROWS]).any()  # labelled "imagined"
    real = MW.replay_frames(goal, SEED, acts, width=W, height=H)
    for f, b in zip(frames, real):  # the right pane: the simulator from the seeded reset
        assert np.abs(f[LABEL_ROWS:, W:].astype(int) - b[LABEL_ROWS:].astype(int)).mean() < 1.0
        assert (f[:LABEL_ROWS, W:] != b[:LABEL_ROWS]).any()  # labelled "simulator"
    # s_0 is the real reset: both panes agree; the hand imagined 10 cm off shows at step 3
    d0 = np.abs(frames[0][LABEL_ROWS:, :W].astype(int) - frames[0][LABEL_ROWS:, W:].astype(int))
    d3 = np.abs(frames[3][LABEL_ROWS:, :W].astype(int) - frames[3][LABEL_ROWS:, W:].astype(int))
    assert d3.mean() > d0.mean() + 0.5


def test_metaworld_mp4_and_the_apps_frames_with_a_stride(mw_rollout, tmp_path):
    goal, obs, acts = mw_rollout
    mp4, frames = imagined_video(obs, acts, env="metaworld", goal=goal, seed=SEED,
                                 step_stride=2)
    assert len(frames) == 3 and frames.fps == 5  # steps 0, 2, 4 at the same pace
    path = tmp_path / "mw.mp4"
    path.write_bytes(mp4)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["codec"] == "h264" and meta["size"] == (2 * W, H)
    assert meta["size"][0] % 16 == 0 and meta["size"][1] % 16 == 0
    assert sum(1 for _ in reader) == 3
    assert video_stride(len(acts), "metaworld") == 1 and video_stride(100, "metaworld") == 4
    assert video_stride(100, "clevr") == 1
    mp4, steps = side_by_side_video(obs, acts, env="metaworld", goal=goal, seed=SEED)
    assert mp4[4:8] == b"ftyp" and steps.shape == (len(acts) + 1, H, 2 * W, 3)


def test_render_examples_renders_each_episode_in_its_environment(mw_rollout, tmp_path):
    from kalm.data.episodes import Dataset, Episode

    goal, obs, acts = mw_rollout
    ep = Episode(text="Reach the target, with a wall in the way.", goal=goal, category="easy",
                 seed=SEED, observations=obs.astype(np.float32), actions=acts,
                 rewards=np.zeros(len(acts), np.float32),
                 rewards_sparse=np.zeros(len(acts), np.float32),
                 terminals=np.zeros(len(acts), bool), success=False, imagined=True,
                 env="metaworld", info={"index": 7})
    (path,) = render_examples(Dataset([ep]), tmp_path / "videos", per_category=2)
    assert path.name == "easy_00007_nomatch.mp4"
    meta = next(imageio_ffmpeg.read_frames(str(path)))
    assert meta["codec"] == "h264" and meta["size"] == (2 * W, H)


def test_clevr_videos_through_the_environment_are_unchanged():
    from kalm.envs.clevr import ClevrRobotEnv, encode_action
    from kalm.envs.clevr import imagined as clevr_imagined

    env = ClevrRobotEnv()
    s0, _ = env.reset(seed=2)
    acts = np.array([encode_action("red", 0), encode_action("blue", 3)])
    obs = [s0.astype(np.float64)]
    for a in acts:
        obs.append(env.simulate(obs[-1], int(a)))
    obs = np.array(obs)
    obs[2, 4] += 0.3
    frames = imagined_frames(obs, acts)
    direct = clevr_imagined.imagined_frames(obs, acts)
    hook = get_env("clevr").imagined_video_frames(None, None, obs, acts)
    assert len(frames) == len(direct) == len(hook) == 2 * VIDEO_SUBSTEP_FRAMES + 1
    assert frames.fps == direct.fps == hook.fps == VIDEO_SUBSTEP_FRAMES / VIDEO_STEP_SECONDS
    for a, b, c in zip(frames, direct, hook, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    mp4, _ = imagined_video(obs, acts)
    mp4_env, _ = imagined_video(obs, acts, env="clevr", goal={"kind": "ignored"}, seed=99)
    assert mp4 == mp4_env  # goal and seed do not matter: CLEVR-Robot replays from s_0
