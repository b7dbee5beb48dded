"""babyemo.video.synthetic: videos made from labelled photos read back with the reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from babyemo.errors import ConfigError, ImageError
from babyemo.video.reader import open_video
from babyemo.video.synthetic import Segment, label_at, make_photo_video

COLOURS = {"angry": (255, 0, 0), "crying": (0, 0, 255), "happy": (0, 255, 0)}


@pytest.fixture
def photos(tmp_path) -> list[tuple[Path, str]]:
    """Three solid-colour 'photos', one per label."""
    out = []
    for label, colour in COLOURS.items():
        path = tmp_path / "photos" / f"{label}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (80, 80), colour).save(path)
        out.append((path, label))
    return out


def photo_pixels(image: Image.Image, colour: tuple[int, int, int]) -> np.ndarray:
    """``(N, 2)`` ``(x, y)`` of the pixels within 60 of ``colour`` in every channel."""
    rgb = np.asarray(image, dtype=np.int16)
    mask = (np.abs(rgb - np.array(colour)) < 60).all(axis=2)
    ys, xs = np.nonzero(mask)
    return np.stack([xs, ys], axis=1)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_round_trip_frames_and_ground_truth(tmp_path, photos, suffix):
    out = tmp_path / "out" / f"video{suffix}"
    segments = make_photo_video(photos, out, seconds_per_photo=1.0, fps=10, size=(160, 96))
    assert segments == [Segment(label, j * 1.0, (j + 1) * 1.0, path)
                        for j, (path, label) in enumerate(photos)]
    assert [s.duration_s for s in segments] == [1.0, 1.0, 1.0]
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary left
    with open_video(out) as video:
        info = video.info
        frames = list(video.frames(fps=None))
    assert (info.frame_count, info.duration_s, info.fps) == (30, 3.0, 10.0)
    assert (info.width, info.height) == (160, 96)
    assert segments[0].start_s == 0.0 and segments[-1].end_s == info.duration_s
    assert all(a.end_s == b.start_s for a, b in zip(segments, segments[1:], strict=False))
    assert len(frames) == 30
    for frame in frames:  # each frame shows the photo of its segment, and no other
        label = label_at(segments, frame.time_s)
        assert len(photo_pixels(frame.image, COLOURS[label])) > 1000
        assert all(len(photo_pixels(frame.image, COLOURS[other])) == 0
                   for other in COLOURS if other != label)


def test_pan_moves_and_scales_the_photo_smoothly(tmp_path, photos):
    out = tmp_path / "pan.mp4"
    segments = make_photo_video(photos[:1], out, seconds_per_photo=2.0, fps=15,
                                size=(256, 144), seed=3)
    assert segments[0].end_s == 2.0
    with open_video(out) as video:
        boxes = []
        for frame in video.frames(fps=None):
            xy = photo_pixels(frame.image, COLOURS["angry"])
            boxes.append((*xy.min(axis=0), *xy.max(axis=0)))
    boxes = np.array(boxes, dtype=float)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    heights = boxes[:, 3] - boxes[:, 1] + 1
    travel = np.linalg.norm(centres[-1] - centres[0])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert travel > 10 or abs(heights[-1] - heights[0]) > 10  # it moves or grows
    assert steps.max() < max(travel, 1) / 5  # no jump: many small steps
    assert (heights >= 0.45 * 144 - 2).all() and (heights <= 0.75 * 144 + 2).all()


def test_without_pan_the_photo_stays_centred(tmp_path, photos):
    out = tmp_path / "still.mp4"
    make_photo_video(photos, out, seconds_per_photo=0.5, fps=10, size=(160, 96), pan=False)
    with open_video(out) as video:
        for frame in video.frames(fps=None):
            xy = photo_pixels(frame.image, COLOURS[["angry", "crying", "happy"][frame.index // 5]])
            centre = (xy.min(axis=0) + xy.max(axis=0)) / 2
            assert centre == pytest.approx((80, 48), abs=1.5)
            assert xy[:, 1].max() - xy[:, 1].min() + 1 == pytest.approx(0.6 * 96, abs=2)


def test_same_seed_same_video(tmp_path, photos):
    a = make_photo_video(photos, tmp_path / "a.avi", seconds_per_photo=0.3, fps=10,
                         size=(64, 48), seed=7)
    b = make_photo_video(photos, tmp_path / "b.avi", seconds_per_photo=0.3, fps=10,
                         size=(64, 48), seed=7)
    assert a == b
    assert (tmp_path / "a.avi").read_bytes() == (tmp_path / "b.avi").read_bytes()


def test_replaces_an_existing_file(tmp_path, photos):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"old")
    make_photo_video(photos[:1], out, seconds_per_photo=0.2, fps=10, size=(64, 48))
    with open_video(out) as video:
        assert video.info.frame_count == 2


def test_label_at():
    segments = [Segment("happy", 0.0, 1.5, Path("a")), Segment("angry", 1.5, 3.0, Path("b"))]
    assert [label_at(segments, t) for t in (0.0, 1.49, 1.5, 2.9, 3.0, -0.1)] == [
        "happy", "happy", "angry", "angry", None, None]


def test_bad_arguments(tmp_path, photos):
    for kwargs in ({"seconds_per_photo": 0}, {"fps": 0}, {"fps": float("nan")},
                   {"size": (8, 8)}):
        with pytest.raises(ConfigError):
            make_photo_video(photos, tmp_path / "x.mp4", **kwargs)
    with pytest.raises(ConfigError, match="'.mkv'"):
        make_photo_video(photos, tmp_path / "x.mkv")
    with pytest.raises(ConfigError):
        make_photo_video([], tmp_path / "x.mp4")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageError):
        make_photo_video([(bad, "happy")], tmp_path / "x.mp4", size=(64, 48))
    assert not (tmp_path / "x.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_real_infant_photos_round_trip(tmp_path, infant_dir):
    """4 real infant photos x 2 s at 10 frames/s, read back at 2 frames/s."""
    photos = [(sorted((infant_dir / label).iterdir())[i], label)
              for i, label in enumerate(["happy", "crying", "angry", "happy"])]
    out = tmp_path / "infants.mp4"
    segments = make_photo_video(photos, out, seconds_per_photo=2.0, fps=10, size=(320, 240))
    assert [s.label for s in segments] == ["happy", "crying", "angry", "happy"]
    assert [(s.start_s, s.end_s) for s in segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0),
                                                        (6.0, 8.0)]
    with open_video(out) as video:
        assert (video.info.frame_count, video.info.duration_s) == (80, 8.0)
        frames = list(video.frames(fps=2.0))
        assert video.error is None
    assert [f.index for f in frames] == list(range(0, 80, 5))
    assert [f.time_s for f in frames] == pytest.approx([k / 2 for k in range(16)], abs=1e-3)
    assert [label_at(segments, f.time_s) for f in frames] == [
        label for label in ("happy", "crying", "angry", "happy") for _ in range(4)]
    # The photo is in the frame: far from the plain background, with a photo's detail.
    for frame in frames:
        gray = np.asarray(frame.image.convert("L"), dtype=np.float32)
        assert gray.std() > 20
