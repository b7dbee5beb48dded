"""Emotion over time in a video: sampled frames -> faces -> probabilities -> tracks ->
smoothed labels -> episodes.

:func:`predict_video` reads a file, stream or camera (:mod:`babyemo.video.reader`) and
runs the :class:`~babyemo.prediction.Predictor`'s face detection, crops and model on each
sampled frame exactly as ``babyemo predict`` does on a photo
(:func:`~babyemo.data.loading.dataset.add_regions`, then the one inference seam). Frames
are analysed by the predictor's parallel readers (threads, in frame order) while the
calling thread links the faces into tracks (:class:`~babyemo.video.tracks.IoUTracker`),
smooths each track's calibrated probabilities (:class:`~babyemo.video.episodes.
TrackSmoother`) and closes episodes (:class:`~babyemo.video.episodes.EpisodeBuilder`).
Rows are yielded as they are made, so memory stays flat in the video's length.

Importing this module does not import torch (:class:`VideoOptions` is checked by the
CLI before the model loads); :func:`predict_video` imports it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from babyemo.config import NoFaceFallback
from babyemo.data.loading.file_errors import FileErrorCode
from babyemo.errors import ConfigError, VideoError
from babyemo.parallel import prefetch
from babyemo.rows import FACE_DETECTED, FACE_WHOLE_IMAGE, UNCERTAIN, Prediction
from babyemo.video.episodes import EpisodeBuilder, TrackSmoother
from babyemo.video.reader import Frame, VideoInfo, _redact, is_stream, open_video
from babyemo.video.timeline import TimelineRecorder
from babyemo.video.tracks import IoUTracker

if TYPE_CHECKING:
    import torch

    from babyemo.data.loading.dataset import FileItem
    from babyemo.data.loading.folders import FoundFiles
    from babyemo.prediction import Predictor
    from babyemo.video.episodes import Episode

VIDEO_LEAD_COLUMNS = ("frame", "time_s", "track_id")
"""Columns of a video row right after ``path`` (empty in a photo's row)."""

VIDEO_EXTRA_COLUMNS = ("raw_label",)
"""Columns of a video row after ``error_detail``: the frame's own label before smoothing."""

NO_FACE_EVERY_S = 1.0
"""At most one ``no_face`` row per this many seconds of video without a face."""


@dataclass(frozen=True)
class VideoOptions:
    """How a video is sampled and its labels smoothed.

    Attributes:
        fps: Frames analysed per second of video time (``None``: every frame).
        duration_s: Stop after this many seconds of video (wall seconds for a live
            source); ``None``: to the end (Ctrl-C for a live source).
        smooth_s: Window of the causal moving average of each track's probabilities, in
            seconds (0: none).
        min_episode_s: Shortest episode, in seconds (shorter interruptions are absorbed,
            see :class:`~babyemo.video.episodes.EpisodeBuilder`).
        max_gap_s: A face unseen for longer than this (seconds) ends its track.
        iou_threshold: Least box overlap (IoU) that links a face to a track.
        detect_max_side: Longest side, in pixels, frames are scaled down to for face
            detection (detectors with a ``max_side`` option, e.g. ``yunet``; ``None``: the
            detector's default, 640 for yunet). Measured on a 720p test video of infant
            photos (135 frames, 2 cores): YuNet's first pass found a face in 118 frames at
            384 px and at 640 px (120 at 480, 93 at 320), in 12 ms instead of 26 ms per
            frame; the second pass finds the rest either way.
    """

    fps: float | None = 5.0
    duration_s: float | None = None
    smooth_s: float = 1.0
    min_episode_s: float = 1.0
    max_gap_s: float = 1.0
    iou_threshold: float = 0.3
    detect_max_side: int | None = 384

    def __post_init__(self) -> None:
        for name, value, ok in (
                ("fps", self.fps, self.fps is None or (math.isfinite(self.fps) and self.fps > 0)),
                ("duration_s", self.duration_s, self.duration_s is None
                 or (math.isfinite(self.duration_s) and self.duration_s > 0)),
                ("smooth_s", self.smooth_s, math.isfinite(self.smooth_s) and self.smooth_s >= 0),
                ("min_episode_s", self.min_episode_s,
                 math.isfinite(self.min_episode_s) and self.min_episode_s >= 0),
                ("max_gap_s", self.max_gap_s,
                 math.isfinite(self.max_gap_s) and self.max_gap_s > 0),
                ("iou_threshold", self.iou_threshold, 0 < self.iou_threshold <= 1)):
            if not ok:
                raise ConfigError(f"The video option '{name}' got {value!r}.",
                                  "fps > 0 or all, durations in seconds >= 0, IoU in (0, 1]")


@dataclass(frozen=True)
class FrameRow:
    """One row of a video: a face in a sampled frame, or an error.

    Attributes:
        prediction: Its :class:`~babyemo.rows.Prediction` (path = the video; label,
            confidence and probabilities smoothed over the track with ``smooth_s`` > 0;
            box in pixels of the upright frame), or an error row (``no_face``,
            ``truncated``, ``corrupt``...).
        frame: Index of the frame in the video (0-based), ``None`` for an error about the
            whole video.
        time_s: Its time in the video, in seconds.
        track_id: The face's track (from 1), ``None`` on error rows.
        raw_label: The frame's own most probable class before smoothing (empty on
            error rows).
    """

    prediction: Prediction
    frame: int | None = None
    time_s: float | None = None
    track_id: int | None = None
    raw_label: str = ""

    def columns(self) -> dict[str, Any]:
        """Values of :data:`VIDEO_LEAD_COLUMNS` and :data:`VIDEO_EXTRA_COLUMNS` (for
        :meth:`babyemo.rows.PredictionWriter.write`): numbers stay numbers (JSON), the
        time rounded to the millisecond."""
        return {"frame": self.frame,
                "time_s": None if self.time_s is None else round(self.time_s, 3),
                "track_id": self.track_id, "raw_label": self.raw_label or None}


@dataclass
class _Analysed:
    frame: Frame
    item: FileItem
    probs: torch.Tensor | None


@dataclass
class VideoRun:
    """What :func:`predict_video` saw, filled in while its rows are consumed.

    Attributes:
        source: The video as given (path, URL or ``camera:N``).
        info: The opened video's :class:`~babyemo.video.reader.VideoInfo` (``None`` when
            it could not be opened).
        episodes: Episodes closed so far, in the order they closed (all of them once the
            rows are consumed).
        frames: Frames analysed.
        faces: Face rows written.
        no_face_frames: Frames in which no face was found.
        video_s: Seconds of video analysed (time of the last frame).
        seconds: Wall time spent, in seconds.
        error: The error code of a video that could not be opened or ended early, else
            ``None``.
        recorder: Per-track probabilities over time for ``--plot`` (``None`` unless asked).
        stopped: A live source ended by Ctrl-C.
        current: The latest (smoothed) label and confidence of each track still open
            (what a live display shows).
    """

    source: str
    info: VideoInfo | None = None
    episodes: list[Episode] = field(default_factory=list)
    frames: int = 0
    faces: int = 0
    no_face_frames: int = 0
    video_s: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    recorder: TimelineRecorder | None = None
    stopped: bool = False
    current: dict[int, tuple[str, float]] = field(default_factory=dict)

    @property
    def realtime_factor(self) -> float:
        """Seconds of video analysed per wall second (``video_s / seconds``)."""
        return self.video_s / self.seconds if self.seconds > 0 else float("nan")


def _source_name(source: str | os.PathLike[str] | int) -> str:
    """How a source is named in rows, episodes, plots and messages: ``camera:N``, the
    file path as given, or the URL with the password of its user part shown as ``***``
    (as :attr:`~babyemo.video.reader.VideoInfo.source`)."""
    if isinstance(source, int):
        return f"camera:{source}"
    name = os.fspath(source)
    return _redact(name) if is_stream(name) else name


def predict_video(source: str | os.PathLike[str] | int, predictor: Predictor,
                  options: VideoOptions | None = None, *, run: VideoRun | None = None,
                  record_timeline: bool = False,
                  on_frame: Callable[[VideoRun, float], None] | None = None
                  ) -> Iterator[FrameRow]:
    """Rows of a video, lazily: one per face per sampled frame, in frame order.

    A frame without a face gives a ``no_face`` row at most once per
    :data:`NO_FACE_EVERY_S` seconds (whatever ``predictor``'s ``no_face_fallback``: a
    whole video frame is not a face crop). A model without face detection classifies
    each whole frame (one track). A video that cannot be opened gives one error row; one
    that ends early (truncated, undecodable frame) gives its rows, then an error row at
    the time it stopped. Nothing is held per frame beyond the smoothing window, the open
    episodes and, with ``record_timeline``, ``4 (K + 1)`` bytes per face row.

    Args:
        source: A video file, a stream URL (``rtsp://``, ``http(s)://``) or a camera
            index.
        predictor: The model, its runtime and face detection (see
            :class:`~babyemo.prediction.Predictor`); ``min_confidence`` applies to the
            smoothed probabilities.
        options: Sampling and smoothing (:class:`VideoOptions`; default: 5 fps, 1 s
            smoothing, 1 s episodes).
        run: Filled in as rows are made (give one to read the episodes and counts after,
            or during, the iteration); a new one is used when ``None``.
        record_timeline: Keep each track's smoothed probabilities over time in
            ``run.recorder`` (for :func:`babyemo.video.timeline.plot_timeline`).
        on_frame: Called after each analysed frame with ``run`` and the frame's time in
            seconds (progress bars, live display).

    Yields:
        :class:`FrameRow` rows.

    Raises:
        ConfigError: Bad options.
        MissingDependencyError: OpenCV is not installed.
    """
    from babyemo.data.loading.dataset import FaceDetection, FileItem, add_regions
    from babyemo.devices import map_in_readers

    opts = options or VideoOptions()
    run = run if run is not None else VideoRun(_source_name(source))
    start = time.perf_counter()
    try:
        reader = open_video(source)
    except VideoError as e:
        run.error = e.code or FileErrorCode.UNREADABLE.value
        yield FrameRow(_error(run.source, run.error, e.message))
        return
    names = predictor.class_names
    faces = predictor.face_detection
    detection = (FaceDetection(faces.detector, faces.crop, NoFaceFallback.error.value,
                               options=_detector_options(faces.detector, opts))
                 if faces is not None else None)
    spec, transform = predictor.model.input_spec, predictor.model.transform
    tracker = IoUTracker(opts.iou_threshold, opts.max_gap_s)
    smoother = TrackSmoother(opts.smooth_s)
    interval = 1.0 / opts.fps if opts.fps else None
    builder = EpisodeBuilder(names, opts.min_episode_s, path=run.source,
                             max_gap_s=opts.max_gap_s, frame_interval_s=interval)
    if record_timeline:
        run.recorder = TimelineRecorder(len(names))

    def analyse(frame: Frame) -> _Analysed:
        item = add_regions(FileItem(Path(run.source)), frame.image, spec, transform, detection)
        if not item.entries:
            return _Analysed(frame, item, None)
        import torch

        images = torch.stack([e.image for e in item.entries])
        return _Analysed(frame, item, predictor.model.probs(images))

    last_no_face = -math.inf
    with reader:
        run.info = reader.info
        frames = reader.frames(opts.fps, opts.duration_s)
        try:
            for done in map_in_readers(analyse, prefetch(frames, 4), predictor.parallel_readers):
                t, index = done.frame.time_s, done.frame.index
                run.frames += 1
                run.video_s = t
                if done.probs is None:
                    run.no_face_frames += 1
                    tracker.update(t, [])
                    run.episodes.extend(_end_tracks(run, tracker, smoother, builder))
                    if t - last_no_face >= NO_FACE_EVERY_S:
                        last_no_face = t
                        yield FrameRow(_error(run.source, FileErrorCode.NO_FACE.value,
                                              done.item.error_detail or "no face found"),
                                       index, t)
                else:
                    yield from _face_rows(done, run, predictor, tracker, smoother, builder)
                    run.episodes.extend(_end_tracks(run, tracker, smoother, builder))
                run.seconds = time.perf_counter() - start
                if on_frame is not None:
                    on_frame(run, t)
        finally:
            run.episodes.extend(_end_tracks(run, tracker, smoother, builder, close=True))
            run.episodes.extend(builder.finish(run.video_s + (interval or 0.0)))
            run.seconds = time.perf_counter() - start
        if reader.error is not None:
            run.error = reader.error.code
            yield FrameRow(_error(run.source, reader.error.code, reader.error.detail),
                           None, run.video_s)


def _detector_options(detector: str, opts: VideoOptions) -> dict[str, Any]:
    """``{"max_side": opts.detect_max_side}`` when the detector takes it, else ``{}``."""
    if opts.detect_max_side is None:
        return {}
    from babyemo.faces import get_detector

    try:
        get_detector(detector, max_side=opts.detect_max_side)
    except ConfigError:  # a detector without that option
        return {}
    return {"max_side": opts.detect_max_side}


def _error(source: str, code: str, detail: str | None) -> Prediction:
    return Prediction(source, "", float("nan"), (), code, error_detail=detail)


def _end_tracks(run: VideoRun, tracker: IoUTracker, smoother: TrackSmoother,
                builder: EpisodeBuilder, *, close: bool = False) -> list[Episode]:
    """Forget the tracks that ended (all of them with ``close``); their last episodes."""
    episodes = []
    for end in (tracker.close() if close else tracker.pop_ended()):
        run.current.pop(end.track_id, None)
        smoother.end(end.track_id)
        episodes.extend(builder.end(end.track_id))
    return episodes


def _face_rows(done: _Analysed, run: VideoRun, predictor: Predictor, tracker: IoUTracker,
               smoother: TrackSmoother, builder: EpisodeBuilder) -> Iterator[FrameRow]:
    """The rows of one frame's faces (tracks linked, probabilities smoothed)."""
    names = predictor.class_names
    t, entries = done.frame.time_s, done.item.entries
    probs = done.probs.numpy().astype(np.float64)
    boxes = [e.face.box if e.face is not None
             else (0.0, 0.0, float(done.frame.image.width), float(done.frame.image.height))
             for e in entries]
    ids = tracker.update(t, boxes)
    for entry, track_id, p, box in zip(entries, ids, probs, boxes, strict=True):
        q = smoother.update(track_id, t, p)
        k = int(q.argmax())
        uncertain = predictor.min_confidence is not None and q[k] < predictor.min_confidence
        label = UNCERTAIN if uncertain else names[k]
        run.episodes.extend(builder.update(track_id, t, None if uncertain else names[k],
                                           float(q[k])))
        if run.recorder is not None:
            run.recorder.add(track_id, t, q)
        run.current[track_id] = (label, float(q[k]))
        run.faces += 1
        face = entry.face
        yield FrameRow(
            Prediction(run.source, label, float(q[k]), tuple(float(v) for v in q),
                       top_class=names[k], face_index=entry.face_index,
                       box=tuple(float(v) for v in box),
                       det_score=(face.score if face is not None and entry.face_index is not None
                                  else None),
                       face=(None if predictor.face_detection is None else FACE_DETECTED
                             if entry.face_index is not None else FACE_WHOLE_IMAGE)),
            done.frame.index, t, track_id, names[int(p.argmax())])


@dataclass
class MediaResult:
    """What :func:`predict_media_to_files` did.

    Attributes:
        photos: Counts of the photo rows (:class:`~babyemo.prediction.PredictResult`).
        videos: One :class:`VideoRun` per video source, in order.
        n_rows: Rows written (photos and video frames).
        episodes_out: The episodes CSV written, or ``None``.
        plots: The timeline PNGs written.
        seconds: Wall time, in seconds (after the model was loaded).
    """

    photos: Any
    videos: list[VideoRun] = field(default_factory=list)
    n_rows: int = 0
    episodes_out: Path | None = None
    plots: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_episodes(self) -> int:
        """Episodes over all videos."""
        return sum(len(v.episodes) for v in self.videos)


def timeline_paths(plot_out: str | os.PathLike[str], sources: Sequence[str]) -> list[Path]:
    """Where each video's timeline goes: ``plot_out`` for one video; for several,
    ``<stem>-<k>-<video stem><suffix>`` beside it (k from 1)."""
    out = Path(plot_out)
    if len(sources) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{k}-{Path(str(s)).stem or 'stream'}{out.suffix}")
            for k, s in enumerate(sources, 1)]


def predict_media_to_files(found: FoundFiles, sources: Sequence[str | os.PathLike[str] | int],
                           predictor: Predictor, options: VideoOptions | None = None, *,
                           csv_out: str | os.PathLike[str] | IO[str] | None = None,
                           json_out: str | os.PathLike[str] | IO[str] | None = None,
                           episodes_out: str | os.PathLike[str] | None = None,
                           plot_out: str | os.PathLike[str] | None = None,
                           on_frame: Callable[[VideoRun, float], None] | None = None
                           ) -> MediaResult:
    """Predict photos and videos into one CSV/JSON (``babyemo predict VIDEO...``).

    The rows share one schema: ``path, frame, time_s, track_id, label, confidence,
    prob_<class>..., face_index, box_x, box_y, box_w, box_h, det_score, face, error,
    error_detail, raw_label`` (a photo's row leaves ``frame, time_s, track_id`` empty).
    The photos' rows come first, in input order, then each video's
    (:func:`predict_video`). Episodes of every video go to ``episodes_out``
    (:data:`~babyemo.video.episodes.EPISODE_COLUMNS`), timelines to ``plot_out``
    (:func:`timeline_paths`). Files are written under temporary names and renamed when
    complete. A live source (camera, stream) runs until ``options.duration_s`` or Ctrl-C,
    which ends that source normally: its rows, episodes and timeline are kept.

    Args:
        found: The photo files (videos taken out, see
            :func:`~babyemo.data.loading.folders.find_input_files`).
        sources: Video files, stream URLs and camera indices, in order.
        predictor: The model.
        options: Sampling and smoothing (:class:`VideoOptions`).
        csv_out: CSV file path or open text stream, or ``None``.
        json_out: JSON file path or open text stream, or ``None``.
        episodes_out: The episodes CSV, or ``None``.
        plot_out: The timeline PNG (one per video), or ``None``.
        on_frame: Called after each analysed frame (see :func:`predict_video`).

    Returns:
        The :class:`MediaResult`.

    Raises:
        ConfigError: Bad options, or an output that cannot be written.
    """
    from contextlib import ExitStack

    from babyemo.fs import atomic_open
    from babyemo.prediction import new_summary, photo_rows
    from babyemo.rows import PredictionWriter
    from babyemo.video.episodes import EpisodeWriter
    from babyemo.video.timeline import plot_timeline

    start = time.perf_counter()
    opts = options or VideoOptions()
    result = MediaResult(photos=new_summary(found, predictor))
    plots = timeline_paths(plot_out, [_source_name(s) for s in sources]) if plot_out else []
    with ExitStack() as stack:
        def stream(out: Any, **kw: Any) -> IO[str] | None:
            if out is None or hasattr(out, "write"):
                return out
            return stack.enter_context(atomic_open(out, "w", **kw))

        writer = PredictionWriter(predictor.class_names,
                                  csv_stream=stream(csv_out, newline=""),
                                  json_stream=stream(json_out),
                                  with_top=predictor.min_confidence is not None,
                                  with_faces=True, lead_columns=VIDEO_LEAD_COLUMNS,
                                  extra_columns=VIDEO_EXTRA_COLUMNS)
        episodes = (stack.enter_context(EpisodeWriter(episodes_out))
                    if episodes_out is not None else None)
        for pred in photo_rows(found, predictor, result.photos):
            writer.write(pred)
            result.n_rows += 1
        for k, source in enumerate(sources):
            run = VideoRun(_source_name(source))
            result.videos.append(run)
            rows = predict_video(source, predictor, opts, run=run,
                                 record_timeline=bool(plots), on_frame=on_frame)
            try:
                for row in rows:
                    writer.write(row.prediction, extra=row.columns())
                    result.n_rows += 1
            except KeyboardInterrupt:
                if not (isinstance(source, int) or is_stream(source)):
                    raise
                rows.close()  # Ctrl-C ends a live source: keep what it gave
                run.stopped = True
            if episodes is not None:
                for episode in run.episodes:
                    episodes.write(episode)
            if plots and run.recorder is not None:
                plot_timeline(run.recorder.series(), run.episodes, predictor.class_names,
                              plots[k], title=run.source)
                result.plots.append(plots[k])
        writer.close()
    result.episodes_out = Path(episodes_out) if episodes_out is not None else None
    result.seconds = time.perf_counter() - start
    return result
