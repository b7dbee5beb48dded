"""Test videos made from labelled photos, with their ground truth.

There is no infant video in the project's real data, so tests, ``benchmarks/bench_video.py``
and the docs build videos from real infant photos: each photo is shown for a few seconds,
scaled and moved smoothly across a plain background between frames (a face tracker has to
follow it), and the labels of the photos give the per-segment ground truth::

    segments = make_photo_video([(Path("a.jpg"), "happy"), (Path("b.jpg"), "crying")],
                                tmp_path / "visit.mp4", seconds_per_photo=3.0, fps=30)
    # [Segment("happy", 0.0, 3.0, a.jpg), Segment("crying", 3.0, 6.0, b.jpg)]

Videos are written with OpenCV's ``cv2.VideoWriter``: MPEG-4 Part 2 (fourcc ``mp4v``) in
``.mp4``, ``.m4v`` and ``.mov``, Motion JPEG (``MJPG``) in ``.avi`` - what the
``opencv-python-headless`` wheels write and read back (they ship no H.264 encoder).
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babyemo.data.loading.images import load_image
from babyemo.errors import ConfigError, VideoError
from babyemo.fs import atomic_open
from babyemo.video.reader import import_cv2

FOURCC_BY_SUFFIX: dict[str, str] = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v",
                                    ".avi": "MJPG"}
"""The codec (fourcc) :func:`make_photo_video` writes for each file suffix."""

SCALE_RANGE = (0.45, 0.75)
"""Photo height as a fraction of the frame height: each segment starts and ends at a size
drawn from this range (with ``pan``)."""


@dataclass(frozen=True)
class Segment:
    """The ground truth of one photo of a synthetic video.

    Attributes:
        label: The photo's label.
        start_s: Time of its first frame, seconds.
        end_s: Time just after its last frame (the next segment's ``start_s``), seconds.
        photo: The photo shown.
    """

    label: str
    start_s: float
    end_s: float
    photo: Path

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``, seconds."""
        return self.end_s - self.start_s


def label_at(segments: Sequence[Segment], time_s: float) -> str | None:
    """The ground-truth label at ``time_s`` seconds (``None`` outside every segment).

    Args:
        segments: What :func:`make_photo_video` returned.
        time_s: A time in the video, seconds.

    Returns:
        The label of the segment with ``start_s <= time_s < end_s``, or ``None``.
    """
    for segment in segments:
        if segment.start_s <= time_s < segment.end_s:
            return segment.label
    return None


def _background(width: int, height: int, rng: random.Random) -> np.ndarray:
    """A plain, muted background with a soft vertical gradient, ``(H, W, 3)`` uint8 BGR."""
    top = np.array([rng.randint(60, 190) for _ in range(3)], dtype=np.float32)
    bottom = np.clip(top * rng.uniform(0.6, 0.9), 0, 255)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    column = top[None, :] * (1 - ramp) + bottom[None, :] * ramp
    return np.ascontiguousarray(np.broadcast_to(column[:, None, :], (height, width, 3))
                                .astype(np.uint8))


def _path(width: int, height: int, photo_w: int, photo_h: int, rng: random.Random,
          pan: bool) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Start and end ``(scale, centre x, centre y)`` of a segment: scale is the photo
    height in frame heights; the photo stays inside the frame at both ends."""

    def place(scale: float) -> tuple[float, float, float]:
        h = scale * height
        w = h * photo_w / photo_h
        if w > width:  # a very wide photo: fit the width instead
            scale *= width / w
            h, w = scale * height, float(width)
        cx = rng.uniform(w / 2, width - w / 2) if pan else width / 2
        cy = rng.uniform(h / 2, height - h / 2) if pan else height / 2
        return scale, cx, cy

    if not pan:
        middle = place(sum(SCALE_RANGE) / 2)
        return middle, middle
    return place(rng.uniform(*SCALE_RANGE)), place(rng.uniform(*SCALE_RANGE))


class _Canvas:
    """One frame buffer: the background with a photo pasted on it. Each new paste first
    puts back the background under the previous one, so a frame costs the photo's area
    rather than a copy of the whole frame."""

    def __init__(self, cv2: Any, background: np.ndarray) -> None:
        self._cv2 = cv2
        self._background = background
        self.frame = background.copy()
        self._dirty: tuple[int, int, int, int] | None = None

    def paste(self, photo: np.ndarray, scale: float, cx: float, cy: float) -> np.ndarray:
        """The frame with ``photo`` (BGR) scaled to ``scale`` frame heights and centred at
        ``(cx, cy)`` pixels, clipped to the frame (the buffer itself: write it before the
        next paste)."""
        frame, cv2 = self.frame, self._cv2
        if self._dirty is not None:
            y0, y1, x0, x1 = self._dirty
            frame[y0:y1, x0:x1] = self._background[y0:y1, x0:x1]
        height, width = frame.shape[:2]
        ph = max(1, round(scale * height))
        pw = max(1, round(ph * photo.shape[1] / photo.shape[0]))
        resized = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_LINEAR)
        x0, y0 = round(cx - pw / 2), round(cy - ph / 2)
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(width, x0 + pw), min(height, y0 + ph)
        if fx1 > fx0 and fy1 > fy0:
            frame[fy0:fy1, fx0:fx1] = resized[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            self._dirty = (fy0, fy1, fx0, fx1)
        return frame


def make_photo_video(photos: Sequence[tuple[Path, str]], out: Path, *,
                     seconds_per_photo: float = 3.0, fps: float = 30,
                     size: tuple[int, int] = (1280, 720), pan: bool = True,
                     seed: int = 0) -> list[Segment]:
    """Write a video that shows each labelled photo in turn, and return its ground truth.

    Each photo is shown for ``round(seconds_per_photo * fps)`` frames on a plain
    background. With ``pan`` its size (0.45 to 0.75 of the frame height) and position
    move smoothly (cosine easing) from a random start to a random end within its
    segment, so the face moves and grows or shrinks from frame to frame; without, it
    stays centred at 0.6 of the frame height. A new photo is a cut. The video is written
    to a temporary name beside ``out`` and moved over it when complete.

    Args:
        photos: ``(photo path, label)`` in showing order; any image babyemo reads.
        out: The video file to write; its suffix picks the codec (:data:`FOURCC_BY_SUFFIX`:
            ``.mp4``/``.m4v``/``.mov`` MPEG-4 Part 2, ``.avi`` Motion JPEG).
        seconds_per_photo: How long each photo is shown, seconds.
        fps: Frame rate of the video, frames/s.
        size: ``(width, height)`` of the frames in pixels (each at least 16).
        pan: Move and scale the photos (True) or keep them still and centred.
        seed: Seed of the background colour and the photos' paths.

    Returns:
        One :class:`Segment` per photo, in order; together they cover the video from 0 to
        its end (``len(photos) * frames per photo / fps`` seconds) without gaps.

    Raises:
        ConfigError: No photo, a non-positive ``seconds_per_photo`` or ``fps``, a frame
            size under 16 pixels, or a suffix with no codec here.
        ImageError: A photo cannot be read.
        VideoError: OpenCV cannot write the video.
    """
    out = Path(out)
    if not photos:
        raise ConfigError("make_photo_video got no photo.", "give at least one (path, label)")
    if not (math.isfinite(seconds_per_photo) and seconds_per_photo > 0):
        raise ConfigError(f"seconds_per_photo must be positive, got {seconds_per_photo}.",
                          "e.g. 3.0")
    if not (math.isfinite(fps) and fps > 0):
        raise ConfigError(f"fps must be positive, got {fps}.", "e.g. 30")
    width, height = (int(v) for v in size)
    if width < 16 or height < 16:
        raise ConfigError(f"Frame size {width}x{height} is too small.",
                          "give at least 16x16 pixels")
    fourcc = FOURCC_BY_SUFFIX.get(out.suffix.lower())
    if fourcc is None:
        raise ConfigError(f"{out}: cannot write a '{out.suffix}' video here.",
                          "use " + ", ".join(sorted(FOURCC_BY_SUFFIX)))
    cv2 = import_cv2()
    rng = random.Random(seed)
    per_photo = max(1, round(seconds_per_photo * fps))
    background = _background(width, height, rng)
    out.parent.mkdir(parents=True, exist_ok=True)
    segments: list[Segment] = []
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        written = Path(tmp) / f"video{out.suffix.lower()}"
        writer = cv2.VideoWriter(str(written), cv2.VideoWriter_fourcc(*fourcc), float(fps),
                                 (width, height))
        try:
            if not writer.isOpened():
                raise VideoError(f"{out}: OpenCV {cv2.__version__} cannot write {fourcc} "
                                 f"video in '{out.suffix}'.",
                                 "use " + ", ".join(sorted(FOURCC_BY_SUFFIX)))
            canvas = _Canvas(cv2, background)
            for j, (photo_path, label) in enumerate(photos):
                rgb = np.asarray(load_image(photo_path))
                photo = np.ascontiguousarray(rgb[:, :, ::-1])
                start, end = _path(width, height, photo.shape[1], photo.shape[0], rng, pan)
                for i in range(per_photo):
                    u = i / (per_photo - 1) if per_photo > 1 else 0.0
                    ease = (1 - math.cos(math.pi * u)) / 2
                    scale, cx, cy = (a + (b - a) * ease for a, b in zip(start, end, strict=True))
                    writer.write(canvas.paste(photo, scale, cx, cy))
                segments.append(Segment(label=str(label), start_s=j * per_photo / fps,
                                        end_s=(j + 1) * per_photo / fps,
                                        photo=Path(photo_path)))
        finally:
            writer.release()
        if not written.is_file() or written.stat().st_size == 0:
            raise VideoError(f"{out}: OpenCV {cv2.__version__} wrote no {fourcc} video.",
                             "use " + ", ".join(sorted(FOURCC_BY_SUFFIX)))
        with atomic_open(out, "wb") as f, open(written, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)
    return segments


__all__ = ["FOURCC_BY_SUFFIX", "SCALE_RANGE", "Segment", "label_at", "make_photo_video"]
