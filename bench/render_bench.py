"""Measure rendering and video encoding speed.

Prints: render_obs frames per second (after warm-up); for one 50-step episode of random pushes,
the time to make its frames (mode "simulate" with 4 frames per push, and mode "states") and to
encode them as H.264 MP4; and the time to encode the GIF. Timings depend on the OpenGL backend
(MUJOCO_GL=egl on a GPU, or Mesa's software EGL / OSMesa on a CPU): the backend is printed.
Usage: MUJOCO_GL=egl python bench/render_bench.py [--frames 200] [--steps 50] [--width 320 --height 240]
       [--quality full|video]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def gl_vendor() -> str:
    """The OpenGL renderer string (e.g. 'llvmpipe' for Mesa's software rasteriser)."""
    try:
        from OpenGL import GL

        return GL.glGetString(GL.GL_RENDERER).decode()
    except Exception as e:  # informative only
        return f"unknown ({type(e).__name__})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200, help="frames timed for render_obs")
    p.add_argument("--steps", type=int, default=50, help="pushes in the episode")
    p.add_argument("--substep-frames", type=int, default=4, help="frames per push (mode simulate)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--camera", default="slanted")
    p.add_argument("--quality", default="full", choices=("full", "video"),
                   help="SceneRenderer quality (video: no multisampling, disc shadows)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from kalm.envs.clevr import N_ACTIONS, ClevrRobotEnv, sample_initial_obs
    from kalm.render import SceneRenderer, episode_frames
    from kalm.video import write_gif, write_mp4

    rng = np.random.default_rng(args.seed)
    layouts = [sample_initial_obs(rng) for _ in range(args.frames)]
    env = ClevrRobotEnv()
    obs, _ = env.reset(seed=args.seed)
    observations, actions = [obs], []
    for _ in range(args.steps):
        actions.append(int(rng.integers(N_ACTIONS)))
        observations.append(env.step(actions[-1])[0])
    observations = np.array(observations, dtype=np.float64)

    t0 = time.perf_counter()
    r = SceneRenderer(args.width, args.height, camera=args.camera, quality=args.quality)
    t_open = time.perf_counter() - t0
    print(f"MUJOCO_GL={os.environ['MUJOCO_GL']}  renderer: {gl_vendor()}  "
          f"frame {args.width}x{args.height}, camera {args.camera!r}, quality {args.quality!r}")
    print(f"open renderer (GL context)        {t_open * 1e3:8.1f} ms")
    with r:
        for o in layouts[:10]:  # warm-up
            r.render_obs(o)
        t0 = time.perf_counter()
        for o in layouts:
            r.render_obs(o)
        dt = time.perf_counter() - t0
        print(f"render_obs                        {args.frames / dt:8.1f} frames/s "
              f"({dt / args.frames * 1e3:.1f} ms/frame over {args.frames})")

        with tempfile.TemporaryDirectory(prefix="kalm_render_bench_") as d:
            for mode in ("simulate", "states"):
                t0 = time.perf_counter()
                frames = episode_frames(observations, actions, mode=mode,
                                        substep_frames=args.substep_frames, renderer=r)
                t_frames = time.perf_counter() - t0
                t0 = time.perf_counter()
                mp4 = write_mp4(frames, Path(d) / f"{mode}.mp4", fps=10)
                t_mp4 = time.perf_counter() - t0
                print(f"episode_frames {mode:<8} {args.steps} steps  {len(frames):4d} frames "
                      f"{t_frames:6.2f} s  + MP4 encode {t_mp4:5.2f} s "
                      f"({mp4.stat().st_size / 1024:.0f} KiB, {len(frames) / 10:.1f} s of video)")
                if mode == "simulate":
                    t0 = time.perf_counter()
                    gif = write_gif(frames, Path(d) / "simulate.gif", fps=10)
                    t_gif = time.perf_counter() - t0
                    print(f"GIF encode               {args.steps} steps  {len(frames):4d} frames "
                          f"{t_gif:6.2f} s  ({gif.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
