"""The timeline plot of a video: per face track, class probabilities over video time.

What a researcher would rather look at than read: one panel per face track, a line per
class (its probability, 0-1) over the video's time axis in ``mm:ss``, and the track's
episodes shaded in their class's colour. Drawn with matplotlib's Agg renderer on a
standalone figure (imported lazily, as in :mod:`babyemo.reports`) and written
atomically.

The data of the plot is what an integrator can collect cheaply while it goes through the
video: a **series** per track, a ``(N, K + 1) float32`` array whose rows are the track's
sampled frames in time order, column 0 the video time in seconds and columns ``1..K``
the (smoothed) probabilities of the ``K`` classes. :class:`TimelineRecorder` builds it
one frame at a time, ``4 (K + 1)`` bytes per frame and face (16 bytes with 3 classes:
about 290 kB for an hour at 5 frames/s), and only needs to exist when a plot is asked
for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from babyemo.errors import ConfigError
from babyemo.reports import _message_figure, _new_figure, _save_png

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from babyemo.video.episodes import Episode

__all__ = ["TimelineRecorder", "format_mmss", "plot_timeline", "timeline_figure"]

_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                 21600, 43200, 86400)
"""Candidate spacings (seconds) of the time axis's ticks: whole seconds, minutes, hours."""


def format_mmss(seconds: float, _pos: Any = None) -> str:
    """Video time as ``m:ss`` (``mm:ss`` from 10 minutes), ``h:mm:ss`` from an hour.

    Usable as a :class:`matplotlib.ticker.FuncFormatter` function (hence ``_pos``).
    Seconds are rounded to the nearest whole second; negative times get a ``-``.

    Args:
        seconds: Video time in seconds.
        _pos: The tick position (ignored; matplotlib passes it).

    Returns:
        E.g. ``"0:05"``, ``"1:05"``, ``"12:00"``, ``"1:02:03"``; ``""`` for NaN/inf.
    """
    if not math.isfinite(seconds):
        return ""
    sign = "-" if seconds < 0 else ""
    total = int(round(abs(seconds)))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}" if h else f"{sign}{m}:{s:02d}"


class TimelineRecorder:
    """Collect the series of :func:`plot_timeline`, one frame and face at a time.

    Each track's rows live in one float32 array grown by doubling (amortised O(1) per
    frame, ``4 (K + 1)`` bytes per row).

    Args:
        num_classes: ``K``, the number of probabilities per frame (>= 1).

    Raises:
        ConfigError: ``num_classes`` < 1.
    """

    def __init__(self, num_classes: int) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be an int >= 1, got {num_classes!r}.",
                              "pass len(class_names)")
        self.num_classes = num_classes
        self._rows: dict[int, np.ndarray] = {}
        self._count: dict[int, int] = {}

    def add(self, track_id: int, time_s: float, probs: Any) -> None:
        """Record one frame of a track.

        Args:
            track_id: The face track.
            time_s: The frame's video time, seconds.
            probs: Its probabilities, shape ``(K,)``.

        Raises:
            ConfigError: ``probs`` is not ``(K,)``.
        """
        p = np.asarray(probs, dtype=np.float32).reshape(-1)
        if p.size != self.num_classes:
            raise ConfigError(f"Expected {self.num_classes} probabilities, got {p.size}.",
                              "one model per video")
        rows = self._rows.get(track_id)
        n = self._count.get(track_id, 0)
        if rows is None or n == len(rows):
            grown = np.empty((max(64, 2 * n), self.num_classes + 1), dtype=np.float32)
            if rows is not None:
                grown[:n] = rows[:n]
            rows = self._rows[track_id] = grown
        rows[n, 0] = time_s
        rows[n, 1:] = p
        self._count[track_id] = n + 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (with their spare capacity)."""
        return sum(r.nbytes for r in self._rows.values())

    def series(self) -> dict[int, np.ndarray]:
        """Per track id, its rows: ``(N, K + 1) float32`` (views, not copies)."""
        return {tid: rows[: self._count[tid]] for tid, rows in self._rows.items()}


def _check_series(series: Mapping[int, Any], k: int) -> dict[int, np.ndarray]:
    out = {}
    for tid, rows in series.items():
        a = np.asarray(rows, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != k + 1:
            raise ConfigError(f"The series of track {tid} has shape {a.shape}, expected "
                              f"(N, {k + 1}): time_s then {k} probabilities per row.",
                              "use TimelineRecorder")
        if len(a):
            out[int(tid)] = a
    return out


def _tick_step(span_s: float, max_ticks: int = 10) -> float:
    for step in _TICK_STEPS_S:
        if span_s / step <= max_ticks:
            return float(step)
    return float(math.ceil(span_s / max_ticks / 86400) * 86400)


def _broken(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN rows where a track has a gap (more than 2.5x its median frame
    interval), so its lines are not drawn across the gap."""
    if len(times) < 3:
        return times, values
    dt = np.diff(times)
    positive = dt[dt > 0]
    if not len(positive):
        return times, values
    cut = np.flatnonzero(dt > 2.5 * float(np.median(positive))) + 1
    if not len(cut):
        return times, values
    times = np.insert(times, cut, np.nan)
    values = np.insert(values, cut, np.nan, axis=0)
    return times, values


def timeline_figure(series: Mapping[int, Any], episodes: Iterable[Episode],
                    class_names: Sequence[str], *, title: str | None = None,
                    max_tracks: int = 8) -> Figure:
    """The figure of :func:`plot_timeline`.

    Args:
        series: Per track id, its rows ``(N, K + 1)``: time in seconds, then the ``K``
            class probabilities (see the module docstring; :meth:`TimelineRecorder.series`).
        episodes: Episodes to shade (those of tracks not shown are left out).
        class_names: The ``K`` class names (legend, colours ``C0``, ``C1``...).
        title: Figure title; ``None``: the number of tracks shown.
        max_tracks: Most panels: the tracks with the most frames are shown, in id order
            (the title says how many were left out).

    Returns:
        A standalone Agg :class:`~matplotlib.figure.Figure` (not saved); a small "no face
        tracks" figure when ``series`` holds no rows.

    Raises:
        ConfigError: A series is not ``(N, K + 1)``, or ``max_tracks`` < 1.
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    if not isinstance(max_tracks, int) or max_tracks < 1:
        raise ConfigError(f"max_tracks must be an int >= 1, got {max_tracks!r}.",
                          "e.g. 8")
    k = len(class_names)
    data = _check_series(series, k)
    if not data:
        return _message_figure("no face tracks", title or "")
    shown = sorted(sorted(data, key=lambda t: (-len(data[t]), t))[:max_tracks])
    t0 = min(0.0, *(float(data[t][:, 0].min()) for t in shown))
    t1 = max(float(data[t][:, 0].max()) for t in shown)
    by_track: dict[int, list[Episode]] = {t: [] for t in shown}
    for ep in episodes:
        if ep.track_id in by_track:
            by_track[ep.track_id].append(ep)
            t1 = max(t1, float(ep.end_s))
    if t1 <= t0:
        t1 = t0 + 1.0
    colours = {name: f"C{i % 10}" for i, name in enumerate(class_names)}

    fig = _new_figure((10.0, 0.9 + 1.9 * len(shown)))
    axes = np.atleast_1d(fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0])
    for ax, tid in zip(axes, shown, strict=True):
        times, probs = _broken(data[tid][:, 0], data[tid][:, 1:])
        for ep in by_track[tid]:
            ax.axvspan(ep.start_s, ep.end_s, color=colours.get(ep.label, "grey"),
                       alpha=0.18, linewidth=0)
        for i, name in enumerate(class_names):
            ax.plot(times, probs[:, i], color=colours[name], linewidth=1.2, label=name)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"track {tid}\nprobability")
        ax.grid(True, alpha=0.3)
    step = _tick_step(t1 - t0)
    axes[-1].set_xlim(t0, t1)
    axes[-1].xaxis.set_major_locator(MultipleLocator(step))
    axes[-1].xaxis.set_major_formatter(FuncFormatter(format_mmss))
    axes[-1].set_xlabel("video time (m:ss)")
    handles = [*axes[0].get_legend_handles_labels()[0],
               Patch(facecolor="grey", alpha=0.18, label="episode (shaded in its colour)")]
    axes[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                   fontsize=8, frameon=False)
    left_out = len(data) - len(shown)
    if title is None:
        title = f"{len(shown)} face track{'s' if len(shown) != 1 else ''}"
    if left_out:
        title += f" ({left_out} shorter track{'s' if left_out != 1 else ''} not shown)"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_timeline(series: Mapping[int, Any], episodes: Iterable[Episode],
                  class_names: Sequence[str], out: str | os.PathLike[str], *,
                  title: str | None = None, max_tracks: int = 8) -> None:
    """Write the timeline of a video as a PNG (:func:`timeline_figure`).

    One panel per face track, sharing the x axis (video time, ticks in ``m:ss`` at
    whole seconds, minutes or hours); in each, a line per class (its probability, 0-1;
    broken across gaps in the track) and the track's episodes as spans shaded in their
    class's colour; a legend of the classes on the right. The file is rendered in memory
    and written atomically (a temporary name in the same folder, then a rename).

    Args:
        series: Per track id, ``(N, K + 1)`` rows of time (s) and probabilities.
        episodes: The video's episodes (:class:`~babyemo.video.episodes.Episode`).
        class_names: The ``K`` class names.
        out: The ``.png`` file (its folder is created).
        title: Figure title (e.g. the video's name); ``None``: the number of tracks.
        max_tracks: Most panels (the tracks with the most frames).

    Raises:
        ConfigError: A series is not ``(N, K + 1)``, ``max_tracks`` < 1, or ``out``
            cannot be written (a folder, ...).
    """
    _save_png(timeline_figure(series, episodes, class_names, title=title,
                              max_tracks=max_tracks), out)
