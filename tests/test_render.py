"""Rendering the scene (kalm.render) and writing videos (kalm.video)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import threading

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

import kalm.render
from kalm.envs.clevr import ClevrRobotEnv, encode_action
from kalm.envs.clevr_model import BALL_COLORS_RGBA, BALL_RADIUS, WORKBENCH
from kalm.render import (
    SceneRenderer,
    episode_frame_count,
    episode_frames,
    iter_episode_frames,
    shared_renderer,
    side_by_side,
)
from kalm.video import Mp4Encoder, VideoFrames, mp4_bytes, write_gif, write_mp4

W, H = 320, 240
CORNERS = np.array([-0.6, -0.3, 0.6, -0.3, -0.6, 0.7, 0.6, 0.7, 0.0, 0.2])


@pytest.fixture(scope="module")
def renderer():
    with SceneRenderer(W, H) as r:
        yield r


@pytest.fixture(scope="module")
def start_obs():
    obs, _ = ClevrRobotEnv().reset(seed=0)
    return obs.astype(np.float64)


@pytest.fixture(scope="module")
def episode(start_obs):
    """A 3-step episode recorded from the environment: 4 observations, 3 actions."""
    env = ClevrRobotEnv()
    env.reset(options={"obs": start_obs})
    actions = [encode_action("red", 0), encode_action("blue", 1), encode_action("green", 7)]
    observations = [start_obs] + [env.step(a)[0].astype(np.float64) for a in actions]
    return np.array(observations), actions


def ball_pixels(r: SceneRenderer, obs: np.ndarray) -> np.ndarray:
    """Pixel (column, row) of each ball's centre."""
    xyz = np.column_stack([obs.reshape(5, 2), np.full(5, BALL_RADIUS)])
    return r.world_to_pixel(xyz)


def nearest_palette_colour(patch: np.ndarray) -> int:
    """Index of the ball colour whose chroma is closest (by angle) to the patch's median colour."""
    rgb = np.median(patch.reshape(-1, 3), axis=0)
    chroma = rgb - rgb.mean()
    palette = np.array([c[:3] for c in BALL_COLORS_RGBA])
    palette = palette - palette.mean(axis=1, keepdims=True)
    cos = palette @ chroma / (np.linalg.norm(palette, axis=1) * np.linalg.norm(chroma) + 1e-9)
    return int(np.argmax(cos))


def test_frame_is_a_non_blank_rgb_image(renderer, start_obs):
    frame = renderer.render_obs(start_obs)
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    assert frame.std() > 20


@pytest.mark.parametrize("layout", ["seeded", "corners"])
@pytest.mark.parametrize("camera", ["slanted", "top"])
def test_each_ball_is_in_view_in_its_own_colour(start_obs, layout, camera):
    obs = start_obs if layout == "seeded" else CORNERS
    with SceneRenderer(W, H, camera=camera) as r:
        frame = r.render_obs(obs)
        centres = ball_pixels(r, obs)
        # a ball's rim must be inside the frame too
        rims = r.world_to_pixel(np.column_stack([obs.reshape(5, 2) - [BALL_RADIUS, BALL_RADIUS], np.zeros(5)]))
    assert np.all((rims >= 0) & (rims < [W, H])), rims
    for i, (c, row) in enumerate(np.round(centres).astype(int)):
        assert 3 <= c < W - 3 and 3 <= row < H - 3
        assert nearest_palette_colour(frame[row - 2 : row + 3, c - 2 : c + 3]) == i


def test_whole_workbench_is_in_the_slanted_view(renderer):
    x0, x1, y0, y1 = WORKBENCH
    r = BALL_RADIUS
    corners = [(x, y, z) for x in (x0 - r, x1 + r) for y in (y0 - r, y1 + r) for z in (0, 2 * r)]
    px = renderer.world_to_pixel(np.array(corners, dtype=float))
    assert np.all((px >= 0) & (px < [W, H])), px


def test_frame_changes_where_a_ball_moves(renderer, start_obs):
    before = renderer.render_obs(start_obs)
    moved = start_obs.copy()
    moved[0] += 0.2  # red to the right
    after = renderer.render_obs(moved)
    diff = np.abs(after.astype(int) - before.astype(int)).sum(axis=2) > 30
    assert diff.sum() > 200
    # the change is around red's old and new places, not elsewhere
    (c0, r0), (c1, r1) = ball_pixels(renderer, start_obs)[0], ball_pixels(renderer, moved)[0]
    rows, cols = np.nonzero(diff)
    near = np.minimum(np.hypot(cols - c0, rows - r0), np.hypot(cols - c1, rows - r1)) < 45
    assert near.mean() > 0.95


def test_pusher_is_drawn_only_where_it_pushes(renderer, start_obs):
    plain = renderer.render_obs(start_obs)
    with_pusher = renderer.render_obs(start_obs, pusher_xy=start_obs[:2] - [0.15, 0.0])
    assert (np.abs(with_pusher.astype(int) - plain.astype(int)).sum(axis=2) > 30).sum() > 20
    # After a reset the env parks its pusher beyond the back wall: it is not drawn.
    env = ClevrRobotEnv()
    env.reset(options={"obs": start_obs})
    np.testing.assert_array_equal(renderer.render_data(env.data), plain)


def test_env_render_gives_frames():
    env = ClevrRobotEnv(render_mode="rgb_array", width=W, height=H)
    env.reset(seed=1)
    env.step(3)
    frame = env.render()
    env.close()
    assert frame.shape == (H, W, 3) and frame.std() > 20


@pytest.mark.parametrize("mode", ["simulate", "states"])
@pytest.mark.parametrize("substep_frames", [1, 4])
def test_episode_frame_counts(renderer, episode, mode, substep_frames):
    obs, actions = episode
    frames = episode_frames(obs, actions, mode=mode, substep_frames=substep_frames, renderer=renderer)
    assert len(frames) == 3 * substep_frames + 1 == episode_frame_count(4, 3, mode, substep_frames)
    assert all(f.shape == (H, W, 3) for f in frames)
    # without the final observation, only the physics knows where the last push ends
    frames = episode_frames(obs[:3], actions, mode=mode, substep_frames=substep_frames, renderer=renderer)
    assert len(frames) == episode_frame_count(3, 3, mode, substep_frames)
    assert len(frames) == 3 * substep_frames + (mode == "simulate")


def test_simulated_frames_follow_the_physics(renderer, start_obs):
    a = encode_action("red", 0)
    frames = episode_frames([start_obs], [a], substep_frames=4, renderer=renderer)
    # the ball moves during the push, and the push ends where ClevrRobotEnv.push ends
    assert not np.array_equal(frames[0], frames[3])
    end = ClevrRobotEnv().simulate(start_obs, a)
    np.testing.assert_array_equal(frames[-1], renderer.render_obs(end))


def test_state_frames_draw_the_given_states(renderer, episode):
    obs, actions = episode
    frames = episode_frames(obs, actions, mode="states", substep_frames=2, renderer=renderer)
    np.testing.assert_array_equal(frames[-1], renderer.render_obs(obs[-1]))
    # any state, even one no physics would reach (two balls overlapping), can be drawn
    odd = obs.copy()
    odd[1, 2:4] = odd[1, 0:2]
    assert len(episode_frames(odd, actions, mode="states", renderer=renderer)) == 13


def test_episode_frames_rejects_bad_input(renderer, episode):
    obs, actions = episode
    with pytest.raises(ValueError, match="observations"):
        episode_frames(obs[:2], actions, renderer=renderer)
    with pytest.raises(ValueError, match="mode"):
        episode_frames(obs, actions, mode="dream", renderer=renderer)
    with pytest.raises(ValueError, match="actions"):
        episode_frames(obs, [0, 1, 40], renderer=renderer)


def test_side_by_side_pads_and_labels():
    a = [np.full((H, W, 3), 200, np.uint8)] * 3
    b = [np.full((H, W, 3), 100, np.uint8)] * 5
    out = side_by_side(a, b)
    assert len(out) == 5 and out[0].shape == (H, 2 * W, 3)
    np.testing.assert_array_equal(out[4][H // 2, W // 2], [200, 200, 200])  # held on its last frame
    assert (out[0][:20, :80] != 200).any() and (out[0][:20, W : W + 80] != 100).any()  # labels
    unlabelled = side_by_side(a, b, labels=None)
    assert (unlabelled[0][:, :W] == 200).all()


def _distinct_frames(n: int, h: int = H, w: int = W) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_write_mp4_is_h264_with_every_frame(tmp_path, renderer, episode):
    obs, actions = episode
    frames = episode_frames(obs, actions, renderer=renderer)
    path = write_mp4(frames, tmp_path / "episode.mp4", fps=10)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["size"] == (W, H)
    assert sum(1 for _ in reader) == len(frames)
    assert iio.imread(path, index=0).shape == (H, W, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["episode.mp4"]  # no temporary left behind


def test_write_mp4_pads_sides_to_multiples_of_16(tmp_path):
    path = write_mp4(_distinct_frames(3, 70, 100), tmp_path / "odd.mp4")
    assert next(imageio_ffmpeg.read_frames(str(path)))["size"] == (112, 80)
    data = mp4_bytes(_distinct_frames(3, 70, 100))
    assert data[4:8] == b"ftyp"


def test_write_mp4_rejects_mixed_sizes(tmp_path):
    with pytest.raises(ValueError, match="size"):
        write_mp4(_distinct_frames(2) + _distinct_frames(1, 64, 64), tmp_path / "x.mp4")
    assert not list(tmp_path.iterdir())


def test_write_gif_is_readable(tmp_path):
    path = write_gif(_distinct_frames(4, 48, 64), tmp_path / "episode.gif", fps=5)
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (4, 48, 64)


# ----------------------------------------------------------------- video quality, shared renderer
@pytest.fixture(scope="module")
def video_renderer():
    with SceneRenderer(W, H, quality="video") as r:
        yield r


def test_video_quality_draws_the_same_scene(renderer, video_renderer, start_obs):
    full = renderer.render_obs(start_obs).astype(int)
    fast = video_renderer.render_obs(start_obs)
    assert fast.shape == (H, W, 3)
    # each ball where it is, in its colour; elsewhere nearly the same picture
    for i, (c, row) in enumerate(np.round(ball_pixels(video_renderer, start_obs)).astype(int)):
        assert nearest_palette_colour(fast[row - 2 : row + 3, c - 2 : c + 3]) == i
    assert np.abs(fast.astype(int) - full).mean() < 4


def test_video_quality_discs_fall_where_the_shadows_do(renderer, video_renderer):
    obs = CORNERS.copy()  # cyan in the middle of the workbench, the others in its corners
    no_cyan = obs.copy()
    no_cyan[8:10] = [0.0, -50.0]
    centres = []
    for r in (renderer, video_renderer):
        with_cyan = r.render_obs(obs).astype(int)
        darker = (r.render_obs(no_cyan).astype(int) - with_cyan).sum(axis=2) > 30
        grey = np.ptp(with_cyan, axis=2) < 25  # the shadow is grey, the ball is not
        rows, cols = np.nonzero(darker & grey)
        assert len(rows) > 30
        centres.append((cols.mean(), rows.mean()))
    # the disc's centre within a few pixels of the real shadow's
    assert np.hypot(*np.subtract(*centres)) < 4, centres


def test_shared_renderer_is_reused(start_obs):
    with shared_renderer(W, H) as r1:
        a = r1.render_obs(start_obs)
    with shared_renderer(W, H) as r2:
        b = r2.render_obs(start_obs)
    assert r1 is r2 and r1.quality == "video"
    np.testing.assert_array_equal(a, b)
    with shared_renderer(W, H, quality="full") as r3:
        assert r3 is not r1 and r3.quality == "full"
    # episode_frames without a renderer borrows the shared one of full quality
    opened = []
    real_init = SceneRenderer.__init__

    def counting_init(self, *args, **kw):
        opened.append(1)
        real_init(self, *args, **kw)

    try:
        SceneRenderer.__init__ = counting_init
        for _ in range(2):
            episode_frames([start_obs], [encode_action("red", 0)], substep_frames=1)
    finally:
        SceneRenderer.__init__ = real_init
    assert not opened


@pytest.mark.parametrize("first_in", ["this thread", "another thread"])
def test_shared_renderer_works_from_another_thread(start_obs, first_in):
    size = (160, 128) if first_in == "this thread" else (176, 144)  # a renderer of its own
    assert (*size, "slanted", "video") not in kalm.render._SHARED
    drawn, errors = [], []

    def draw():
        try:
            with shared_renderer(*size) as r:
                drawn.append((r, r.render_obs(start_obs)))
        except Exception as e:  # reported below, in the test's thread
            errors.append(e)

    def in_thread():
        t = threading.Thread(target=draw)
        t.start()
        t.join()

    order = [draw, in_thread, draw] if first_in == "this thread" else [in_thread, draw, in_thread]
    for step in order:
        step()
    assert not errors, errors
    assert len(drawn) == 3 and drawn[0][0] is drawn[1][0] is drawn[2][0]
    for _, frame in drawn[1:]:
        np.testing.assert_array_equal(frame, drawn[0][1])
    assert frame.shape == (size[1], size[0], 3) and frame.std() > 20


def test_shared_renderer_serves_one_thread_at_a_time(start_obs):
    inside, overlaps = [0], []

    def draw():
        with shared_renderer(W, H) as r:
            inside[0] += 1
            overlaps.append(inside[0])
            r.render_obs(start_obs)
            inside[0] -= 1

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]


@pytest.mark.parametrize("substep_frames", [1, 2])
def test_episode_iterators_take_turns_on_one_renderer(video_renderer, episode, substep_frames):
    obs, actions = episode
    kw = dict(substep_frames=substep_frames, renderer=video_renderer)
    states = episode_frames(obs, actions, mode="states", **kw)
    simulated = episode_frames(obs, actions, mode="simulate", **kw)
    a = iter_episode_frames(obs, actions, mode="states", **kw)
    b = iter_episode_frames(obs, actions, mode="simulate", **kw)
    pairs = list(zip(a, b, strict=True))
    assert len(pairs) == episode_frame_count(4, 3, "states", substep_frames) == 3 * substep_frames + 1
    for (x, y), s, m in zip(pairs, states, simulated):
        np.testing.assert_array_equal(x, s)
        np.testing.assert_array_equal(y, m)


def test_scene_renderer_rejects_an_unknown_quality():
    with pytest.raises(ValueError, match="quality"):
        SceneRenderer(W, H, quality="ultra")


# ----------------------------------------------------------------- encoding while drawing
def test_mp4_encoder_gives_the_video_of_its_frames(tmp_path):
    frames = _distinct_frames(6, 64, 96)
    with Mp4Encoder(fps=5) as enc:
        for f in frames:
            enc.add(f)
        data = enc.finish()
    assert data[4:8] == b"ftyp"
    (tmp_path / "v.mp4").write_bytes(data)
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "v.mp4"))
    meta = next(reader)
    assert meta["codec"] == "h264" and meta["size"] == (96, 64) and meta["fps"] == 5
    assert sum(1 for _ in reader) == 6


def test_mp4_encoder_rejects_mixed_sizes_and_nothing():
    with Mp4Encoder() as enc:
        enc.add(_distinct_frames(1)[0])
        with pytest.raises(ValueError, match="size"):
            enc.add(_distinct_frames(1, 64, 64)[0])
    with Mp4Encoder() as enc, pytest.raises(ValueError, match="no frames"):
        enc.finish()


def test_video_frames_carry_their_rate(tmp_path):
    frames = VideoFrames(_distinct_frames(3, 48, 64), fps=4)
    assert isinstance(frames, list) and frames.fps == 4
    meta = next(imageio_ffmpeg.read_frames(str(write_mp4(frames, tmp_path / "a.mp4"))))
    assert meta["fps"] == 4
    meta = next(imageio_ffmpeg.read_frames(str(write_mp4(frames, tmp_path / "b.mp4", fps=8))))
    assert meta["fps"] == 8
    meta = next(imageio_ffmpeg.read_frames(str(write_mp4(list(frames), tmp_path / "c.mp4"))))
    assert meta["fps"] == 10

