"""Small test videos written with OpenCV in ``tmp_path``, and MP4 box edits for what
OpenCV's writer cannot make (rotation metadata, a variable frame rate).

Numbered frames show their index as :data:`BITS` black/white vertical bars (most
significant bit left), which survive lossy codecs, so a test can tell which frames were
sampled.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

BITS = 10
SIZE = (160, 96)
"""(width, height) of numbered frames, pixels."""

FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".webm": "VP90"}


def write_frames(path: Path, frames: Sequence[np.ndarray] | Iterator[np.ndarray],
                 fps: float) -> Path:
    """Write BGR frames (all the same size) to ``path`` (``.mp4``, ``.avi`` or ``.webm``:
    VP9, whose length the reader estimates from the container's duration)."""
    writer = None
    for frame in frames:
        if writer is None:
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]),
                                     fps, (width, height))
            assert writer.isOpened()
        writer.write(frame)
    assert writer is not None
    writer.release()
    return path


def numbered_frame(index: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A BGR frame showing ``index`` in binary bars."""
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    bar = width // BITS
    for bit in range(BITS):
        if index >> (BITS - 1 - bit) & 1:
            frame[:, bit * bar:(bit + 1) * bar] = 255
    return frame


def write_numbered(path: Path, count: int, fps: float = 30.0) -> Path:
    """A video of ``count`` numbered frames at ``fps`` frames/s."""
    return write_frames(path, (numbered_frame(i) for i in range(count)), fps)


def read_number(image: Image.Image) -> int:
    """The index shown by a numbered frame (RGB image, upright)."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    height, width = gray.shape
    bar = width // BITS
    value = 0
    for bit in range(BITS):
        centre = gray[height // 4:3 * height // 4, bit * bar + bar // 4:(bit + 1) * bar - bar // 4]
        value = value << 1 | int(centre.mean() > 128)
    return value


def quadrant_frame(size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """A BGR frame with four coloured quadrants: red, green / blue, white."""
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    frame[: height // 2, : width // 2] = (0, 0, 255)
    frame[: height // 2, width // 2:] = (0, 255, 0)
    frame[height // 2:, : width // 2] = (255, 0, 0)
    frame[height // 2:, width // 2:] = (255, 255, 255)
    return frame


# -- MP4 boxes (ISO/IEC 14496-12) -------------------------------------------------------

_CONTAINERS = {"moov", "trak", "mdia", "minf", "stbl", "edts"}


def _boxes(buf: bytes, start: int, end: int, path: tuple[str, ...] = ()
           ) -> Iterator[tuple[tuple[str, ...], int, int, int]]:
    """``(path of box types, offset, header size, size)`` of every box, depth first."""
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", buf[i:i + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", buf[i + 8:i + 16])[0], 16
        elif size == 0:
            size = end - i
        box_path = (*path, kind.decode("latin1"))
        yield box_path, i, header, size
        if box_path[-1] in _CONTAINERS:
            yield from _boxes(buf, i + header, i + size, box_path)
        i += size


def _find(buf: bytes, kind: str) -> tuple[tuple[str, ...], int, int, int]:
    for found in _boxes(buf, 0, len(buf)):
        if found[0][-1] == kind:
            return found
    raise KeyError(kind)


def _moov_after_mdat(buf: bytes) -> None:
    """Growing ``moov`` shifts nothing only when it comes after the media data."""
    assert _find(buf, "moov")[1] > _find(buf, "mdat")[1]


def set_rotation(src: Path, dst: Path, degrees: int) -> Path:
    """Copy an OpenCV-written MP4 with a display matrix that turns it ``degrees``
    clockwise (the ``tkhd`` matrix FFmpeg's muxer writes for ``rotate=degrees``, as phones
    do for portrait video)."""
    buf = bytearray(src.read_bytes())
    _, offset, header, _ = _find(buf, "tkhd")
    version = buf[offset + header]
    matrix_at = offset + header + 4 + (20 if version == 0 else 32) + 16
    width = struct.unpack(">I", buf[matrix_at + 36:matrix_at + 40])[0] >> 16
    height = struct.unpack(">I", buf[matrix_at + 40:matrix_at + 44])[0] >> 16
    a, b, c, d, tx, ty = {90: (0, 1, -1, 0, height, 0), 180: (-1, 0, 0, -1, width, height),
                          270: (0, -1, 1, 0, 0, width)}[degrees]
    struct.pack_into(">9i", buf, matrix_at, a << 16, b << 16, 0, c << 16, d << 16, 0,
                     tx << 16, ty << 16, 1 << 30)
    dst.write_bytes(bytes(buf))
    return dst


def set_frame_durations(src: Path, dst: Path, runs: Sequence[tuple[int, int]]) -> Path:
    """Copy an OpenCV-written MP4 with a variable frame rate: ``runs`` of ``(frames,
    duration of each in media ticks)`` replace its ``stts`` table (the edit list is
    dropped and the media duration updated to match)."""
    buf = bytearray(src.read_bytes())
    _moov_after_mdat(buf)
    path, offset, header, size = _find(buf, "stts")
    payload = struct.pack(">II", 0, len(runs)) + b"".join(struct.pack(">II", n, t)
                                                          for n, t in runs)
    ancestors = [o for p, o, _, s in _boxes(buf, 0, len(buf))
                 if len(p) < len(path) and p == path[:len(p)] and o < offset < o + s]
    delta = header + len(payload) - size
    buf[offset + header:offset + size] = payload
    struct.pack_into(">I", buf, offset, header + len(payload))
    for o in ancestors:
        struct.pack_into(">I", buf, o, struct.unpack(">I", buf[o:o + 4])[0] + delta)
    _, offset, header, _ = _find(buf, "mdhd")
    assert buf[offset + header] == 0  # version 0: 32-bit times
    struct.pack_into(">I", buf, offset + header + 16, sum(n * t for n, t in runs))
    _, offset, _, _ = _find(buf, "edts")
    buf[offset + 4:offset + 8] = b"free"
    dst.write_bytes(bytes(buf))
    return dst


def media_timescale(path: Path) -> int:
    """Ticks per second of the (only) track of an MP4."""
    buf = path.read_bytes()
    _, offset, header, _ = _find(buf, "mdhd")
    return struct.unpack(">I", buf[offset + header + 12:offset + header + 16])[0]


def fake_camera(monkeypatch, clip: Path, fps: float = 30.0) -> None:
    """Make camera 0 a live source: ``cv2.VideoCapture(0)`` plays ``clip``, one frame per
    ``1 / fps`` seconds of wall time, with no known length (as a camera reports)."""
    import time

    real = cv2.VideoCapture

    class FakeCamera:
        def __init__(self, index, *args):
            assert index == 0
            self.cap = real(str(clip), cv2.CAP_FFMPEG)

        def grab(self):
            time.sleep(1 / fps)
            return self.cap.grab()

        def get(self, prop):
            return -1.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self.cap.get(prop)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
