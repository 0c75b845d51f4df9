"""Measure the side-by-side video of an imagined rollout: making its frames, and encoding them.

The rollout: ``--steps`` random pushes from the reset of ``--seed``; the imagined states are the
simulator's plus Gaussian noise (0.01), so the two panes differ a little. Three paths:

- ``reference``: the settings before issue 13: 4 frames a push at full quality (multisampling,
  MuJoCo's shadow map) from a renderer opened for the call, libx264's default preset, 10 fps.
- ``fast``: today's defaults, ``imagined_frames`` then ``mp4_bytes`` (the Validity page's path):
  2 frames a push at video quality (no multisampling, disc shadows) from the process's shared
  renderer, libx264 "veryfast", 5 fps (the same 0.4 s a push).
- ``app``: the app's path, ``kalm.ui.imagine.side_by_side_video`` (``imagined_video``: the same
  video, encoded while it is rendered); only its total is measured.

Cold: the first call in a fresh process (it opens the GL context and starts ffmpeg for the first
time); each cold figure is the median over ``--cold`` processes. Warm: the median of ``--warm``
later calls in one process. The machine's other load moves the figures: repeat and compare the
paths measured side by side. Usage:
    MUJOCO_GL=egl .venv/bin/python bench/video_bench.py [--steps 20] [--cold 3] [--warm 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

PATHS = ("reference", "fast", "app")


def rollout(steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(imagined states, simulator states, actions) of ``steps`` random pushes from a seeded reset."""
    from kalm.envs.clevr import N_ACTIONS, ClevrRobotEnv

    rng = np.random.default_rng(seed)
    env = ClevrRobotEnv()
    obs, _ = env.reset(seed=seed)
    observations, actions = [obs], []
    for _ in range(steps):
        actions.append(int(rng.integers(N_ACTIONS)))
        observations.append(env.step(actions[-1])[0])
    real = np.array(observations, dtype=np.float64)
    imagined = real + rng.normal(0.0, 0.01, real.shape)
    imagined[0] = real[0]
    return imagined, real, actions


def one_call(path: str, imagined: np.ndarray, actions: list[int]) -> dict:
    """Time one video by ``path``: seconds for the frames and for the encoding, and what came out."""
    import kalm.video
    from kalm.imagine.render import VIDEO_STEP_SECONDS, VIDEO_SUBSTEP_FRAMES, imagined_frames
    from kalm.render import SceneRenderer
    from kalm.ui.imagine import side_by_side_video

    t0 = time.perf_counter()
    if path == "reference":
        with SceneRenderer(quality="full") as r:
            frames = imagined_frames(imagined, actions, substep_frames=4, renderer=r)
        t1 = time.perf_counter()
        preset, kalm.video._X264_PRESET = kalm.video._X264_PRESET, "medium"
        try:
            mp4 = kalm.video.mp4_bytes(frames, fps=10)
        finally:
            kalm.video._X264_PRESET = preset
        t2 = time.perf_counter()
        frames_s, encode_s, fps = t1 - t0, t2 - t1, 10.0
    elif path == "fast":
        frames = imagined_frames(imagined, actions)
        t1 = time.perf_counter()
        mp4 = kalm.video.mp4_bytes(frames)
        t2 = time.perf_counter()
        frames_s, encode_s, fps = t1 - t0, t2 - t1, frames.fps
    else:
        mp4, steps = side_by_side_video(imagined, actions)  # steps: a frame a step
        t2 = time.perf_counter()
        frames_s = encode_s = float("nan")
        frames = [steps[0]] * (len(actions) * VIDEO_SUBSTEP_FRAMES + 1)  # as many as in the video
        fps = VIDEO_SUBSTEP_FRAMES / VIDEO_STEP_SECONDS
    return {"frames_s": frames_s, "encode_s": encode_s, "total_s": t2 - t0, "n_frames": len(frames),
            "size": list(frames[0].shape[:2]), "fps": fps, "kib": len(mp4) / 1024}


def child(args: argparse.Namespace) -> None:
    """One process: a cold call, then ``--warm`` warm ones; prints the timings as JSON."""
    imagined, _, actions = rollout(args.steps, args.seed)
    calls = [one_call(args.child, imagined, actions) for _ in range(1 + args.warm)]
    print(json.dumps(calls))


def run_child(path: str, args: argparse.Namespace, warm: int) -> list[dict]:
    cmd = [sys.executable, __file__, "--child", path, "--steps", str(args.steps),
           "--seed", str(args.seed), "--warm", str(warm)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _s(seconds: float) -> str:
    return f"{'-':>7}" if np.isnan(seconds) else f"{seconds:7.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="pushes in the rollout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cold", type=int, default=3, help="fresh processes per path (cold calls)")
    p.add_argument("--warm", type=int, default=5, help="warm calls per path, after the cold one")
    p.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    print(f"MUJOCO_GL={os.environ['MUJOCO_GL']}  {os.cpu_count()} CPUs  "
          f"{args.steps}-step rollout, seed {args.seed}  (medians; seconds)")
    print(f"{'path':<10} {'call':<5} {'frames':>7} {'encode':>7} {'total':>7}   video")
    for path in PATHS:
        runs = [run_child(path, args, args.warm if i == 0 else 0) for i in range(args.cold)]
        cold = [r[0] for r in runs]
        warm = runs[0][1:]
        for name, calls in (("cold", cold), ("warm", warm)):
            if not calls:
                continue
            med = {k: float(np.median([c[k] for c in calls])) for k in ("frames_s", "encode_s", "total_s")}
            c = calls[0]
            print(f"{path:<10} {name:<5} {_s(med['frames_s'])} {_s(med['encode_s'])} "
                  f"{med['total_s']:7.3f}   {c['n_frames']} frames {c['size'][1]}x{c['size'][0]} "
                  f"at {c['fps']:g} fps, {c['kib']:.0f} KiB  (n={len(calls)})")


if __name__ == "__main__":
    main()
