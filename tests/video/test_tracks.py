"""babyemo.video.tracks: face boxes linked across sampled frames into tracks."""

from __future__ import annotations

import numpy as np
import pytest

from babyemo.errors import ConfigError
from babyemo.video.tracks import IoUTracker, TrackEnd, box_iou

DT = 0.2  # 5 sampled frames per second


def box(x: float, y: float = 100.0, size: float = 100.0) -> tuple[float, float, float, float]:
    return (x, y, size, size)


def test_box_iou_known_values():
    a = np.array([box(0, 0), box(0, 0, 0)])
    b = np.array([box(0, 0), box(50, 0), box(200, 0)])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 0.0])  # no area: 0, not NaN


def test_ids_count_up_in_input_order_and_follow_boxes_whatever_their_order():
    tracker = IoUTracker()
    assert tracker.update(0.0, [box(0), box(300), box(600)]) == [1, 2, 3]
    assert tracker.update(DT, [box(605), box(5), box(302)]) == [3, 1, 2]
    assert tracker.update(2 * DT, []) == []
    assert tracker.active_ids == [1, 2, 3]


def test_two_faces_moving_in_parallel_keep_their_ids():
    tracker = IoUTracker()
    for i in range(50):  # side by side, 10 px apart, both panning 30 px per frame
        x = 30.0 * i
        ids = tracker.update(i * DT, [box(x + 110, 100), box(x, 100)])
        assert ids == [1, 2]
    assert tracker.pop_ended() == []


def test_a_short_gap_keeps_the_id_a_long_one_ends_the_track():
    tracker = IoUTracker(max_gap_s=1.0)
    assert tracker.update(0.0, [box(0)]) == [1]
    for t in (0.2, 0.4, 0.6, 0.8, 1.0):  # missing for 1.0 s: still track 1
        assert tracker.update(t, []) == []
    assert tracker.update(1.0, [box(3)]) == [1]
    assert tracker.pop_ended() == []
    for t in (1.2, 1.4, 1.6, 1.8, 2.0, 2.2):  # missing for 1.2 s > max_gap_s: ended
        tracker.update(t, [])
    assert tracker.pop_ended() == [TrackEnd(1, 1.0)]
    assert tracker.pop_ended() == []  # handed over once
    assert tracker.update(2.4, [box(3)]) == [2]  # same place, new id


def test_max_gap_zero_ends_a_track_at_the_first_frame_it_misses():
    tracker = IoUTracker(max_gap_s=0.0)
    tracker.update(0.0, [box(0)])
    assert tracker.update(0.0, [box(0)]) == [1]  # same time: no gap
    tracker.update(DT, [])
    assert tracker.pop_ended() == [TrackEnd(1, 0.0)]
    assert tracker.update(2 * DT, [box(0)]) == [2]


def test_ids_are_never_reused():
    tracker = IoUTracker(max_gap_s=0.5)
    seen: list[int] = []
    for i in range(20):  # a face appears far away every 0.6 s while the old one is gone
        if i % 3 == 0:
            seen += tracker.update(i * DT, [box(1000.0 * i)])
        else:
            tracker.update(i * DT, [])
    assert seen == list(range(1, 8))
    ended = [e.track_id for e in tracker.pop_ended()]
    assert ended == list(range(1, 7))
    assert [e.track_id for e in tracker.close()] == [7]
    assert tracker.active_ids == []
    assert tracker.update(10.0, [box(0)]) == [8]


def crossing(tracker: IoUTracker) -> list[list[int]]:
    """Face A moves right, face B left, 30 px per frame, 10 px apart vertically; the
    boxes are given in a fixed order (A, B)."""
    out = []
    for i in range(20):
        out.append(tracker.update(i * DT, [box(100 + 30.0 * i, 100), box(670 - 30.0 * i, 110)]))
    return out


def test_crossing_faces_keep_their_ids():
    assert all(ids == [1, 2] for ids in crossing(IoUTracker()))


def test_crossing_faces_swap_ids_without_motion_prediction():
    # why predict_motion is on: matched on their last boxes only, the two faces trade
    # ids as they pass each other
    ids = crossing(IoUTracker(predict_motion=False))
    assert ids[0] == [1, 2]
    assert [2, 1] in ids


def pan(tracker: IoUTracker, speed: float, missing: frozenset[int] = frozenset()) -> set[int]:
    """The ids given to one 100 px face panning ``speed`` px per sampled frame."""
    ids: set[int] = set()
    for i in range(25):
        ids.update(tracker.update(i * DT, [] if i in missing else [box(speed * i)]))
    return ids


def test_a_panned_face_stays_one_track_across_a_missed_detection():
    missing = frozenset({8, 15})
    assert pan(IoUTracker(), 45.0, missing) == {1}
    # its last box alone is 90 px away after a missed frame (IoU 0.05): the track breaks
    assert len(pan(IoUTracker(predict_motion=False), 45.0, missing)) > 1


def test_centre_distance_follows_pans_too_fast_for_iou():
    assert len(pan(IoUTracker(), 70.0)) == 25  # IoU 0.18 with its last box: new each frame
    assert pan(IoUTracker(max_centre_distance=1.0), 70.0) == {1}


def test_centre_distance_refuses_a_box_of_another_size():
    tracker = IoUTracker(max_centre_distance=1.0)
    tracker.update(0.0, [box(0)])
    assert tracker.update(DT, [box(70, size=40)]) == [2]  # 2.5x smaller: not the same face


def test_a_zoomed_face_stays_one_track():
    tracker = IoUTracker()
    ids = set()
    for i in range(15):  # grows 15 % per frame about a fixed centre
        s = 60 * 1.15 ** i
        ids.update(tracker.update(i * DT, [(400 - s / 2, 300 - s / 2, s, s)]))
    assert ids == {1}


@pytest.mark.parametrize("kwargs", [{"iou_threshold": 0}, {"iou_threshold": 1.5},
                                    {"max_gap_s": -1}, {"max_gap_s": float("inf")},
                                    {"max_centre_distance": -0.5}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ConfigError):
        IoUTracker(**kwargs)


def test_bad_times_and_boxes_are_refused():
    tracker = IoUTracker()
    tracker.update(1.0, [box(0)])
    with pytest.raises(ConfigError, match="before the previous"):
        tracker.update(0.5, [])
    with pytest.raises(ConfigError, match="finite"):
        tracker.update(float("nan"), [])
    for bad in ([(0, 0, 10)], [(0, 0, -1, 10)], [(0, float("inf"), 1, 1)], ["abcd"]):
        with pytest.raises(ConfigError, match="Face boxes"):
            tracker.update(5.0, bad)
    assert tracker.update(1.2, [box(2)]) == [1]  # a refused update changed nothing
