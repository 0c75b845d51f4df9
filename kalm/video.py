"""Frames to video files: H.264 MP4 (for browsers and ``st.video``) and GIF.

Frames are ``(H, W, 3)`` uint8 arrays, e.g. from ``kalm.render.episode_frames``. A
``VideoFrames`` list also carries the rate its frames are meant to play at (``fps``, as
``kalm.imagine.render.imagined_frames`` makes them): the writers use it when given no ``fps``,
and 10 frames per second otherwise. Files are written
atomically: to a temporary file in the target folder, then renamed over the target, so a reader
(a UI polling a run folder) never sees half a video.
"""

from __future__ import annotations

import functools
import os
import queue
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_FPS", "MACRO_BLOCK_SIZE", "Mp4Encoder", "VideoFrames", "mp4_bytes",
           "label_panes", "pad_to_multiple", "side_by_side", "write_gif", "write_mp4"]

DEFAULT_FPS = 10.0

# H.264 encoders work on 16x16 macro blocks; yuv420p needs even sides. Frames are padded to this.
MACRO_BLOCK_SIZE = 16
# libx264's constant rate factor: 18 is visually near-lossless for these flat synthetic scenes.
_X264_CRF = 18
# libx264's speed preset: "veryfast" encodes these scenes about twice as fast as the default
# ("medium"), into files of about the same size.
_X264_PRESET = "veryfast"


class VideoFrames(list):
    """A list of frames that knows the rate it is meant to play at."""

    def __init__(self, frames: Sequence[np.ndarray] = (), fps: float = DEFAULT_FPS) -> None:
        super().__init__(frames)
        self.fps = float(fps)


def _rate(frames: Sequence[np.ndarray], fps: float | None) -> float:
    """``fps`` if given, else the frames' own rate (``VideoFrames.fps``), else ``DEFAULT_FPS``."""
    if fps is not None:
        return float(fps)
    return float(getattr(frames, "fps", DEFAULT_FPS))


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


def _x264_writer(path: Path, fps: float):
    """An imageio writer that pipes frames to ffmpeg's libx264 (yuv420p, ``+faststart``)."""
    import imageio.v2 as iio  # lazily: imageio-ffmpeg locates its binary on import

    return iio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        macro_block_size=MACRO_BLOCK_SIZE,
        quality=None,
        ffmpeg_log_level="error",
        output_params=["-preset", _X264_PRESET, "-crf", str(_X264_CRF), "-movflags", "+faststart"],
    )


def write_mp4(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float | None = None) -> Path:
    """Encode ``frames`` as an H.264 (libx264, yuv420p) MP4 at ``path``; return the path.

    Sides are padded up to multiples of 16. The moov atom is put first (``+faststart``) so
    browsers start playing before the whole file has arrived.
    """
    fps = _rate(frames, fps)
    frames = _as_frames(frames)
    target = Path(path)
    with _atomic_target(target) as tmp:
        writer = _x264_writer(tmp, fps)
        try:
            for f in frames:
                writer.append_data(pad_to_multiple(f))
        finally:
            writer.close()
    return target


def mp4_bytes(frames: Sequence[np.ndarray], fps: float | None = None) -> bytes:
    """The bytes of an H.264 MP4 of ``frames`` (for ``st.video`` or a download button)."""
    with tempfile.TemporaryDirectory(prefix="kalm_video_") as d:
        return write_mp4(frames, Path(d) / "video.mp4", fps=fps).read_bytes()


class Mp4Encoder:
    """An H.264 MP4 encoded while its frames are still being made, as ``mp4_bytes`` encodes it.

    ``add(frame)`` hands a frame to a background thread that feeds ffmpeg (a process of its own,
    so it encodes on another core while the caller draws the next frame); ``finish()`` waits for
    the last frame and returns the bytes. Use as a context manager: leaving the block early (an
    error) stops ffmpeg and removes its files.
    """

    def __init__(self, fps: float = DEFAULT_FPS) -> None:
        self.fps = float(fps)
        self._dir = tempfile.TemporaryDirectory(prefix="kalm_video_")
        self._path = Path(self._dir.name) / "video.mp4"
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._shape: tuple[int, ...] | None = None
        self._count = 0
        self._thread = threading.Thread(target=self._feed, name="kalm-mp4-encoder", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        writer = None
        try:
            writer = _x264_writer(self._path, self.fps)
            while (frame := self._queue.get()) is not None:
                writer.append_data(pad_to_multiple(frame))
        except BaseException as e:  # reported by add / finish, in the caller's thread
            self._error = e
            while self._queue.get() is not None:  # let the caller go on until it stops
                pass
        finally:
            if writer is not None:
                try:
                    writer.close()
                except BaseException as e:
                    self._error = self._error or e

    def add(self, frame: np.ndarray) -> None:
        """Queue one ``(H, W, 3)`` uint8 frame (all frames share the first one's size)."""
        if self._error is not None:
            raise RuntimeError(f"the MP4 encoder failed: {self._error}") from self._error
        (f,) = _as_frames([frame])
        if self._shape is None:
            self._shape = f.shape
        elif f.shape != self._shape:
            raise ValueError(f"frame {self._count} is {f.shape[:2]} but frame 0 is {self._shape[:2]}; "
                             "frames must share a size")
        self._queue.put(f)
        self._count += 1

    def finish(self) -> bytes:
        """Wait for the encoder; the MP4's bytes."""
        if self._count == 0:
            self.close()
            raise ValueError("no frames to write: the episode rendered to an empty list")
        self._queue.put(None)
        self._thread.join()
        try:
            if self._error is not None:
                raise RuntimeError(f"the MP4 encoder failed: {self._error}") from self._error
            return self._path.read_bytes()
        finally:
            self._dir.cleanup()

    def close(self) -> None:
        """Stop without a video (a no-op after ``finish``)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._dir.cleanup()

    def __enter__(self) -> Mp4Encoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float | None = None) -> Path:
    """Write ``frames`` as a looping GIF at ``path``; return the path."""
    import imageio.v3 as iio

    fps = _rate(frames, fps)
    frames = _as_frames(frames)
    target = Path(path)
    with _atomic_target(target) as tmp:
        iio.imwrite(tmp, np.stack(frames), extension=".gif", plugin="pillow",
                    duration=1000.0 / fps, loop=0)
    return target


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


def label_panes(frame: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
    """A frame of ``len(labels)`` equal panes side by side with each pane labelled as
    ``side_by_side`` labels its frames (``None``: no label); labelled in place, returned."""
    pane = frame.shape[1] // max(1, len(labels))
    for i, text in enumerate(labels):
        if text:
            _blend_label(frame[:, i * pane:(i + 1) * pane], text)
    return frame


def _draw_label(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with ``text`` in white on a dark box in its top-left corner."""
    return _blend_label(np.array(frame, dtype=np.uint8, copy=True), text)


def _blend_label(out: np.ndarray, text: str) -> np.ndarray:
    """Blend the label into ``out`` (a uint8 frame or a view of one) in place."""
    rgb, alpha = _label_overlay(text)
    h, w = min(alpha.shape[0], out.shape[0]), min(alpha.shape[1], out.shape[1])
    a = alpha[:h, :w]
    out[:h, :w] = (out[:h, :w] * (1.0 - a) + rgb[:h, :w] * a + 0.5).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=32)
def _label_overlay(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The label drawn once on a transparent canvas: its colours and its opacity (0..1), each
    ``(h, w, ·)``; a frame gets it by blending, with no drawing per frame."""
    from PIL import Image, ImageDraw

    font = _label_font()
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.textbbox((6, 4), text, font=font)
    box = (left - 4, top - 3, right + 4, bottom + 3)
    img = Image.new("RGBA", (box[2] + 1, box[3] + 1), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img, "RGBA")
    draw.rectangle(box, fill=(20, 20, 20, 170))
    draw.text((6, 4), text, fill=(255, 255, 255, 255), font=font)
    rgba = np.asarray(img, dtype=np.float32)
    rgb, alpha = rgba[..., :3], rgba[..., 3:] / 255.0
    rgb.setflags(write=False)
    alpha.setflags(write=False)
    return rgb, alpha


def _label_font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()
