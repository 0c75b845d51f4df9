"""The side-by-side video of an imagined rollout (kalm.imagine.render) and the app's path to it."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import imageio_ffmpeg
import numpy as np
import pytest

from kalm.envs.clevr import ClevrRobotEnv, encode_action
from kalm.imagine.render import (
    VIDEO_STEP_SECONDS,
    VIDEO_SUBSTEP_FRAMES,
    imagined_frames,
    imagined_video,
)
from kalm.imagine.validity import replay_rollout
from kalm.render import episode_frame_count, episode_frames, shared_renderer
from kalm.ui.imagine import side_by_side_video

W, H = 320, 240
LABEL_ROWS = 30  # the panes' labels are drawn in their top rows


@pytest.fixture(scope="module")
def rollout():
    """A 3-step rollout whose imagination drifts from the physics at its last step."""
    env = ClevrRobotEnv()
    s0, _ = env.reset(seed=2)
    acts = [encode_action("red", 0), encode_action("blue", 3), encode_action("green", 6)]
    obs = [s0.astype(np.float64)]
    for a in acts:
        obs.append(env.simulate(obs[-1], a))
    imagined = np.array(obs)
    imagined[3, 4] += 0.3
    return imagined, np.array(acts)


def test_two_frames_a_push_at_the_old_pace(rollout):
    obs, acts = rollout
    frames = imagined_frames(obs, acts)
    assert VIDEO_SUBSTEP_FRAMES == 2
    assert len(frames) == episode_frame_count(4, 3, "states", VIDEO_SUBSTEP_FRAMES) == 7
    assert frames[0].shape == (H, 2 * W, 3)
    assert frames.fps * VIDEO_STEP_SECONDS == VIDEO_SUBSTEP_FRAMES  # a push lasts 0.4 s
    assert len(imagined_frames(obs, acts, substep_frames=4)) == 13


def test_panes_are_the_imagined_states_and_the_simulators_replay(rollout):
    obs, acts = rollout
    frames = imagined_frames(obs, acts)
    with shared_renderer(W, H) as r:
        imagined = episode_frames(obs, acts, mode="states", substep_frames=2, renderer=r)
        replayed = replay_rollout(ClevrRobotEnv(), obs[0], acts)
        simulated = episode_frames(replayed, acts, mode="simulate", substep_frames=2, renderer=r)
    # both panes are drawn in one pass (one readback): the rasteriser may round a pixel's
    # shading differently at another viewport offset, by one level at most
    for f, a, b in zip(frames, imagined, simulated, strict=True):
        np.testing.assert_allclose(f[LABEL_ROWS:, :W], a[LABEL_ROWS:], atol=1, rtol=0)
        np.testing.assert_allclose(f[LABEL_ROWS:, W:], b[LABEL_ROWS:], atol=1, rtol=0)
        assert (f[:LABEL_ROWS, :W] != a[:LABEL_ROWS]).any()  # labelled
    # the pusher moves between a push's two frames, and the drift shows at the end
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).sum(axis=2).max() > 100
    left, right = frames[-1][:, :W].astype(int), frames[-1][:, W:].astype(int)
    assert np.abs(left - right).mean() > 0.5


def test_one_pass_panes_match_panes_drawn_apart(rollout):
    from kalm.render import SceneRenderer

    obs, _ = rollout
    env = ClevrRobotEnv()
    env.set_obs(obs[1], pusher_xy=obs[1][:2] - 0.1)
    with SceneRenderer(2 * W, H, quality="video") as wide, \
            SceneRenderer(W, H, quality="video") as one:
        frame = wide.render_panes([(obs[0], None), env.data])
        left, right = one.render_obs(obs[0]), one._render(env.data)
        with pytest.raises(ValueError, match="equal panes"):
            wide.render_panes([(obs[0], None)] * 3)
    assert frame.shape == (H, 2 * W, 3)
    np.testing.assert_allclose(frame[:, :W], left, atol=1, rtol=0)
    np.testing.assert_allclose(frame[:, W:], right, atol=1, rtol=0)
    assert np.abs(left.astype(int) - right.astype(int)).max() > 50  # two different scenes


def test_video_is_encoded_while_drawn_into_the_same_video(rollout, tmp_path):
    obs, acts = rollout
    mp4, frames = imagined_video(obs, acts)
    alone = imagined_frames(obs, acts)
    assert len(frames) == len(alone) == 7
    for a, b in zip(frames, alone):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "v.mp4"
    path.write_bytes(mp4)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["codec"] == "h264" and meta["size"] == (2 * W, H)
    assert meta["fps"] == VIDEO_SUBSTEP_FRAMES / VIDEO_STEP_SECONDS
    assert sum(1 for _ in reader) == 7


def test_app_path_gives_the_video_and_a_frame_per_step(rollout):
    obs, acts = rollout
    mp4, steps = side_by_side_video(obs, acts)
    assert mp4[4:8] == b"ftyp"
    frames = imagined_frames(obs, acts)
    assert steps.shape == (len(acts) + 1, H, 2 * W, 3)
    for t in range(len(acts) + 1):
        np.testing.assert_array_equal(steps[t], frames[t * VIDEO_SUBSTEP_FRAMES])


def test_rollout_cut_short_still_lines_up(rollout):
    obs, acts = rollout
    frames = imagined_frames(obs[:3], acts)  # no final state: the imagined side is one short
    assert len(frames) == 3 * VIDEO_SUBSTEP_FRAMES + 1
    np.testing.assert_array_equal(frames[-1][LABEL_ROWS:, :W], frames[-2][LABEL_ROWS:, :W])
