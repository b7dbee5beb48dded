"""Emotion over time in a video (:mod:`babyemo.video.predict`): sampled frames, rows,
tracks, smoothing, episodes, bad videos, and photos with videos into one CSV.

The model is a tiny untrained checkpoint without face detection (one whole-frame track);
where the labels must be known, its probabilities are replaced by those of the frame's
colour (:mod:`tests.video.fakes`), and where the faces must be known, by a detector of
white squares.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from babyemo.errors import ConfigError
from babyemo.prediction import Predictor
from babyemo.runtime import Runtime
from babyemo.video.inputs import find_media
from babyemo.video.predict import (
    NO_FACE_EVERY_S,
    FrameRow,
    VideoOptions,
    VideoRun,
    predict_media_to_files,
    predict_video,
    timeline_paths,
)
from tests.conftest import make_checkpoint, make_image
from tests.video.clips import SIZE, write_numbered
from tests.video.fakes import (
    CLASSES,
    HIGH,
    LOW,
    NEVER,
    SQUARES,
    patch_colour_model,
    write_colour_video,
    write_squares_video,
)


@pytest.fixture
def model_path(tiny_arch, tmp_path) -> Path:
    return make_checkpoint(tmp_path / "m.pt", tiny_arch)


@pytest.fixture
def predictor(model_path) -> Predictor:
    """The tiny model, no face detection: each frame is classified whole."""
    return Predictor(model_path, runtime=Runtime(device="cpu"))


@pytest.fixture
def clip(tmp_path) -> Path:
    """2 s of numbered frames at 30 frames/s (60 frames, 160x96)."""
    return write_numbered(tmp_path / "clip.mp4", 60, fps=30.0)


def _run(source, predictor, **options) -> tuple[list[FrameRow], VideoRun]:
    run = VideoRun(str(source))
    rows = list(predict_video(source, predictor, VideoOptions(**options), run=run))
    return rows, run


def _spans(episodes) -> list[tuple[int, str, float, float]]:
    return [(e.track_id, e.label, round(e.start_s, 3), round(e.end_s, 3)) for e in episodes]


# -- sampling and rows ---------------------------------------------------------------


def test_one_row_per_sampled_frame_at_5_fps(predictor, clip):
    rows, run = _run(clip, predictor, fps=5.0)
    assert [r.frame for r in rows] == list(range(0, 60, 6))
    assert [r.time_s for r in rows] == pytest.approx([k / 5 for k in range(10)], abs=2e-3)
    assert {r.track_id for r in rows} == {1}  # no face detection: one whole-frame track
    for row in rows:
        p = row.prediction
        assert p.error is None and p.path == str(clip)
        assert p.label in CLASSES and p.confidence == max(p.probs)
        assert len(p.probs) == 3 and math.isclose(sum(p.probs), 1.0, abs_tol=1e-6)
        assert p.box == (0.0, 0.0, float(SIZE[0]), float(SIZE[1]))
        assert p.face is None and p.face_index is None and p.det_score is None
        assert row.raw_label in CLASSES
    assert (run.frames, run.faces, run.no_face_frames, run.error) == (10, 10, 0, None)
    assert run.video_s == pytest.approx(1.8, abs=2e-3)
    assert run.info.frame_count == 60 and run.info.fps == 30.0
    assert run.seconds > 0 and run.realtime_factor == pytest.approx(run.video_s / run.seconds)


def test_every_frame_with_fps_none(predictor, clip):
    rows, run = _run(clip, predictor, fps=None)
    assert [r.frame for r in rows] == list(range(60))
    assert rows[-1].time_s == pytest.approx(59 / 30, abs=2e-3)
    assert run.frames == run.faces == 60


def test_duration_stops_in_video_time(predictor, clip):
    rows, run = _run(clip, predictor, fps=5.0, duration_s=1.0)
    assert [r.frame for r in rows] == [0, 6, 12, 18, 24]
    assert run.error is None  # stopping early on purpose is no error


def test_frame_row_columns():
    from babyemo.rows import Prediction

    row = FrameRow(Prediction("v.mp4", "happy", 0.7, (0.1, 0.2, 0.7)), 12, 0.4, 3, "crying")
    assert row.columns() == {"frame": 12, "time_s": 0.4, "track_id": 3,
                             "raw_label": "crying"}
    error = FrameRow(Prediction("v.mp4", "", float("nan"), (), "truncated"), None, 1.25)
    assert error.columns() == {"frame": None, "time_s": 1.25, "track_id": None,
                               "raw_label": None}
    assert FrameRow(Prediction("v.mp4", "", float("nan"), (), "corrupt")).columns()[
        "time_s"] is None
    assert FrameRow(Prediction("v", "a", 1.0, (1.0,)), 1, 1 / 3).columns()["time_s"] == 0.333


def test_rows_are_made_lazily_and_closing_early_is_fine(predictor, tmp_path):
    long = write_numbered(tmp_path / "long.avi", 300, fps=30.0)  # 10 s
    run = VideoRun(str(long))
    rows = predict_video(long, predictor, VideoOptions(fps=5.0), run=run)
    first = list(itertools.islice(rows, 3))
    assert [r.frame for r in first] == [0, 6, 12] and run.frames == 3
    rows.close()  # releases the video; the open episode is closed
    assert run.frames == 3 and run.error is None
    assert all(e.end_s <= 0.6 + 1e-6 for e in run.episodes)


def test_on_frame_is_called_after_each_analysed_frame(predictor, clip):
    seen = []
    rows = predict_video(clip, predictor, VideoOptions(fps=2.0),
                         on_frame=lambda run, t: seen.append((run.frames, round(t, 2))))
    assert len(list(rows)) == 4
    assert seen == [(1, 0.0), (2, 0.5), (3, 1.0), (4, 1.5)]


def test_timeline_recorder_holds_4_bytes_per_class_and_time(predictor, clip):
    run = VideoRun(str(clip))
    rows = list(predict_video(clip, predictor, VideoOptions(fps=5.0), run=run,
                              record_timeline=True))
    series = run.recorder.series()
    assert list(series) == [1] and series[1].shape == (10, 4)
    assert series[1][:, 0] == pytest.approx([r.time_s for r in rows], abs=1e-5)
    assert series[1][:, 1:] == pytest.approx(np.array([r.prediction.probs for r in rows]),
                                             abs=1e-6)
    assert run.recorder.nbytes == 64 * 4 * 4  # the first block of 64 rows, float32


@pytest.mark.parametrize("options", [
    {"fps": 0}, {"fps": -5}, {"fps": float("nan")}, {"fps": float("inf")},
    {"duration_s": 0}, {"duration_s": -1}, {"duration_s": float("inf")},
    {"duration_s": float("nan")},
    {"smooth_s": -1}, {"smooth_s": float("inf")}, {"min_episode_s": float("nan")},
    {"max_gap_s": 0}, {"max_gap_s": float("inf")}, {"iou_threshold": 0},
    {"iou_threshold": 1.5},
])
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError) as err:
        VideoOptions(**options)
    assert err.value.hint and next(iter(options)) in err.value.message


# -- smoothing and episodes (labels known from the frames' colours) -------------------


def test_smoothing_absorbs_a_one_frame_blip_and_raw_label_keeps_it(predictor, tmp_path,
                                                                   monkeypatch):
    """2 s green, 0.2 s red (one sampled frame at 5 fps), 1.8 s green."""
    patch_colour_model(monkeypatch)
    video = write_colour_video(tmp_path / "blip.avi",
                               [("green", 2.0), ("red", 0.2), ("green", 1.8)])
    rows, run = _run(video, predictor, fps=5.0, smooth_s=1.0, min_episode_s=1.0)
    assert len(rows) == 20
    blip = rows[10]
    assert blip.time_s == pytest.approx(2.0, abs=2e-3) and blip.raw_label == "angry"
    assert blip.prediction.label == "happy"  # smoothed over the last second (5 frames)
    assert blip.prediction.probs == pytest.approx(((4 * LOW + HIGH) / 5, LOW,
                                                   (4 * HIGH + LOW) / 5))
    assert rows[0].prediction.probs == pytest.approx((LOW, LOW, HIGH))  # nothing before it
    assert all(r.prediction.label == "happy" for r in rows)
    assert [r.raw_label for r in rows].count("angry") == 1
    assert _spans(run.episodes) == [(1, "happy", 0.0, 4.0)]
    assert run.episodes[0].mean_confidence == pytest.approx(
        np.mean([r.prediction.probs[2] for r in rows]))

    rows, run = _run(video, predictor, fps=5.0, smooth_s=0.0, min_episode_s=1.0)
    assert all(r.prediction.label == r.raw_label for r in rows)  # no smoothing
    assert rows[10].prediction.label == "angry"
    assert rows[10].prediction.probs == pytest.approx((HIGH, LOW, LOW))
    assert _spans(run.episodes) == [(1, "happy", 0.0, 4.0)]  # absorbed: shorter than 1 s

    rows, run = _run(video, predictor, fps=5.0, smooth_s=0.0, min_episode_s=0.0)
    assert _spans(run.episodes) == [(1, "happy", 0.0, 2.0), (1, "angry", 2.0, 2.2),
                                    (1, "happy", 2.2, 4.0)]


def test_a_causal_window_moves_a_change_of_label_by_about_half_its_length(
        predictor, tmp_path, monkeypatch):
    """2 s green then 2 s red: the episodes end where the labels change, 0.4 s later with
    a 1 s window (the mean of 5 frames turns at the 3rd red one)."""
    patch_colour_model(monkeypatch)
    video = write_colour_video(tmp_path / "change.avi", [("green", 2.0), ("red", 2.0)])
    rows, run = _run(video, predictor, fps=5.0, smooth_s=0.0)
    assert _spans(run.episodes) == [(1, "happy", 0.0, 2.0), (1, "angry", 2.0, 4.0)]
    rows, run = _run(video, predictor, fps=5.0, smooth_s=1.0)
    assert _spans(run.episodes) == [(1, "happy", 0.0, 2.4), (1, "angry", 2.4, 4.0)]
    changed = [r for r in rows if r.prediction.label != r.raw_label]
    assert [round(r.time_s, 1) for r in changed] == [2.0, 2.2]  # raw red, still happy


def test_min_confidence_labels_uncertain_and_makes_no_episode(model_path, tmp_path,
                                                              monkeypatch):
    patch_colour_model(monkeypatch)
    video = write_colour_video(tmp_path / "g.avi", [("green", 2.0)])
    predictor = Predictor(model_path, runtime=Runtime(device="cpu"), min_confidence=0.9)
    rows, run = _run(video, predictor, fps=5.0)
    assert {r.prediction.label for r in rows} == {"uncertain"}
    assert {r.prediction.top_class for r in rows} == {"happy"}
    assert {r.raw_label for r in rows} == {"happy"}
    assert run.episodes == [] and run.current == {}


# -- faces and tracks ----------------------------------------------------------------


def test_two_faces_keep_their_tracks_and_a_face_back_after_the_gap_gets_a_new_id(
        model_path, tmp_path):
    """Two squares 4 s: A moves down on the left, absent from 1.0 s to 2.6 s; B moves up
    on the right, always there. The detector lists them top to bottom, so their order
    in a frame flips halfway; the tracks follow the squares, not the order."""
    def a(t):
        return None if 1.0 <= t < 2.6 else (10 + round(5 * t), 5 + round(15 * t))

    def b(t):
        return (120 - round(5 * t), 70 - round(15 * t))

    video = write_squares_video(tmp_path / "two.avi", 4.0, [a, b])
    predictor = Predictor(model_path, runtime=Runtime(device="cpu"), faces=SQUARES)
    rows, run = _run(video, predictor, fps=5.0, max_gap_s=1.0)
    assert all(r.prediction.error is None for r in rows)
    side = {r.track_id: set() for r in rows}
    for r in rows:
        side[r.track_id].add("left" if r.prediction.box[0] < 80 else "right")
        assert r.prediction.face == "detected" and r.prediction.det_score == pytest.approx(0.9)
    assert side == {1: {"left"}, 2: {"right"}, 3: {"left"}}  # ids never reused
    assert max(r.time_s for r in rows if r.track_id == 1) < 1.0
    assert min(r.time_s for r in rows if r.track_id == 3) == pytest.approx(2.6, abs=2e-3)
    assert len([r for r in rows if r.track_id == 2]) == 20  # B: every sampled frame
    late = [r for r in rows if r.time_s > 3.0]
    assert {r.prediction.face_index for r in late if r.track_id == 2} == {0}  # B on top now
    assert {r.prediction.face_index for r in late if r.track_id == 3} == {1}
    assert {e.track_id for e in run.episodes} == {1, 2, 3}
    assert run.faces == len(rows) and run.no_face_frames == 0


def test_a_phone_video_with_rotation_metadata_gives_boxes_in_upright_pixels(model_path,
                                                                           tmp_path):
    """A 160x96 MP4 stored landscape with a 90-degree display rotation (as a phone writes
    portrait video): a square at x 10-30, y 5-25 of the stored frame is at x 71-91,
    y 10-30 of the upright 96x160 frame."""
    from tests.video.clips import set_rotation

    stored = write_squares_video(tmp_path / "stored.mp4", 1.0, [lambda t: (10, 5)])
    turned = set_rotation(stored, tmp_path / "portrait.mp4", 90)
    predictor = Predictor(model_path, runtime=Runtime(device="cpu"), faces=SQUARES)
    rows, run = _run(turned, predictor, fps=5.0)
    assert (run.info.width, run.info.height, run.info.rotation) == (96, 160, 90)
    assert len(rows) == 5
    for row in rows:
        x, y, w, h = row.prediction.box
        assert (x, y, w, h) == pytest.approx((71, 10, 20, 20), abs=2)
    whole, _ = _run(turned, Predictor(model_path, runtime=Runtime(device="cpu")), fps=5.0)
    assert {r.prediction.box for r in whole} == {(0.0, 0.0, 96.0, 160.0)}


def test_no_face_rows_at_most_one_per_second(model_path, tmp_path):
    video = write_numbered(tmp_path / "empty.avi", 90, fps=30.0)  # 3 s, no face
    predictor = Predictor(model_path, runtime=Runtime(device="cpu"), faces=NEVER,
                          no_face_fallback="whole_image")  # a frame is never classified whole
    rows, run = _run(video, predictor, fps=None)
    assert [(r.frame, r.prediction.error) for r in rows] == [(0, "no_face"), (30, "no_face"),
                                                            (60, "no_face")]
    assert NO_FACE_EVERY_S == 1.0
    assert all(r.track_id is None and r.prediction.label == "" for r in rows)
    assert rows[0].prediction.error_detail == f"no face found (face detector {NEVER})"
    assert (run.frames, run.no_face_frames, run.faces, run.episodes) == (90, 90, 0, [])
    assert run.error is None  # a video without a face is no error


# -- bad videos ----------------------------------------------------------------------


@pytest.mark.parametrize("name, content, code", [
    ("garbage.mp4", b"this is not a video\n" * 50, "corrupt"),
    ("empty.avi", b"", "empty_file"),
])
def test_a_video_that_cannot_be_opened_is_one_error_row(predictor, tmp_path, name, content,
                                                        code):
    bad = tmp_path / name
    bad.write_bytes(content)
    rows, run = _run(bad, predictor)
    assert len(rows) == 1
    row = rows[0]
    assert row.prediction.error == code and row.prediction.error_detail
    assert (row.frame, row.time_s, row.track_id) == (None, None, None)
    assert run.error == code and run.info is None and run.frames == 0


def test_a_missing_video_is_an_unreadable_row(predictor, tmp_path):
    rows, run = _run(tmp_path / "gone.mp4", predictor)
    assert [r.prediction.error for r in rows] == ["unreadable"] and run.error == "unreadable"


def test_a_truncated_video_gives_its_rows_then_a_truncated_row(predictor, tmp_path):
    whole = write_numbered(tmp_path / "whole.avi", 90, fps=30.0)
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    rows, run = _run(cut, predictor, fps=5.0)
    frames, last = rows[:-1], rows[-1]
    assert 2 <= len(frames) < 15 and all(r.prediction.error is None for r in frames)
    assert [r.frame for r in frames] == list(range(0, 6 * len(frames), 6))
    assert last.prediction.error == "truncated" and last.frame is None
    assert last.prediction.error_detail.startswith("stopped at ")
    assert last.time_s == pytest.approx(run.video_s) == pytest.approx(frames[-1].time_s)
    assert run.error == "truncated" and run.episodes  # what it saw is kept


# -- photos and videos into files ----------------------------------------------------


def test_timeline_paths():
    assert timeline_paths("t.png", ["a.mp4"]) == [Path("t.png")]
    assert timeline_paths("out/t.png", ["x/a.mp4", "rtsp://h/live", "camera:0"]) == [
        Path("out/t-1-a.png"), Path("out/t-2-live.png"), Path("out/t-3-camera:0.png")]


def test_photos_then_videos_into_one_csv_json_episodes_and_plots(predictor, tmp_path, clip,
                                                                 monkeypatch):
    patch_colour_model(monkeypatch)
    folder = tmp_path / "in"
    make_image(folder / "a.png", color=(0, 200, 0))
    make_image(folder / "b.png", color=(0, 0, 200))
    video = write_colour_video(folder / "v.avi", [("red", 1.2), ("blue", 1.2)])
    media = find_media([folder, clip])
    assert media.sources == [str(video), str(clip)]
    result = predict_media_to_files(
        media.found, media.sources, predictor, VideoOptions(fps=5.0, smooth_s=0.0),
        csv_out=tmp_path / "o.csv", json_out=tmp_path / "o.json",
        episodes_out=tmp_path / "ep.csv", plot_out=tmp_path / "t.png")
    rows = list(csv.DictReader((tmp_path / "o.csv").open(encoding="utf-8")))
    assert [Path(r["path"]).name for r in rows[:2]] == ["a.png", "b.png"]  # photos first
    assert all(r["frame"] == r["time_s"] == r["track_id"] == r["raw_label"] == ""
               for r in rows[:2])
    assert [r["label"] for r in rows[:2]] == ["happy", "crying"]
    video_rows = [r for r in rows if r["path"] == str(video)]
    assert [r["frame"] for r in video_rows] == [str(6 * k) for k in range(12)]
    assert [r["label"] for r in video_rows] == ["angry"] * 6 + ["crying"] * 6
    assert len(rows) == 2 + 12 + 10 == result.n_rows
    records = json.loads((tmp_path / "o.json").read_text(encoding="utf-8"))
    assert len(records) == len(rows)
    first = next(r for r in records if r["path"] == str(video))
    assert (first["frame"], first["time_s"], first["track_id"]) == (0, 0.0, 1)
    assert records[0]["frame"] is None and records[0]["time_s"] is None
    episodes = list(csv.DictReader((tmp_path / "ep.csv").open(encoding="utf-8")))
    assert [(Path(e["path"]).name, e["track_id"], e["label"], e["start_s"], e["end_s"],
             e["duration_s"]) for e in episodes if e["path"] == str(video)] == [
        ("v.avi", "1", "angry", "0.000", "1.200", "1.200"),
        ("v.avi", "1", "crying", "1.200", "2.400", "1.200")]
    assert result.n_episodes == len(episodes) and result.episodes_out == tmp_path / "ep.csv"
    assert result.plots == [tmp_path / "t-1-v.png", tmp_path / "t-2-clip.png"]
    for plot in result.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
    assert result.photos.n_files == 2 and [v.source for v in result.videos] == media.sources
