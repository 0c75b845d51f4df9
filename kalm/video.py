"""Frames to video files: H.264 MP4 (for browsers and ``st.video``) and GIF.

Frames are ``(H, W, 3)`` uint8 arrays, e.g. from ``kalm.render.episode_frames``. Files are written
atomically: to a temporary file in the target folder, then renamed over the target, so a reader
(a UI polling a run folder) never sees half a video.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["MACRO_BLOCK_SIZE", "mp4_bytes", "pad_to_multiple", "write_gif", "write_mp4"]

# H.264 encoders work on 16x16 macro blocks; yuv420p needs even sides. Frames are padded to this.
MACRO_BLOCK_SIZE = 16
# libx264's constant rate factor: 18 is visually near-lossless for these flat synthetic scenes.
_X264_CRF = 18


def _as_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Check frames are RGB uint8 images of one size; return them as a list."""
    out = [np.asarray(f) for f in frames]
    if not out:
        raise ValueError("no frames to write: the episode rendered to an empty list")
    shape = out[0].shape
    for i, f in enumerate(out):
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise ValueError(f"frame {i} must be an (H, W, 3) uint8 image; got {f.shape} {f.dtype}")
        if f.shape != shape:
            raise ValueError(f"frame {i} is {f.shape[:2]} but frame 0 is {shape[:2]}; frames must share a size")
    return out


def pad_to_multiple(frame: np.ndarray, multiple: int = MACRO_BLOCK_SIZE) -> np.ndarray:
    """Pad ``frame`` at the bottom and right (repeating the edge) so both sides divide ``multiple``."""
    h, w = frame.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return frame
    return np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")


@contextmanager
def _atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); rename it onto ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_mp4(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 10) -> Path:
    """Encode ``frames`` as an H.264 (libx264, yuv420p) MP4 at ``path``; return the path.

    Sides are padded up to multiples of 16. The moov atom is put first (``+faststart``) so
    browsers start playing before the whole file has arrived.
    """
    import imageio.v2 as iio  # lazily: imageio-ffmpeg locates its binary on import

    frames = _as_frames(frames)
    target = Path(path)
    with _atomic_target(target) as tmp:
        writer = iio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=MACRO_BLOCK_SIZE,
            quality=None,
            ffmpeg_log_level="error",
            output_params=["-crf", str(_X264_CRF), "-movflags", "+faststart"],
        )
        try:
            for f in frames:
                writer.append_data(pad_to_multiple(f))
        finally:
            writer.close()
    return target


def mp4_bytes(frames: Sequence[np.ndarray], fps: float = 10) -> bytes:
    """The bytes of an H.264 MP4 of ``frames`` (for ``st.video`` or a download button)."""
    with tempfile.TemporaryDirectory(prefix="kalm_video_") as d:
        return write_mp4(frames, Path(d) / "video.mp4", fps=fps).read_bytes()


def write_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 10) -> Path:
    """Write ``frames`` as a looping GIF at ``path``; return the path."""
    import imageio.v3 as iio

    frames = _as_frames(frames)
    target = Path(path)
    with _atomic_target(target) as tmp:
        iio.imwrite(tmp, np.stack(frames), extension=".gif", plugin="pillow",
                    duration=1000.0 / fps, loop=0)
    return target
