"""babyemo.video.episodes: smoothing per track, episodes, episodes.csv and their scores."""

from __future__ import annotations

import csv
from typing import NamedTuple

import numpy as np
import pytest

from babyemo.errors import ConfigError
from babyemo.video.episodes import (
    EPISODE_COLUMNS,
    Episode,
    EpisodeBuilder,
    EpisodeWriter,
    TrackSmoother,
    episode_scores,
)
from babyemo.video.tracks import IoUTracker

CLASSES = ("angry", "crying", "happy")
DT = 0.2


class Span(NamedTuple):
    """A ground-truth segment (the LabelledSpan protocol)."""

    label: str
    start_s: float
    end_s: float


# --------------------------------------------------------------------------- smoothing


def test_window_zero_returns_each_frame_unchanged():
    smoother = TrackSmoother(0.0)
    for t, p in ((0.0, [0.2, 0.3, 0.5]), (0.2, [1.0, 0.0, 0.0])):
        out = smoother.update(1, t, np.array(p, dtype=np.float32))
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, p, rtol=1e-6)
    assert smoother.track_ids == []  # nothing held


def test_mean_over_the_last_window_seconds():
    smoother = TrackSmoother(1.0)
    frames = [(0.0, [1.0, 0.0]), (0.5, [0.0, 1.0]), (1.0, [0.5, 0.5]), (1.5, [0.0, 1.0]),
              (4.0, [1.0, 0.0])]
    out = [smoother.update(7, t, p) for t, p in frames]
    np.testing.assert_allclose(out[0], [1.0, 0.0])
    np.testing.assert_allclose(out[1], [0.5, 0.5])  # frames 0.0 and 0.5
    np.testing.assert_allclose(out[2], [0.25, 0.75])  # (0.0, 1.0]: 0.5 and 1.0, not 0.0
    np.testing.assert_allclose(out[3], [0.25, 0.75])  # 1.0 and 1.5
    np.testing.assert_allclose(out[4], [1.0, 0.0])  # after a gap: only itself


def test_median_ignores_one_outlier_and_sums_to_one():
    smoother = TrackSmoother(1.0, method="median")
    frames = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.0, 0.0, 1.0], [0.8, 0.1, 0.1]]
    out = [smoother.update(1, i * DT, p) for i, p in enumerate(frames)]
    assert out[3].argmax() == 0
    med = np.array([0.65, 0.15, 0.1])  # per-class medians of the 4 frames
    np.testing.assert_allclose(out[3], med / med.sum())
    assert out[3].sum() == pytest.approx(1.0)


def test_tracks_are_smoothed_apart_and_end_drops_one():
    smoother = TrackSmoother(10.0)
    smoother.update(1, 0.0, [1.0, 0.0])
    smoother.update(2, 0.0, [0.0, 1.0])
    np.testing.assert_allclose(smoother.update(1, 0.2, [1.0, 0.0]), [1.0, 0.0])
    smoother.end(1)
    smoother.end(99)  # unknown: no-op
    assert smoother.track_ids == [2]
    np.testing.assert_allclose(smoother.update(1, 0.4, [0.0, 1.0]), [0.0, 1.0])


def test_memory_is_one_window_per_track():
    smoother = TrackSmoother(1.0)
    for i in range(1000):
        smoother.update(1, i * DT, [0.5, 0.5])
    assert len(smoother._frames[1]) == 5


@pytest.mark.parametrize("window", [-1.0, float("nan"), float("inf"), "1"])
def test_bad_windows_are_refused(window):
    with pytest.raises(ConfigError, match="window_s"):
        TrackSmoother(window)


def test_bad_smoothing_inputs_are_refused():
    with pytest.raises(ConfigError, match="method"):
        TrackSmoother(1.0, method="hmm")
    smoother = TrackSmoother(1.0)
    smoother.update(1, 1.0, [0.5, 0.5])
    with pytest.raises(ConfigError, match="before"):
        smoother.update(1, 0.5, [0.5, 0.5])
    with pytest.raises(ConfigError, match="2 class probabilities, now 3"):
        smoother.update(1, 2.0, [0.2, 0.3, 0.5])
    with pytest.raises(ConfigError, match="finite"):
        smoother.update(1, 2.0, [float("nan"), 1.0])


# --------------------------------------------------------------------------- episodes


def feed(builder: EpisodeBuilder, labels: str, track_id: int = 1, t0: float = 0.0,
         conf: float = 0.8) -> list[Episode]:
    """One frame every DT seconds; ``labels`` as letters: a(ngry), c(rying), h(appy),
    ``.`` for no label."""
    names = {"a": "angry", "c": "crying", "h": "happy", ".": None}
    out: list[Episode] = []
    for i, ch in enumerate(labels):
        out += builder.update(track_id, round(t0 + i * DT, 6), names[ch], conf)
    return out


def spans(episodes: list[Episode]) -> list[tuple[str, float, float]]:
    return [(e.label, round(e.start_s, 6), round(e.end_s, 6)) for e in episodes]


def test_runs_become_episodes_ending_at_the_next_frame():
    builder = EpisodeBuilder(CLASSES, 1.0, path="visit.mp4", frame_interval_s=DT)
    done = feed(builder, "c" * 10 + "h" * 10)
    assert spans(done) == [("crying", 0.0, 2.0)]  # ends at the first happy frame's time
    assert done[0].path == "visit.mp4" and done[0].track_id == 1
    assert done[0].duration_s == pytest.approx(2.0)
    assert done[0].mean_confidence == pytest.approx(0.8)
    # the last frame (3.8 s) covers one sampling interval: to 4.0 s
    assert spans(builder.finish()) == [("happy", 2.0, 4.0)]
    assert builder.track_ids == []


def test_the_end_is_capped_at_the_video_end_and_the_interval_measured_when_not_given():
    builder = EpisodeBuilder(CLASSES, 1.0, frame_interval_s=DT)
    feed(builder, "c" * 10)
    assert spans(builder.finish(1.9)) == [("crying", 0.0, 1.9)]
    builder = EpisodeBuilder(CLASSES, 0.5)  # no interval: the track's last one (0.2 s)
    feed(builder, "c" * 10)
    assert spans(builder.end(1)) == [("crying", 0.0, 2.0)]


def test_short_runs_are_not_episodes():
    builder = EpisodeBuilder(CLASSES, 1.0, frame_interval_s=DT)
    done = feed(builder, "hh" + "c" * 10 + "aaaa")
    done += builder.finish()
    assert spans(done) == [("crying", 0.4, 2.4)]  # 0.4 s of happy, 0.8 s of angry: dropped


def test_a_short_interruption_of_one_label_is_absorbed():
    builder = EpisodeBuilder(CLASSES, 1.0, frame_interval_s=DT)
    done = feed(builder, "c" * 10 + "hh" + "c" * 10, conf=0.8)
    done += builder.finish()
    assert spans(done) == [("crying", 0.0, 4.4)]
    assert done[0].mean_confidence == pytest.approx(0.8)  # the happy frames are not in it


def test_mean_confidence_is_over_the_frames_of_the_label():
    builder = EpisodeBuilder(CLASSES, 0.0, frame_interval_s=DT)
    for i, conf in enumerate((0.6, 0.8, 1.0)):
        builder.update(1, i * DT, "happy", conf)
    assert builder.finish()[0].mean_confidence == pytest.approx(0.8)


def test_a_label_absent_for_min_episode_ends_after_its_last_frame():
    # crying, then happy and angry in turns, each shorter than 1 s: crying ends at 2.0 s
    # once it has been absent for 1 s; the flicker after it is too short for an episode
    builder = EpisodeBuilder(CLASSES, 1.0, frame_interval_s=DT)
    done = feed(builder, "c" * 10 + "hhaahhaa")
    assert spans(done) == [("crying", 0.0, 2.0)]
    assert builder.finish() == []


def test_frames_without_label_interrupt_but_make_no_episode():
    builder = EpisodeBuilder(CLASSES, 1.0, frame_interval_s=DT)
    done = feed(builder, "c" * 10 + "..." + "c" * 10 + "." * 10)
    done += builder.finish()
    assert spans(done) == [("crying", 0.0, 4.6)]  # 0.6 s of no label absorbed


def test_min_episode_zero_gives_every_run():
    builder = EpisodeBuilder(CLASSES, 0.0, frame_interval_s=DT)
    done = feed(builder, "chhac") + builder.finish()
    assert spans(done) == [("crying", 0.0, 0.2), ("happy", 0.2, 0.6), ("angry", 0.6, 0.8),
                           ("crying", 0.8, 1.0)]


def test_a_gap_longer_than_max_gap_ends_the_episode():
    builder = EpisodeBuilder(CLASSES, 1.0, max_gap_s=1.0, frame_interval_s=DT)
    feed(builder, "c" * 10)  # 0.0 - 1.8 s
    done = feed(builder, "c" * 10, t0=1.8 + 1.2)  # after a 1.2 s gap
    assert spans(done) == [("crying", 0.0, 2.0)]
    assert spans(builder.finish()) == [("crying", 3.0, 5.0)]
    builder = EpisodeBuilder(CLASSES, 1.0, max_gap_s=1.0, frame_interval_s=DT)
    feed(builder, "c" * 10)
    feed(builder, "c" * 10, t0=1.8 + 1.0)  # a 1.0 s gap: bridged
    assert spans(builder.finish()) == [("crying", 0.0, 4.8)]


def test_interleaved_tracks_make_their_own_episodes():
    builder = EpisodeBuilder(CLASSES, 1.0, frame_interval_s=DT)
    a = "c" * 10 + "h" * 10
    b = "h" * 15 + "a" * 5
    done = []
    for i in range(20):
        t = i * DT
        done += builder.update(1, t, {"c": "crying", "h": "happy"}[a[i]], 0.9)
        done += builder.update(2, t, {"h": "happy", "a": "angry"}[b[i]], 0.7)
    assert [(e.track_id, *s) for e, s in zip(done, spans(done), strict=True)] == \
        [(1, "crying", 0.0, 2.0)]
    rest = builder.finish()
    assert [(e.track_id, e.label, round(e.start_s, 6), round(e.end_s, 6)) for e in rest] == \
        [(2, "happy", 0.0, 3.0), (1, "happy", 2.0, 4.0), (2, "angry", 3.0, 4.0)]  # by start
    assert [e.mean_confidence for e in rest] == pytest.approx([0.7, 0.9, 0.7])


def test_end_returns_the_open_episode_of_one_track():
    builder = EpisodeBuilder(CLASSES, 1.0, frame_interval_s=DT)
    feed(builder, "c" * 10, track_id=1)
    feed(builder, "h" * 10, track_id=2)
    assert spans(builder.end(1)) == [("crying", 0.0, 2.0)]
    assert builder.end(1) == [] and builder.end(42) == []
    assert builder.track_ids == [2]


def test_bad_episode_inputs_are_refused():
    with pytest.raises(ConfigError, match="min_episode_s"):
        EpisodeBuilder(CLASSES, -1.0)
    with pytest.raises(ConfigError, match="frame_interval_s"):
        EpisodeBuilder(CLASSES, 1.0, frame_interval_s=0.0)
    with pytest.raises(ConfigError, match="class names"):
        EpisodeBuilder([], 1.0)
    builder = EpisodeBuilder(CLASSES, 1.0)
    builder.update(1, 1.0, "happy", 0.9)
    with pytest.raises(ConfigError, match="Unknown label 'sad'"):
        builder.update(1, 1.2, "sad", 0.9)
    with pytest.raises(ConfigError, match="Confidence"):
        builder.update(1, 1.2, "happy", 1.5)
    with pytest.raises(ConfigError, match="before"):
        builder.update(1, 0.8, "happy", 0.9)
    builder.update(1, 1.2, None, float("nan"))  # no label: its confidence is not used


# --------------------------------------------------------------------------- episodes.csv


def test_episode_writer_writes_the_columns(tmp_path):
    out = tmp_path / "out" / "episodes.csv"
    episodes = [Episode("a.mp4", 1, "crying", 0.0, 12.4, 0.81234),
                Episode("a.mp4", 2, "happy", 3.2, 5.0, 0.7)]
    with EpisodeWriter(out) as writer:
        writer.write_all(episodes)
        assert not out.exists()  # atomic: appears when the block ends
    assert writer.count == 2
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == EPISODE_COLUMNS
    assert rows[1:] == [["a.mp4", "1", "crying", "0.000", "12.400", "12.400", "0.8123"],
                        ["a.mp4", "2", "happy", "3.200", "5.000", "1.800", "0.7000"]]
    assert sorted(p.name for p in out.parent.iterdir()) == ["episodes.csv"]


def test_episode_writer_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "episodes.csv"
    with pytest.raises(RuntimeError), EpisodeWriter(out) as writer:
        writer.write(Episode("a.mp4", 1, "crying", 0.0, 1.0, 0.5))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="not open"):
        writer.write(Episode("a.mp4", 1, "crying", 0.0, 1.0, 0.5))


# --------------------------------------------------------------------------- scores


def test_scores_perfect():
    truth = [Span("crying", 0, 10), Span("happy", 10, 20)]
    pred = [Episode("v", 1, "crying", 0, 10, 0.9), Episode("v", 1, "happy", 10, 20, 0.9)]
    s = episode_scores(pred, truth)
    assert s == {"n_predicted": 2, "n_truth": 2, "true_positives": 2, "precision": 1.0,
                 "recall": 1.0, "f1": 1.0, "mean_iou": 1.0, "time_precision": 1.0,
                 "time_recall": 1.0}


def test_scores_shifted_episodes_count_while_their_iou_is_enough():
    truth = [Span("crying", 0, 10)]
    s = episode_scores([Span("crying", 2, 12)], truth)  # IoU 8 / 12
    assert (s["true_positives"], s["mean_iou"]) == (1, pytest.approx(8 / 12))
    assert s["time_recall"] == pytest.approx(0.8) and s["time_precision"] == pytest.approx(0.8)
    s = episode_scores([Span("crying", 6, 16)], truth)  # IoU 4 / 16
    assert (s["true_positives"], s["precision"], s["recall"]) == (0, 0.0, 0.0)
    assert episode_scores([Span("crying", 6, 16)], truth, min_overlap=0.25)["recall"] == 1.0


def test_scores_wrong_label():
    s = episode_scores([Span("happy", 0, 10)], [Span("crying", 0, 10)])
    assert (s["true_positives"], s["f1"], s["time_recall"], s["time_precision"]) == (0, 0, 0, 0)


def test_scores_split_and_duplicate_episodes():
    truth = [Span("crying", 0, 10)]
    split = [Span("crying", 0, 4.5), Span("crying", 5.5, 10)]  # IoU 0.45 each
    s = episode_scores(split, truth)
    assert (s["true_positives"], s["precision"], s["recall"]) == (0, 0.0, 0.0)
    assert s["time_recall"] == pytest.approx(0.9) and s["time_precision"] == 1.0
    dup = [Span("crying", 0, 9), Span("crying", 1, 10)]  # both IoU 0.9: one-to-one
    s = episode_scores(dup, truth)
    assert (s["true_positives"], s["precision"], s["recall"]) == (1, 0.5, 1.0)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["time_precision"] == 1.0  # overlapping predictions counted once


def test_scores_merge_touching_truth_segments_of_one_label():
    truth = [Span("happy", 0, 3), Span("happy", 3, 6), Span("crying", 6, 9),
             Span("happy", 9, 12)]
    pred = [Span("happy", 0, 6), Span("crying", 6, 9), Span("happy", 9, 12)]
    s = episode_scores(pred, truth)
    assert (s["n_truth"], s["true_positives"], s["f1"]) == (3, 3, 1.0)


def test_scores_take_the_synthetic_videos_segments():
    from pathlib import Path

    from babyemo.video.synthetic import Segment

    truth = [Segment("happy", 0.0, 3.0, Path("a.jpg")),
             Segment("crying", 3.0, 6.0, Path("b.jpg"))]
    pred = [Episode("v.mp4", 1, "happy", 0.2, 3.2, 0.9),
            Episode("v.mp4", 1, "crying", 3.2, 6.0, 0.9)]
    s = episode_scores(pred, truth)
    assert (s["true_positives"], s["precision"], s["recall"]) == (2, 1.0, 1.0)
    assert s["time_recall"] == pytest.approx(5.6 / 6.0)


def test_scores_of_nothing_are_zero_and_bad_inputs_refused():
    s = episode_scores([], [])
    assert (s["precision"], s["recall"], s["f1"], s["time_recall"]) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match="min_overlap"):
        episode_scores([], [], min_overlap=0)
    with pytest.raises(ConfigError, match="end_s >= start_s"):
        episode_scores([Span("happy", 5, 1)], [])


# --------------------------------------------------------------------------- together


def test_two_faces_tracked_smoothed_and_scored():
    """Two faces side by side, one crying then happy, the other happy throughout, with
    noisy probabilities and a missed detection: each track's episodes match its truth."""
    rng = np.random.default_rng(0)
    tracker, smoother = IoUTracker(), TrackSmoother(1.0)
    builder = EpisodeBuilder(CLASSES, 1.0, path="two.mp4", frame_interval_s=DT)
    truth = {1: [Span("crying", 0, 8), Span("happy", 8, 16)], 2: [Span("happy", 0, 16)]}
    episodes: list[Episode] = []
    for i in range(80):
        t = round(i * DT, 6)
        faces = [(1, (100.0 + i, 100.0, 80.0, 80.0)), (2, (400.0 - i, 120.0, 80.0, 80.0))]
        if i == 30:
            faces = faces[1:]  # face 1 missed once
        ids = tracker.update(t, [b for _, b in faces])
        assert ids == [f for f, _ in faces]
        for tid, _ in faces:
            true = next(s.label for s in truth[tid] if s.start_s <= t < s.end_s)
            p = rng.dirichlet(np.ones(3)) * 0.6
            p[CLASSES.index(true)] += 0.4
            q = smoother.update(tid, t, p)
            k = int(q.argmax())
            episodes += builder.update(tid, t, CLASSES[k], float(q[k]))
    episodes += builder.finish(16.0)
    for tid, segs in truth.items():
        s = episode_scores([e for e in episodes if e.track_id == tid], segs)
        assert (s["precision"], s["recall"]) == (1.0, 1.0), (tid, episodes)
        assert s["time_recall"] > 0.9
