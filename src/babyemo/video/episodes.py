"""Emotion over time per face track: smoothing, episodes, ``episodes.csv`` and scores.

What a coder of infant video writes down is not a label per frame but episodes: "crying
from 01:12 to 01:40, fairly sure". This module turns the per-frame probabilities of one
face track (:mod:`babyemo.video.tracks`) into that, online, in video-time order, with
memory flat in the video's length:

- :class:`TrackSmoother`: causal moving average (or median) of the calibrated
  probabilities over the last ``window_s`` seconds of a track (usable live);
- :class:`EpisodeBuilder`: runs of one label lasting at least ``min_episode_s``, returned
  as finished :class:`Episode` rows as soon as they end;
- :class:`EpisodeWriter`: ``episodes.csv`` (:data:`EPISODE_COLUMNS`), written atomically;
- :func:`episode_scores`: episode-level precision and recall, and the share of time
  labelled right, against a ground truth of labelled segments.

Time is always video time in seconds (the frame's timestamp in the recording, or since
the start of a live stream), never wall-clock time.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Protocol

import numpy as np

from babyemo.data.loading.folders import printable_name
from babyemo.errors import ConfigError
from babyemo.fs import atomic_open

__all__ = [
    "EPISODE_COLUMNS",
    "SMOOTHING_METHODS",
    "TrackSmoother",
    "Episode",
    "EpisodeBuilder",
    "EpisodeWriter",
    "LabelledSpan",
    "episode_scores",
]

EPISODE_COLUMNS = ("path", "track_id", "label", "start_s", "end_s", "duration_s",
                   "mean_confidence")
"""Columns of ``episodes.csv``, one row per :class:`Episode`."""

SMOOTHING_METHODS = ("mean", "median")
"""Methods of :class:`TrackSmoother`."""

_EPS_S = 1e-6
"""Durations are compared to ``min_episode_s`` to a microsecond (frame times are sums of
float intervals, so a 2-second run may measure 1.9999999999 s)."""


def _check_seconds(name: str, value: Any) -> float:
    """``value`` as a finite float >= 0, else :class:`ConfigError` naming ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {value!r}.",
                          "e.g. 1.0; 0 turns it off")
    return float(value)


def _check_time(time_s: Any, last: float | None, what: str) -> float:
    """A frame time as a finite float not before ``last``."""
    try:
        t = float(time_s)
    except (TypeError, ValueError):
        t = math.nan
    if not math.isfinite(t):
        raise ConfigError(f"Frame time must be a finite number of seconds, got {time_s!r}.",
                          "pass the frame's video time")
    if last is not None and t < last:
        raise ConfigError(f"Frame time {t:.3f} s of {what} is before its previous frame's "
                          f"({last:.3f} s).", "feed each track's frames in video-time order")
    return t


# --------------------------------------------------------------------------- smoothing


class TrackSmoother:
    """Causal smoothing of the probabilities of each face track over a time window.

    The smoothed vector at a frame of time ``t`` combines the track's frames with times
    in ``(t - window_s, t]`` (this frame included, later ones never: usable live). At 5
    sampled frames per second a 1-second window is the last 5 frames; across a gap in a
    track the window holds fewer frames (it is measured in video time, not frames).

    Methods:

    - ``"mean"``: the per-class mean of the probability vectors (sums to 1 again).
    - ``"median"``: the per-class median, divided by its sum so that it sums to 1 (it
      ignores a single outlier frame in a window of 3 or more; the mean where every
      median is 0).

    Measured (issue 17) on sequences of real out-of-fold probabilities (5-fold CV of the
    default recipe on infant-emotions, 866 photos): segments of 3-8 s with random labels
    at 5 frames/s, 60 videos of 12 segments, episodes with ``min_episode_s=1``; frame
    accuracy / episode F1 (temporal IoU >= 0.5):

    ============  ===============  ===============  ===============  ===============
    window_s      iid, mean        iid, median      held, mean       held, median
    ============  ===============  ===============  ===============  ===============
    0 (off)       0.737 / 0.877    0.737 / 0.877    0.713 / 0.617    0.713 / 0.617
    0.6           0.875 / 0.926    0.859 / 0.908    0.708 / 0.600    0.707 / 0.591
    1.0           0.908 / 0.946    0.891 / 0.912    0.700 / 0.595    0.696 / 0.582
    2.0           0.893 / 0.973    0.889 / 0.959    0.672 / 0.586    0.669 / 0.580
    3.0           0.845 / 0.881    0.842 / 0.872    0.642 / 0.524    0.637 / 0.520
    ============  ===============  ===============  ===============  ===============

    "iid": each frame's probabilities are those of a random photo of the true class
    (errors independent from frame to frame: what smoothing removes); "held": one photo
    per segment with noise on its log-probabilities (sigma 0.7) per frame (a wrong photo
    stays wrong: smoothing only adds the lag of a causal window, about ``window_s / 2``).
    The mean beat the median everywhere, so it is the default; about 1 s is the best
    window when frame errors are independent.

    Args:
        window_s: Window length in seconds of video time, >= 0; 0 returns each frame's
            probabilities unchanged (no smoothing).
        method: ``"mean"`` or ``"median"`` (:data:`SMOOTHING_METHODS`).

    Raises:
        ConfigError: ``window_s`` negative or not finite, or an unknown ``method``.

    Memory: per live track, the frames of one window (``window_s`` x frame rate vectors
    of ``K`` floats); :meth:`end` drops a track's.
    """

    def __init__(self, window_s: float, *, method: str = "mean") -> None:
        self.window_s = _check_seconds("window_s (smoothing)", window_s)
        if method not in SMOOTHING_METHODS:
            raise ConfigError(f"Unknown smoothing method {method!r}.",
                              f"choose one of {', '.join(SMOOTHING_METHODS)}")
        self.method = method
        self._frames: dict[int, deque[tuple[float, np.ndarray]]] = {}

    @property
    def track_ids(self) -> list[int]:
        """Ids of the tracks with frames held."""
        return list(self._frames)

    def update(self, track_id: int, time_s: float, probs: Any) -> np.ndarray:
        """Add a frame of a track and return its smoothed probabilities.

        Args:
            track_id: The frame's face track.
            time_s: The frame's video time (seconds), not before the track's previous.
            probs: Calibrated class probabilities of the frame, shape ``(K,)``, finite
                (any float dtype; the same ``K`` for every frame of a track).

        Returns:
            Smoothed probabilities, shape ``(K,)`` float64 (a new array).

        Raises:
            ConfigError: ``probs`` is not a finite ``(K,)`` vector of the track's ``K``, or
                ``time_s`` is not finite or before the track's previous frame.
        """
        p = np.array(probs, dtype=np.float64)
        if p.ndim != 1 or p.size == 0 or not np.isfinite(p).all():
            raise ConfigError(f"Probabilities must be a finite (K,) vector, got shape "
                              f"{p.shape}.", "pass one frame's class probabilities")
        frames = self._frames.get(track_id)
        t = _check_time(time_s, frames[-1][0] if frames else None, f"track {track_id}")
        if frames and frames[-1][1].shape != p.shape:
            raise ConfigError(f"Track {track_id} had {frames[-1][1].size} class "
                              f"probabilities, now {p.size}.", "one model per video")
        if self.window_s == 0:
            return p
        if frames is None:
            frames = self._frames[track_id] = deque()
        frames.append((t, p))
        while frames[0][0] <= t - self.window_s:
            frames.popleft()
        stack = np.stack([f[1] for f in frames])
        if self.method == "mean":
            return stack.mean(axis=0)
        med = np.median(stack, axis=0)
        total = med.sum()
        return med / total if total > 0 else stack.mean(axis=0)

    def end(self, track_id: int) -> None:
        """Forget a track that ended (no-op for an unknown id)."""
        self._frames.pop(track_id, None)


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class Episode:
    """A stretch of one face track with one emotion label.

    Attributes:
        path: The video (file path or stream URL) as given.
        track_id: The face track (:class:`~babyemo.video.tracks.IoUTracker` id).
        label: The class name.
        start_s: Video time of its first frame, seconds.
        end_s: Video time just after its last frame of ``label``, seconds: the time of
            the track's next sampled frame, or, when there is none (the track ended or
            had a gap longer than the tracker's), the last frame's time plus one
            sampling interval (see :class:`EpisodeBuilder`).
        mean_confidence: Mean confidence (probability of ``label``) over its frames of
            ``label``, in [0, 1].
    """

    path: str
    track_id: int
    label: str
    start_s: float
    end_s: float
    mean_confidence: float

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``, seconds."""
        return self.end_s - self.start_s


@dataclass
class _Run:
    """Consecutive frame intervals of one label: ``[start_s, end_s)``, confidences."""

    label: str
    start_s: float
    end_s: float
    conf_sum: float
    n: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class _TrackState:
    """What the builder holds per live track: O(1) in the track's length."""

    last_t: float  # time of the pending (last fed) frame
    last_label: str | None
    last_conf: float
    spacing: float | None = None  # last interval between two frames within max_gap_s
    episode: _Run | None = None  # the open episode candidate
    challenger: _Run | None = None  # the run of another label since the candidate's


class EpisodeBuilder:
    """Turn per-frame labels of face tracks into episodes, online.

    Feed every sampled frame of every track with :meth:`update` (each track's frames in
    video-time order; tracks may be interleaved); it returns the episodes that the frame
    finished. Call :meth:`end` when a track ends
    (:meth:`~babyemo.video.tracks.IoUTracker.pop_ended`) and :meth:`finish` at the end of
    the video: they return the episodes still open.

    Definitions:

    - A frame stands for the time from its own to the track's next frame: the frame at
      ``t_i`` covers ``[t_i, t_(i+1))``. So runs of labels tile the track without holes
      and an episode's ``end_s`` is the time of the first frame after it (like the
      ground truth's ``Segment.end_s``). The last frame of a track covers one sampling
      interval: ``frame_interval_s`` when given, else the track's last interval between
      two frames (0 for a track of one frame), capped at ``time_s`` of :meth:`end` /
      :meth:`finish` (the end of the video).
    - A gap between two frames of a track longer than ``max_gap_s`` (the tracker's:
      only seen when the caller does not end tracks) ends the track's episode as if the
      track had ended; shorter gaps (missed detections) are covered by the frame before.
    - An episode of label ``L`` is held until another label has lasted
      ``min_episode_s`` without a break (the episode then ends where that run starts)
      or ``L`` has been absent for ``min_episode_s`` (it ends after its last ``L``
      frame). Shorter interruptions are absorbed: crying 10 s, happy 0.4 s, crying 10 s
      with ``min_episode_s=1`` is one crying episode of 20.4 s, as a coder would write
      it. A run shorter than ``min_episode_s`` that is not absorbed is not an episode.
      A stretch is written as an episode when it lasts at least ``min_episode_s`` (to a
      microsecond); episodes of one track never overlap. ``min_episode_s=0`` gives
      every run of one label as an episode.
    - Frames whose label is ``None`` (no label: below ``--min-confidence``, or an
      error) interrupt like another label but never make an episode.

    An episode is returned as soon as it is known to have ended: up to
    ``min_episode_s`` after its ``end_s`` (live use: that is the delay).

    Args:
        class_names: The model's class names (labels are checked against them).
        min_episode_s: Shortest episode, seconds >= 0.
        path: The video, copied into every :class:`Episode`.
        max_gap_s: Longest gap (seconds) between two frames of a track within one
            episode: the tracker's ``max_gap_s``.
        frame_interval_s: The sampling interval (``1 / fps``), seconds > 0, for the end
            of a track's last frame; ``None``: the track's last interval between frames.

    Raises:
        ConfigError: ``min_episode_s`` or ``max_gap_s`` negative or not finite,
            ``frame_interval_s`` not > 0, or no class names.
    """

    def __init__(self, class_names: Sequence[str], min_episode_s: float, *, path: str = "",
                 max_gap_s: float = 1.0, frame_interval_s: float | None = None) -> None:
        self.class_names = tuple(class_names)
        if not self.class_names:
            raise ConfigError("No class names given.", "pass the model's class names")
        self.min_episode_s = _check_seconds("min_episode_s", min_episode_s)
        self.max_gap_s = _check_seconds("max_gap_s", max_gap_s)
        if frame_interval_s is not None:
            _check_seconds("frame_interval_s", frame_interval_s)
            if frame_interval_s <= 0:
                raise ConfigError(f"frame_interval_s must be > 0, got {frame_interval_s!r}.",
                                  "pass 1 / fps, or None to measure it")
        self.frame_interval_s = frame_interval_s
        self.path = path
        self._labels = frozenset(self.class_names)
        self._tracks: dict[int, _TrackState] = {}

    @property
    def track_ids(self) -> list[int]:
        """Ids of the tracks with state held (not ended yet)."""
        return list(self._tracks)

    def update(self, track_id: int, time_s: float, label: str | None,
               confidence: float) -> list[Episode]:
        """Add one sampled frame of a track.

        Args:
            track_id: The frame's face track.
            time_s: The frame's video time (seconds), not before the track's previous.
            label: The frame's label (one of ``class_names``), or ``None`` for no label.
            confidence: The probability of ``label``, in [0, 1] (ignored for ``None``).

        Returns:
            The episodes this frame finished (usually none), in time order.

        Raises:
            ConfigError: An unknown label, a confidence outside [0, 1], or a time that is
                not finite or before the track's previous frame.
        """
        state = self._tracks.get(track_id)
        t = _check_time(time_s, state.last_t if state else None, f"track {track_id}")
        if label is not None and label not in self._labels:
            raise ConfigError(f"Unknown label {label!r}.",
                              f"expected one of {', '.join(self.class_names)}, or None")
        conf = 0.0
        if label is not None:
            try:
                conf = float(confidence)
            except (TypeError, ValueError):
                conf = math.nan
            if not 0.0 <= conf <= 1.0:
                raise ConfigError(f"Confidence must be in [0, 1], got {confidence!r}.",
                                  "pass the probability of the frame's label")
        out: list[Episode] = []
        if state is None:
            self._tracks[track_id] = _TrackState(t, label, conf)
            return out
        gap = t - state.last_t
        if gap > self.max_gap_s:
            out += self._close(track_id, state, t)
            self._tracks[track_id] = _TrackState(t, label, conf)
            return out
        out += self._feed(track_id, state, state.last_label, state.last_t, t, state.last_conf)
        if gap > 0:
            state.spacing = gap
        state.last_t, state.last_label, state.last_conf = t, label, conf
        return out

    def end(self, track_id: int, time_s: float | None = None) -> list[Episode]:
        """End a track: return its open episode (if long enough) and forget it.

        Args:
            track_id: The track (no-op for an unknown id).
            time_s: The latest time the track can last to, seconds (the end of the
                video); ``None``: its last frame plus one sampling interval.

        Returns:
            The episodes it finished (none or one).
        """
        state = self._tracks.pop(track_id, None)
        return [] if state is None else self._close(track_id, state, time_s)

    def finish(self, time_s: float | None = None) -> list[Episode]:
        """End every track (the video ended).

        Args:
            time_s: The video's end (duration) in seconds, or ``None`` (see :meth:`end`).

        Returns:
            The episodes still open, ordered by ``start_s`` then ``track_id``.
        """
        out = [ep for tid in list(self._tracks) for ep in self.end(tid, time_s)]
        return sorted(out, key=lambda e: (e.start_s, e.track_id))

    # ------------------------------------------------------------------ internals

    def _close(self, track_id: int, state: _TrackState, cap: float | None) -> list[Episode]:
        """Feed the track's last frame (one sampling interval, capped) and flush."""
        interval = self.frame_interval_s if self.frame_interval_s is not None \
            else (state.spacing or 0.0)
        end = state.last_t + interval
        if cap is not None and math.isfinite(cap):
            end = max(state.last_t, min(end, float(cap)))
        out = self._feed(track_id, state, state.last_label, state.last_t, end,
                         state.last_conf)
        if state.episode is not None:
            out += self._emit(track_id, state.episode)
        state.episode = state.challenger = None
        return out

    def _feed(self, track_id: int, state: _TrackState, label: str | None, start: float,
              end: float, conf: float) -> list[Episode]:
        """The state machine of the class docstring, fed one frame interval."""
        ep, ch, min_s = state.episode, state.challenger, self.min_episode_s - _EPS_S
        if label is not None and label == (ep.label if ep else None):
            ep.end_s = end
            ep.conf_sum += conf
            ep.n += 1
            state.challenger = None
            return []
        if label is not None and ch is not None and ch.label == label:
            ch.end_s = end
            ch.conf_sum += conf
            ch.n += 1
        elif label is not None:
            ch = state.challenger = _Run(label, start, end, conf, 1)
        else:
            ch = state.challenger = None
        if ep is None:
            state.episode, state.challenger = ch, None
            return []
        if (ch is not None and ch.duration_s >= min_s) or end - ep.end_s >= min_s:
            state.episode, state.challenger = ch, None
            return self._emit(track_id, ep)
        return []

    def _emit(self, track_id: int, run: _Run) -> list[Episode]:
        if run.duration_s <= 0 or run.duration_s < self.min_episode_s - _EPS_S:
            return []
        return [Episode(self.path, track_id, run.label, run.start_s, run.end_s,
                        run.conf_sum / run.n)]


# --------------------------------------------------------------------------- episodes.csv


class EpisodeWriter:
    """Write :class:`Episode` rows to ``episodes.csv`` (:data:`EPISODE_COLUMNS`).

    The file is written atomically (:func:`babyemo.fs.atomic_open`): it appears, whole,
    when the ``with`` block ends without an error; an error or ``KeyboardInterrupt``
    inside the block leaves any earlier file as it was (a live stream stopped with
    Ctrl-C should catch it inside the block, then :meth:`EpisodeBuilder.finish`).
    Times are written in seconds with 3 decimals, the confidence with 4::

        with EpisodeWriter(out / "episodes.csv") as writer:
            writer.write_all(builder.update(...))

    Args:
        path: The CSV file (its folder is created; a link or ``/dev/stdout`` is
            followed as :func:`~babyemo.fs.atomic_open` does).

    Attributes:
        count: Rows written so far.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.count = 0
        self._stack: contextlib.ExitStack | None = None
        self._csv: Any = None

    def __enter__(self) -> EpisodeWriter:
        stack = contextlib.ExitStack()
        f: IO[str] = stack.enter_context(atomic_open(self.path, "w", newline=""))
        self._csv = csv.writer(f)
        self._csv.writerow(EPISODE_COLUMNS)
        self._stack = stack
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        stack, self._stack, self._csv = self._stack, None, None
        return bool(stack.__exit__(exc_type, exc, tb)) if stack else False

    def write(self, episode: Episode) -> None:
        """Write one row.

        Raises:
            ConfigError: The writer is not open (use it in a ``with`` block).
        """
        if self._csv is None:
            raise ConfigError("EpisodeWriter is not open.", "use it in a `with` block")
        e = episode
        self._csv.writerow([printable_name(e.path), e.track_id, e.label, f"{e.start_s:.3f}",
                            f"{e.end_s:.3f}", f"{e.duration_s:.3f}",
                            f"{e.mean_confidence:.4f}"])
        self.count += 1

    def write_all(self, episodes: Iterable[Episode]) -> None:
        """Write several rows (see :meth:`write`)."""
        for episode in episodes:
            self.write(episode)


# --------------------------------------------------------------------------- scores


class LabelledSpan(Protocol):
    """What a ground-truth segment needs: a label and a time span in seconds
    (:class:`babyemo.video.synthetic.Segment` is one, and so is :class:`Episode`)."""

    @property
    def label(self) -> str: ...

    @property
    def start_s(self) -> float: ...

    @property
    def end_s(self) -> float: ...


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _covered(spans: list[tuple[float, float]], a: float, b: float) -> float:
    """Length of ``[a, b)`` covered by the union of ``spans`` (seconds)."""
    total, cur = 0.0, a
    for s0, s1 in sorted(spans):
        s0, s1 = max(s0, cur), min(s1, b)
        if s1 > s0:
            total += s1 - s0
            cur = s1
    return total


def episode_scores(predicted: Sequence[LabelledSpan], truth: Sequence[LabelledSpan], *,
                   min_overlap: float = 0.5) -> dict[str, float | int]:
    """Score predicted episodes against ground-truth segments of one video.

    Episode level (as in temporal action detection): a predicted episode is a true
    positive when it is paired with a truth episode of the same label whose temporal IoU
    (overlap / union of the two time spans) is >= ``min_overlap``; pairs are one-to-one,
    chosen by the assignment of largest total IoU (Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`). Truth segments of one label that touch
    or overlap are merged first (two photos of one label in a row are one episode);
    predicted episodes are taken as they are, whatever their track (a video of one infant
    is expected; score each track on its own otherwise). Precision = TP / predicted,
    recall = TP / truth, F1 their harmonic mean, 0 where undefined (``zero_division=0``).

    Time level: ``time_recall`` is the share of truth time covered by predicted episodes
    of the same label, ``time_precision`` the share of predicted episode time that lies
    in truth of the same label (overlapping predicted episodes are counted once).

    Args:
        predicted: Predicted episodes (anything with ``label``, ``start_s``, ``end_s``).
        truth: Ground-truth segments (same), e.g. :class:`babyemo.video.synthetic.Segment`.
        min_overlap: Least temporal IoU of a true positive, in (0, 1].

    Returns:
        ``{"n_predicted", "n_truth", "true_positives", "precision", "recall", "f1",
        "mean_iou", "time_precision", "time_recall"}`` (``n_truth`` after merging;
        ``mean_iou``: mean temporal IoU of the true positives, 0 without any).

    Raises:
        ConfigError: ``min_overlap`` outside (0, 1], or a span with ``end_s < start_s``
            or non-finite times.
    """
    if not (isinstance(min_overlap, (int, float)) and 0.0 < min_overlap <= 1.0):
        raise ConfigError(f"min_overlap must be in (0, 1], got {min_overlap!r}.",
                          "0.5 is the usual value")
    for span in (*predicted, *truth):
        a, b = float(span.start_s), float(span.end_s)
        if not (math.isfinite(a) and math.isfinite(b) and b >= a):
            raise ConfigError(f"A span must have finite times with end_s >= start_s, got "
                              f"{span.label!r} {a}-{b} s.", "check the episodes")
    pred = [(p.label, float(p.start_s), float(p.end_s)) for p in predicted]
    true = sorted(_merged_union([(t.label, float(t.start_s), float(t.end_s)) for t in truth]),
                  key=lambda x: (x[1], x[0]))
    iou = np.zeros((len(pred), len(true)))
    for i, (pl, p0, p1) in enumerate(pred):
        for j, (tl, t0, t1) in enumerate(true):
            if pl == tl:
                inter = _overlap(p0, p1, t0, t1)
                union = (p1 - p0) + (t1 - t0) - inter
                iou[i, j] = inter / union if union > 0 else 0.0
    valid = iou >= min_overlap - 1e-12
    matched: list[float] = []
    if valid.any():
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(np.where(valid, -iou, 0.0))
        matched = [float(iou[r, c]) for r, c in zip(rows, cols, strict=True) if valid[r, c]]
    tp = len(matched)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    def share(spans: list[tuple[str, float, float]],
              cover: list[tuple[str, float, float]]) -> float:
        total = sum(b - a for _, a, b in _merged_union(spans))
        hit = sum(_covered([(c0, c1) for cl, c0, c1 in cover if cl == label], a, b)
                  for label, a, b in _merged_union(spans))
        return hit / total if total > 0 else 0.0

    return {
        "n_predicted": len(pred),
        "n_truth": len(true),
        "true_positives": tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_iou": float(np.mean(matched)) if matched else 0.0,
        "time_precision": share(pred, true),
        "time_recall": share(true, pred),
    }


def _merged_union(spans: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """The union of ``spans`` per label, as disjoint ``(label, start, end)`` spans: the
    spans of one label that touch (to a microsecond) or overlap are merged."""
    out: list[tuple[str, float, float]] = []
    for label in sorted({s[0] for s in spans}):
        cur: list[float] | None = None
        for _, a, b in sorted(s for s in spans if s[0] == label):
            if cur is not None and a <= cur[1] + _EPS_S:
                cur[1] = max(cur[1], b)
            else:
                if cur is not None:
                    out.append((label, cur[0], cur[1]))
                cur = [a, b]
        if cur is not None:
            out.append((label, cur[0], cur[1]))
    return out
