"""babyemo.video.timeline: the per-track probability timeline of a video."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from babyemo.errors import ConfigError
from babyemo.video.episodes import Episode
from babyemo.video.timeline import (
    TimelineRecorder,
    format_mmss,
    plot_timeline,
    timeline_figure,
)

CLASSES = ("angry", "crying", "happy")


@pytest.mark.parametrize("seconds, text", [
    (0, "0:00"), (5.4, "0:05"), (59.6, "1:00"), (65, "1:05"), (600, "10:00"),
    (3599, "59:59"), (3723, "1:02:03"), (-5, "-0:05"), (float("nan"), "")])
def test_format_mmss(seconds, text):
    assert format_mmss(seconds) == text
    assert format_mmss(seconds, 3) == text  # as a FuncFormatter: (value, position)


def recorded(tracks: dict[int, int], seconds: float = 90.0) -> TimelineRecorder:
    """A recorder with ``tracks[id]`` frames of each track at 5 frames/s."""
    rng = np.random.default_rng(0)
    recorder = TimelineRecorder(len(CLASSES))
    for tid, n in tracks.items():
        for i in range(n):
            recorder.add(tid, i * seconds / max(n, 1), rng.dirichlet(np.ones(3)))
    return recorder


def test_recorder_keeps_rows_compact_and_in_order():
    recorder = TimelineRecorder(3)
    for i in range(200):  # past the first capacity of 64 rows
        recorder.add(1, i * 0.2, [i, 0.0, 1.0])
    recorder.add(2, 5.0, np.array([0.1, 0.2, 0.7]))
    series = recorder.series()
    assert sorted(series) == [1, 2]
    assert series[1].shape == (200, 4) and series[1].dtype == np.float32
    np.testing.assert_allclose(series[1][:, 0], np.arange(200) * 0.2, rtol=1e-6)
    np.testing.assert_allclose(series[1][:, 1], np.arange(200))
    np.testing.assert_allclose(series[2], [[5.0, 0.1, 0.2, 0.7]])
    assert recorder.nbytes <= 2 * (256 + 64) * 4 * 4  # float32, at most doubled capacity
    with pytest.raises(ConfigError, match="Expected 3 probabilities"):
        recorder.add(1, 1.0, [0.5, 0.5])
    with pytest.raises(ConfigError):
        TimelineRecorder(0)


def test_plot_timeline_writes_a_png_atomically(tmp_path):
    out = tmp_path / "plots" / "timeline.png"
    episodes = [Episode("v.mp4", 1, "crying", 0.0, 30.0, 0.8),
                Episode("v.mp4", 2, "happy", 10.0, 60.0, 0.7),
                Episode("v.mp4", 9, "happy", 10.0, 60.0, 0.7)]  # no series: left out
    plot_timeline(recorded({1: 450, 2: 300}).series(), episodes, CLASSES, out, title="v.mp4")
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.width > 600 and im.height > 300
    assert sorted(p.name for p in out.parent.iterdir()) == ["timeline.png"]  # no temp left


def test_timeline_has_a_panel_per_track_and_a_mmss_axis():
    fig = timeline_figure(recorded({1: 450, 2: 300}).series(),
                          [Episode("v.mp4", 1, "crying", 0.0, 30.0, 0.8)], CLASSES)
    axes = fig.axes
    assert len(axes) == 2
    assert [ax.get_ylabel().splitlines()[0] for ax in axes] == ["track 1", "track 2"]
    assert [line.get_label() for line in axes[0].get_lines()] == list(CLASSES)
    assert len(axes[0].patches) == 1 and len(axes[1].patches) == 0  # the shaded episode
    assert axes[-1].xaxis.get_major_formatter()(65.0, 0) == "1:05"
    assert axes[-1].get_xlim() == pytest.approx((0.0, 90.0), abs=0.5)
    assert fig._suptitle.get_text() == "2 face tracks"


def test_timeline_shows_the_longest_tracks_only():
    fig = timeline_figure(recorded({1: 100, 2: 5, 3: 80, 4: 3}).series(), [], CLASSES,
                          max_tracks=2)
    assert [ax.get_ylabel().splitlines()[0] for ax in fig.axes] == ["track 1", "track 3"]
    assert fig._suptitle.get_text() == "2 face tracks (2 shorter tracks not shown)"


def test_timeline_breaks_lines_across_gaps():
    recorder = TimelineRecorder(3)
    for t in (0.0, 0.2, 0.4, 5.0, 5.2):
        recorder.add(1, t, [0.2, 0.3, 0.5])
    fig = timeline_figure(recorder.series(), [], CLASSES)
    x = fig.axes[0].get_lines()[0].get_xdata()
    assert np.isnan(x).sum() == 1 and len(x) == 6


def test_timeline_without_faces_and_bad_series(tmp_path):
    out = tmp_path / "empty.png"
    plot_timeline({}, [], CLASSES, out)
    with Image.open(out) as im:
        assert im.width > 0
    with pytest.raises(ConfigError, match=r"expected \(N, 4\)"):
        timeline_figure({1: np.zeros((5, 3))}, [], CLASSES)
    with pytest.raises(ConfigError, match="max_tracks"):
        timeline_figure({}, [], CLASSES, max_tracks=0)
