"""Frames from a video file, a stream URL or a camera, sampled in video time.

:func:`open_video` opens a source with OpenCV's ``cv2.VideoCapture`` (the FFmpeg backend
for files and URLs) and :meth:`VideoReader.frames` yields upright RGB :class:`Frame`\\ s,
one at a time, so memory stays flat however long the video is::

    from babyemo.video.reader import open_video

    with open_video("visit.mp4") as video:
        print(video.info.duration_s, video.info.fps)
        for frame in video.frames(fps=5.0):         # 5 frames per second of video
            ...                                      # frame.index, frame.time_s, frame.image
        if video.error:                              # the file ended early (truncated)
            print(video.error.code, video.error.detail)

Sampling: with ``fps=F`` the targets are the times ``k / F`` (k = 0, 1, ...) and for each
target the first frame at or after it is yielded (once, if it is the first for several).
Frame times are presentation times (``CAP_PROP_POS_MSEC``), so a variable frame rate is
followed; frames between targets are ``grab()``\\ bed (demuxed and decoded, as the next
frames need) but never converted to RGB. Live sources (a camera, a stream URL without a
length) are timed by the wall clock instead.

Rotation: phones store portrait video as landscape frames plus a rotation in the
container's metadata (``CAP_PROP_ORIENTATION_META``, degrees). OpenCV's FFmpeg backend
rotates frames itself when ``CAP_PROP_ORIENTATION_AUTO`` is on (the default of OpenCV 4.x
and 5.x); the reader turns that off and turns each retrieved frame itself, so frames come
out upright exactly once whatever the OpenCV version's default (if a backend refuses to
turn it off, OpenCV's own rotation is kept and the reader turns nothing).

Bad input: a source that cannot be opened, or that gives no frame, raises
:class:`~babyemo.errors.VideoError`; a video that ends early (truncated, fewer frames than
its header says) or whose frame cannot be decoded ends the iteration and sets
:attr:`VideoReader.error`, never raising mid-video and never substituting a frame.

``cv2`` (package ``opencv-python-headless``) is imported only when a source is opened.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from babyemo.data.loading.file_errors import FileErrorCode
from babyemo.data.loading.folders import os_error_code, os_error_reason
from babyemo.errors import ConfigError, MissingDependencyError, VideoError

VIDEO_SUFFIXES: frozenset[str] = frozenset({
    ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
"""File name endings (lower case) taken for videos by :func:`is_video`."""

STREAM_SCHEMES: frozenset[str] = frozenset({"rtsp", "rtsps", "rtmp", "http", "https"})
"""URL schemes taken for live streams by :func:`is_stream`."""

DEFAULT_FPS = 25.0
"""Nominal frame rate assumed when the container gives none (FFmpeg's default), frames/s."""

TIME_TOLERANCE_S = 1e-3
"""A frame this close before a sampling target counts as at it, seconds (frame times come
in whole-ish milliseconds from ``CAP_PROP_POS_MSEC``)."""

_OPENCV_ORIENTS = False
"""Let OpenCV rotate frames (``CAP_PROP_ORIENTATION_AUTO`` on) instead of the reader
(tests flip it to check that both give the same upright frames)."""


def is_video(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends like a video (:data:`VIDEO_SUFFIXES`, any case).

    Args:
        path: A file name or path (not opened).

    Returns:
        Whether its suffix is a video suffix.
    """
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_SUFFIXES


def is_stream(source: str | os.PathLike[str] | int) -> bool:
    """True for a live source: a camera index (an ``int`` >= 0) or a stream URL
    (``rtsp://``, ``rtsps://``, ``rtmp://``, ``http://``, ``https://``).

    Args:
        source: What would be given to :func:`open_video`.

    Returns:
        Whether ``source`` is a camera or a URL rather than a local file.
    """
    if isinstance(source, bool):
        return False
    if isinstance(source, int):
        return source >= 0
    if isinstance(source, os.PathLike):
        return False
    scheme, sep, _ = str(source).partition("://")
    return bool(sep) and scheme.lower() in STREAM_SCHEMES


@dataclass(frozen=True)
class VideoInfo:
    """What a source is, read when it is opened.

    Attributes:
        source: The source as text: the file path, the URL (a password in it replaced by
            ``***``) or ``"camera:N"`` for camera index N.
        fps: Nominal frame rate in frames/s (from the container or camera;
            :data:`DEFAULT_FPS` when it gives none). Frame times do not rely on it.
        frame_count: Frames in the video as its header says, or ``None`` (live, unknown).
        duration_s: Length in seconds (``frame_count / fps``), or ``None`` for a live
            source or an unknown length.
        width: Frame width in pixels, after rotation (upright).
        height: Frame height in pixels, after rotation (upright).
        rotation: Clockwise rotation in degrees (0, 90, 180 or 270) that the container's
            metadata asks for, applied to every frame.
        live: True for a camera, or a stream URL with no known length.
    """

    source: str
    fps: float
    frame_count: int | None
    duration_s: float | None
    width: int
    height: int
    rotation: int
    live: bool


@dataclass(frozen=True)
class Frame:
    """One sampled frame.

    Attributes:
        index: Frame number in the video, 0-based (for a live source: frames received
            since it was opened).
        time_s: Presentation time in seconds from the start of the video (from
            ``CAP_PROP_POS_MSEC``, else ``index / fps``; for a live source: wall-clock
            seconds since its first frame). Never decreases along an iteration.
        image: The frame as an upright RGB image (rotation metadata applied), width x
            height pixels of :class:`VideoInfo`.
    """

    index: int
    time_s: float
    image: Image.Image


@dataclass(frozen=True)
class ReadFailure:
    """Why an iteration of :meth:`VideoReader.frames` ended before the video did.

    Attributes:
        code: A stable short code, a
            :class:`~babyemo.data.loading.file_errors.FileErrorCode` value: ``truncated``
            (the file ends before its header says), ``corrupt`` (a frame cannot be
            decoded) or ``unreadable`` (a live stream or camera stopped sending frames).
        detail: The human reason, e.g. ``"stopped at 12.3 s of 60.0 s (frame 369 of
            1800)"``.
    """

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def import_cv2() -> Any:
    """Import ``cv2`` or raise :class:`MissingDependencyError` (a dependency of babyemo,
    missing only from a broken or hand-made install)."""
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError("opencv-python-headless", None, "Reading videos") from None
    return cv2


@contextlib.contextmanager
def _quiet(cv2: Any) -> Iterator[None]:
    """OpenCV's own warning lines (e.g. "backend ... can't be used to capture by name")
    silenced while a source is opened."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old = log.getLogLevel() if log is not None else None
    try:
        if log is not None:
            log.setLogLevel(log.LOG_LEVEL_ERROR)
        yield
    finally:
        if log is not None and old is not None:
            log.setLogLevel(old)


def _redact(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***``."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return url


def _check_file(path: Path) -> None:
    """Raise :class:`VideoError` (with its code) for a path that is missing, not a
    regular file or empty, before OpenCV is asked (whose failures say nothing)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise VideoError(f"{path}: {os_error_reason(e)}.", "check the path",
                         code=os_error_code(e).value) from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoError(f"{path}: a folder, not a video file.", "give a video file",
                         code=FileErrorCode.NOT_A_FILE.value)
    if not stat.S_ISREG(st.st_mode):
        raise VideoError(f"{path}: not a regular file (a pipe, socket or device).",
                         "give a video file", code=FileErrorCode.NOT_A_FILE.value)
    if st.st_size == 0:
        raise VideoError(f"{path}: empty file.", "copy or record the video again",
                         code=FileErrorCode.EMPTY_FILE.value)


def _rotation(cv2: Any, cap: Any) -> int:
    """The clockwise rotation (0, 90, 180 or 270 degrees) the metadata asks for (0 when
    there is none, or an angle that is not a multiple of 90)."""
    prop = getattr(cv2, "CAP_PROP_ORIENTATION_META", None)
    meta = cap.get(prop) if prop is not None else 0.0
    if not math.isfinite(meta):
        return 0
    degrees = int(round(meta)) % 360
    return degrees if degrees in (0, 90, 180, 270) else 0


def _set_orientation(cv2: Any, cap: Any) -> bool:
    """Ask OpenCV not to rotate frames (unless :data:`_OPENCV_ORIENTS`); True when the
    reader must rotate them itself (OpenCV's auto-rotation is off)."""
    prop = getattr(cv2, "CAP_PROP_ORIENTATION_AUTO", None)
    if prop is None:
        return True
    with contextlib.suppress(cv2.error):
        cap.set(prop, 1.0 if _OPENCV_ORIENTS else 0.0)
    return cap.get(prop) == 0.0


def upright(cv2: Any, array: Any, rotation: int) -> Any:
    """Turn a decoded frame clockwise by ``rotation`` degrees.

    Args:
        cv2: The ``cv2`` module.
        array: The frame, ``(H, W, C)`` or ``(H, W)`` uint8.
        rotation: 0, 90, 180 or 270.

    Returns:
        The turned frame (``array`` itself for 0).
    """
    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
             270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return array if rotation not in codes else cv2.rotate(array, codes[rotation])


class VideoReader:
    """An open video source; see the module docstring and :func:`open_video`.

    Use it as a context manager (or call :meth:`close`). Not thread-safe: iterate it from
    one thread.

    Args:
        source: A video file path, a stream URL, or a camera index (``int``).

    Raises:
        VideoError: The source cannot be opened or gives no frame (``code``: ``unreadable``
            for a missing file or a camera that does not open, ``not_a_file``,
            ``empty_file``, ``corrupt`` for a file OpenCV cannot open as a video or that
            has no frame).
        MissingDependencyError: ``cv2`` is not installed.

    Attributes:
        info: What the source is (:class:`VideoInfo`).
        error: ``None``, or why the last iteration of :meth:`frames` ended early
            (:class:`ReadFailure`).
    """

    def __init__(self, source: str | os.PathLike[str] | int) -> None:
        self._cv2 = import_cv2()
        self._source = source
        self._camera = isinstance(source, int) and not isinstance(source, bool)
        self._url = not self._camera and is_stream(source)
        if self._camera:
            if source < 0:  # type: ignore[operator]
                raise ConfigError(f"Camera index {source} is negative.",
                                  "give 0 for the first camera")
            name = f"camera:{source}"
        elif self._url:
            name = _redact(str(source))
        else:
            name = os.fspath(source)  # type: ignore[arg-type]
        self._name = name
        self._cap: Any = None
        self.error: ReadFailure | None = None
        self._started = False
        self._open()

    # -- opening ----------------------------------------------------------------------

    def _open(self) -> None:
        """Open the capture, read the first frame and fill :attr:`info`."""
        cv2 = self._cv2
        if not (self._camera or self._url):
            _check_file(Path(self._name))
        with _quiet(cv2):
            if self._camera:
                cap = cv2.VideoCapture(self._source)
            else:
                api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) \
                    else cv2.CAP_ANY
                # An absolute path: FFmpeg would take "name:rest.mp4" for a protocol.
                target = str(self._source) if self._url else os.path.abspath(self._name)
                cap = cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            if self._camera or self._url:
                raise VideoError(f"{self._name}: cannot be opened.",
                                 "check that the camera is connected and not used by "
                                 "another program" if self._camera else
                                 "check the network and that the URL plays in a video "
                                 "player", code=FileErrorCode.UNREADABLE.value)
            raise VideoError(f"{self._name}: OpenCV (FFmpeg) cannot open it as a video "
                             "(not a video, or its header is damaged or missing, e.g. an "
                             "incomplete copy).",
                             "check the file plays in a video player; copy it again",
                             code=FileErrorCode.CORRUPT.value)
        self._cap = cap
        rotation = _rotation(cv2, cap)
        self._rotate = rotation if _set_orientation(cv2, cap) else 0
        if self._camera or self._url:
            with contextlib.suppress(cv2.error):
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else DEFAULT_FPS
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        frame_count = int(count) if math.isfinite(count) and count > 0 else None
        live = self._camera or (self._url and frame_count is None)
        if live:
            frame_count = None
        self._fps = fps
        self._live = live
        self._index = 0
        self._last_time = 0.0
        self._first: tuple[int, float, Any] | None = None
        first = self._next_raw(retrieve=True)
        if first is None or first[2] is None:
            self.close()
            raise VideoError(f"{self._name}: no frame can be read.",
                             "check the file plays in a video player; copy it again"
                             if not live else "check the camera or stream",
                             code=(FileErrorCode.UNREADABLE if live
                                   else FileErrorCode.CORRUPT).value)
        self._first = first
        height, width = first[2].shape[:2]
        if self._rotate in (90, 270):
            width, height = height, width
        self.info = VideoInfo(
            source=self._name, fps=fps, frame_count=frame_count,
            duration_s=None if live or frame_count is None else frame_count / fps,
            width=int(width), height=int(height), rotation=rotation, live=live)

    def _reopen(self) -> None:
        """Open a file again from its start (for a second :meth:`frames`)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._open()

    # -- reading ----------------------------------------------------------------------

    def _time(self, index: int) -> float:
        """The time of the frame just grabbed, seconds (see :class:`Frame`)."""
        if self._live:
            now = time.monotonic()
            if index == 0:
                self._wall0 = now
            t = now - self._wall0
        else:
            msec = self._cap.get(self._cv2.CAP_PROP_POS_MSEC)
            t = msec / 1000.0 if math.isfinite(msec) and msec > 0 else index / self._fps
        t = max(t, self._last_time)
        self._last_time = t
        return t

    def _next_raw(self, retrieve: bool) -> tuple[int, float, Any] | None:
        """Grab the next frame: ``(index, time_s, BGR array or None)``, or ``None`` at the
        end. The array is ``None`` when ``retrieve`` is False or decoding failed
        (``retrieve`` True)."""
        cap = self._cap
        try:
            if not cap.grab():
                return None
        except self._cv2.error:
            return None
        index = self._index
        self._index += 1
        t = self._time(index)
        return index, t, self._retrieve() if retrieve else None

    def _retrieve(self) -> Any:
        """The BGR array of the frame just grabbed, or ``None`` if it cannot be decoded."""
        try:
            ok, array = self._cap.retrieve()
        except self._cv2.error:
            return None
        return array if ok and array is not None and array.size else None

    def _to_image(self, array: Any) -> Image.Image:
        """An upright RGB image of a BGR (or gray, or BGRA) frame."""
        cv2 = self._cv2
        array = upright(cv2, array, self._rotate)
        if array.ndim == 3 and array.shape[2] == 3 and array.flags.c_contiguous:
            # One pass, swap and copy (half the time of cvtColor + fromarray at 720p).
            height, width = array.shape[:2]
            return Image.frombuffer("RGB", (width, height), array, "raw", "BGR", 0, 1)
        if array.ndim == 2:
            rgb = cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
        elif array.shape[2] == 4:
            rgb = cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
        return Image.fromarray(rgb)

    def frames(self, fps: float | None = 5.0, duration_s: float | None = None
               ) -> Iterator[Frame]:
        """Yield frames sampled at ``fps`` per second of video time, lazily.

        Frames between targets are grabbed without being converted; nothing is kept
        between frames (memory flat in video length). Each call starts at the beginning of
        a file (a live source goes on from now) and resets :attr:`error`.

        Args:
            fps: Frames per second of video time to yield: for each target time
                ``k / fps`` seconds, the first frame at or after it (a frame first for
                several targets is yielded once). ``None``: every frame.
            duration_s: Stop after this many seconds of video time (a live source: of wall
                time since its first frame); frames at or after it are not yielded.
                ``None``: to the end (a live source: until the stream ends or the
                consumer stops iterating).

        Yields:
            :class:`Frame`\\ s in time order. When the video ends early (truncated) or a
            frame cannot be decoded, the iteration ends and :attr:`error` says why.

        Raises:
            ConfigError: ``fps`` or ``duration_s`` is not a positive finite number, or the
                reader is closed.
            VideoError: A file opened again for a second call can no longer be opened.
        """
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ConfigError(f"fps must be a positive number of frames per second, got {fps}.",
                              "e.g. 5, or None for every frame")
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
            raise ConfigError(f"duration_s must be a positive number of seconds, got "
                              f"{duration_s}.", "e.g. 60, or None for the whole video")
        if self._cap is None:
            raise ConfigError(f"{self._name}: the video reader is closed.",
                              "open the video again")
        if self._started and not self._live:
            self._reopen()
        self._started = True
        self.error = None
        return self._iterate(fps, duration_s)

    def _iterate(self, fps: float | None, duration_s: float | None) -> Iterator[Frame]:
        next_k = 0
        end_time = 0.0
        while self._cap is not None:
            if self._first is not None:
                raw, self._first = self._first, None
            else:
                raw = self._next_raw(retrieve=False)
            if raw is None:
                self._finish(end_time, duration_s)
                return
            index, t, array = raw
            end_time = t
            if duration_s is not None and t >= duration_s:
                return
            if fps is not None:
                if t + TIME_TOLERANCE_S < next_k / fps:
                    continue
                next_k = math.floor((t + TIME_TOLERANCE_S) * fps) + 1
            if array is None:
                array = self._retrieve()
            if array is None:
                self.error = ReadFailure(FileErrorCode.CORRUPT.value,
                                         f"frame {index} at {t:.1f} s cannot be decoded")
                return
            yield Frame(index=index, time_s=t, image=self._to_image(array))

    def _finish(self, last_time: float, duration_s: float | None) -> None:
        """Set :attr:`error` when the source ended before it should have."""
        if self._live:
            if duration_s is None or last_time < duration_s:
                self.error = ReadFailure(FileErrorCode.UNREADABLE.value,
                                         f"the stream stopped sending frames after "
                                         f"{last_time:.1f} s")
            return
        info = self.info
        if info.frame_count is None or info.duration_s is None:
            return
        seen = self._index
        reached = last_time + 1.0 / self._fps
        if duration_s is not None:
            expected_s = min(info.duration_s, duration_s)
            expected_n = min(info.frame_count, math.ceil(duration_s * self._fps))
        else:
            expected_s, expected_n = info.duration_s, info.frame_count
        # Containers without a frame count estimate it from duration x fps (and a variable
        # frame rate can make that far off): both the frames and the time must fall short.
        short_frames = seen < expected_n - max(2, math.ceil(0.01 * expected_n))
        short_time = reached < expected_s - max(2.0 / self._fps, 0.01 * expected_s)
        if short_frames and short_time:
            self.error = ReadFailure(
                FileErrorCode.TRUNCATED.value,
                f"stopped at {reached:.1f} s of {info.duration_s:.1f} s "
                f"(frame {seen} of {info.frame_count})")

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        """Release the capture (the file, stream or camera); safe to call twice."""
        cap, self._cap = self._cap, None
        self._first = None
        if cap is not None:
            cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader({self._name!r})"


def open_video(source: str | os.PathLike[str] | int) -> VideoReader:
    """Open a video file, a stream URL or a camera.

    Args:
        source: A video file path (any container and codec OpenCV's FFmpeg reads: mp4,
            mov, avi, mkv, webm...), a stream URL (``rtsp://``, ``http(s)://``...), or a
            camera index (``int``, 0 for the first camera).

    Returns:
        The open :class:`VideoReader` (a context manager); its first frame has been read,
        so :attr:`VideoReader.info` holds the upright frame size.

    Raises:
        VideoError: The source cannot be opened or gives no frame; its ``code`` is a
            :class:`~babyemo.data.loading.file_errors.FileErrorCode` value for an error
            row (``unreadable``, ``not_a_file``, ``empty_file``, ``corrupt``).
        ConfigError: A negative camera index.
        MissingDependencyError: ``cv2`` is not installed.
    """
    return VideoReader(source)


__all__ = ["DEFAULT_FPS", "STREAM_SCHEMES", "VIDEO_SUFFIXES", "Frame", "ReadFailure",
           "VideoInfo", "VideoReader", "import_cv2", "is_stream", "is_video", "open_video",
           "upright"]
