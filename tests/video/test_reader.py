"""babyemo.video.reader on small videos written in tmp_path (numbered frames)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from babyemo.errors import ConfigError, DataError, VideoError
from babyemo.video import reader as reader_module
from babyemo.video.reader import (
    VIDEO_SUFFIXES,
    VideoInfo,
    is_stream,
    is_video,
    open_video,
)
from tests.video.clips import (
    fake_camera,
    media_timescale,
    quadrant_frame,
    read_number,
    set_frame_durations,
    set_rotation,
    write_frames,
    write_numbered,
)


@pytest.fixture(scope="module")
def clip30(tmp_path_factory) -> Path:
    """90 numbered frames at 30 frames/s (3 s), MPEG-4 in .mp4."""
    return write_numbered(tmp_path_factory.mktemp("clips") / "n90.mp4", 90, 30.0)


@pytest.fixture(scope="module")
def clip30_avi(tmp_path_factory) -> Path:
    """The same 90 numbered frames in Motion JPEG .avi."""
    return write_numbered(tmp_path_factory.mktemp("clips") / "n90.avi", 90, 30.0)


def sampled(path: Path | str, **kwargs) -> tuple[list[tuple[int, float, int]], object]:
    """``[(index, time_s, number shown)]`` of ``frames(**kwargs)``, and the reader's error."""
    with open_video(path) as video:
        rows = [(f.index, f.time_s, read_number(f.image)) for f in video.frames(**kwargs)]
        return rows, video.error


def test_names():
    assert is_video("a/B.MP4") and is_video(Path("x.webm")) and is_video("clip.mkv")
    assert not is_video("photo.jpg") and not is_video("mp4")
    assert {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
            ".wmv"} == VIDEO_SUFFIXES
    assert is_stream(0) and is_stream(2) and not is_stream(-1) and not is_stream(True)
    assert is_stream("rtsp://cam.local/stream") and is_stream("HTTPS://host/live.m3u8")
    assert is_stream("http://host/a.mp4")
    assert not is_stream("video.mp4") and not is_stream(Path("rtsp:/x"))
    assert not is_stream("file:///tmp/a.mp4")


@pytest.mark.parametrize("which", ["clip30", "clip30_avi"])
def test_info(which, request):
    path = request.getfixturevalue(which)
    with open_video(path) as video:
        assert video.info == VideoInfo(source=str(path), fps=30.0, frame_count=90,
                                       duration_s=3.0, width=160, height=96, rotation=0,
                                       live=False)


@pytest.mark.parametrize("which", ["clip30", "clip30_avi"])
def test_fps_5_takes_every_6th_frame_at_k_over_5(which, request):
    rows, error = sampled(request.getfixturevalue(which), fps=5.0)
    assert error is None
    assert [index for index, _, _ in rows] == list(range(0, 90, 6))
    assert [number for _, _, number in rows] == list(range(0, 90, 6))  # the frames themselves
    assert [t for _, t, _ in rows] == pytest.approx([k / 5 for k in range(15)], abs=1e-3)


def test_fps_none_gives_every_frame(clip30):
    rows, error = sampled(clip30, fps=None)
    assert error is None
    assert [index for index, _, _ in rows] == list(range(90))
    assert [number for _, _, number in rows] == list(range(90))
    assert [t for _, t, _ in rows] == pytest.approx([i / 30 for i in range(90)], abs=1e-3)


def test_fps_not_dividing_the_frame_rate_takes_the_first_frame_at_or_after_each_target(clip30):
    rows, _ = sampled(clip30, fps=7.0)
    expected = [math.ceil(30 * k / 7 - 1e-9) for k in range(21) if 30 * k / 7 < 90]
    assert [index for index, _, _ in rows] == expected
    assert all(t >= k / 7 - 1e-3 for k, (_, t, _) in enumerate(rows))


def test_fps_above_the_frame_rate_gives_each_frame_once(clip30):
    rows, _ = sampled(clip30, fps=75.0)
    assert [number for _, _, number in rows] == list(range(90))


def test_duration_stops_in_video_time(clip30):
    rows, error = sampled(clip30, fps=None, duration_s=1.0)
    assert [index for index, _, _ in rows] == list(range(30))
    assert error is None  # stopping early on request is no error
    rows, _ = sampled(clip30, fps=5.0, duration_s=1.05)
    assert [index for index, _, _ in rows] == [0, 6, 12, 18, 24, 30]


def test_each_call_starts_again_and_frames_are_independent(clip30):
    with open_video(clip30) as video:
        first = list(video.frames(fps=2.0))
        again = list(video.frames(fps=2.0))
    assert [f.index for f in first] == [f.index for f in again] == [0, 15, 30, 45, 60, 75]
    assert [read_number(f.image) for f in first] == [0, 15, 30, 45, 60, 75]
    assert all(f.image.mode == "RGB" and f.image.size == (160, 96) for f in first)


def test_iterating_lazily_and_stopping_early_is_fine(clip30):
    with open_video(clip30) as video:
        frames = video.frames(fps=None)
        assert read_number(next(frames).image) == 0
        assert read_number(next(frames).image) == 1
        frames.close()
        assert video.error is None


def test_variable_frame_rate_follows_presentation_times(tmp_path):
    cfr = write_numbered(tmp_path / "cfr.mp4", 30, 30.0)
    tick = media_timescale(cfr) // 30  # one 30 frames/s frame in media ticks
    # 10 frames at 30 frames/s, then 20 frames at 10 frames/s: 2.33 s in all.
    vfr = set_frame_durations(cfr, tmp_path / "vfr.mp4", [(10, tick), (20, 3 * tick)])
    times = [i / 30 for i in range(11)] + [10 / 30 + j / 10 for j in range(1, 20)]
    rows, error = sampled(vfr, fps=None)
    assert error is None
    assert [number for _, _, number in rows] == list(range(30))
    assert [t for _, t, _ in rows] == pytest.approx(times, abs=2e-3)
    rows, _ = sampled(vfr, fps=5.0)  # targets 0, 0.2, 0.4, ...: first frame at or after each
    expected = []
    for k in range(12):
        first = next((i for i, t in enumerate(times) if t >= k / 5 - 1e-3), None)
        if first is not None and first not in expected:
            expected.append(first)
    assert [index for index, _, _ in rows] == expected
    assert expected[:4] == [0, 6, 11, 13]  # 0.0, 0.2, 0.433, 0.633 s
    with open_video(vfr) as video:
        assert video.info.frame_count == 30
        assert video.info.duration_s == pytest.approx(7 / 3, abs=0.01)


@pytest.mark.parametrize("degrees", [90, 180, 270])
@pytest.mark.parametrize("opencv_orients", [False, True])
def test_rotation_metadata_gives_upright_frames_once(tmp_path, monkeypatch, degrees,
                                                     opencv_orients):
    plain = write_frames(tmp_path / "plain.mp4", [quadrant_frame()] * 5, 10.0)
    turned = set_rotation(plain, tmp_path / f"rot{degrees}.mp4", degrees)
    with open_video(plain) as video:
        stored = next(iter(video.frames(fps=None))).image
        assert video.info.rotation == 0
    monkeypatch.setattr(reader_module, "_OPENCV_ORIENTS", opencv_orients)
    with open_video(turned) as video:
        info = video.info
        frames = list(video.frames(fps=None))
    transpose = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                 270: Image.Transpose.ROTATE_90}[degrees]  # PIL turns counter-clockwise
    expected = stored.transpose(transpose)
    assert info.rotation == degrees
    assert (info.width, info.height) == expected.size == ((64, 96) if degrees != 180
                                                          else (96, 64))
    assert len(frames) == 5
    assert all(f.image.size == expected.size for f in frames)
    assert np.array_equal(np.asarray(frames[0].image), np.asarray(expected))
    # Turned clockwise: the stored top-left (red) quadrant ends up where it should.
    width, height = expected.size
    corner = {90: (width - 1, 0), 180: (width - 1, height - 1), 270: (0, height - 1)}[degrees]
    r, g, b = frames[0].image.getpixel(corner)
    assert r > 200 and g < 60 and b < 60


def test_truncated_file_ends_the_iteration_with_an_error(clip30_avi, tmp_path):
    cut = tmp_path / "cut.avi"
    data = clip30_avi.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with open_video(cut) as video:
        assert video.info.frame_count == 90  # the header still says 90
        frames = list(video.frames(fps=None))
        error = video.error
    assert 10 < len(frames) < 90
    assert [read_number(f.image) for f in frames] == list(range(len(frames)))  # no substitute
    assert error is not None and error.code == "truncated"
    assert error.detail.startswith("stopped at ") and "of 3.0 s" in error.detail
    assert f"(frame {len(frames)} of 90)" in error.detail
    assert str(error) == f"truncated: {error.detail}"


def test_truncated_file_sampled_and_reread_sets_the_error_each_time(clip30_avi, tmp_path):
    cut = tmp_path / "cut.avi"
    data = clip30_avi.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with open_video(cut) as video:
        assert list(video.frames(fps=5.0, duration_s=0.5))  # stops before the cut: no error
        assert video.error is None
        assert list(video.frames(fps=5.0))
        assert video.error is not None and video.error.code == "truncated"


def test_mp4_cut_before_its_index_cannot_be_opened(clip30, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = clip30.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # OpenCV writes the index (moov) last
    with pytest.raises(VideoError) as err:
        open_video(cut)
    assert err.value.code == "corrupt" and err.value.hint
    assert str(cut) in str(err.value)


def test_a_frame_that_cannot_be_decoded_ends_the_iteration(clip30):
    class FailingRetrieve:
        """The capture, whose retrieve() fails from the 3rd sampled frame on."""

        def __init__(self, cap):
            self.cap, self.calls = cap, 0

        def retrieve(self):
            self.calls += 1
            return (False, None) if self.calls >= 2 else self.cap.retrieve()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    with open_video(clip30) as video:
        video._cap = FailingRetrieve(video._cap)  # frame 0 was read at open
        frames = list(video.frames(fps=5.0))
        assert [f.index for f in frames] == [0, 6]
        assert video.error is not None and video.error.code == "corrupt"
        assert video.error.detail == "frame 12 at 0.4 s cannot be decoded"


@pytest.mark.parametrize("content, code", [
    (b"", "empty_file"),
    (b"this is not a video\n" * 50, "corrupt"),
    (bytes(range(256)) * 40, "corrupt"),
])
def test_bad_files_raise_video_error(tmp_path, content, code):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as err:
        open_video(path)
    assert isinstance(err.value, DataError)
    assert err.value.code == code and err.value.hint
    assert str(err.value).startswith(f"{path}: ")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(VideoError) as err:
        open_video(tmp_path / "missing.mp4")
    assert err.value.code == "unreadable" and "not found" in str(err.value)
    with pytest.raises(VideoError) as err:
        open_video(tmp_path)
    assert err.value.code == "not_a_file"


def test_camera_that_is_absent_and_bad_index():
    with pytest.raises(VideoError) as err:
        open_video(99)
    assert err.value.code == "unreadable" and "camera:99" in str(err.value)
    with pytest.raises(ConfigError):
        open_video(-1)


def test_http_url_is_read_like_a_file_and_a_password_is_hidden(server, clip30):
    (server.root / "n90.mp4").write_bytes(clip30.read_bytes())
    port = server.url.rsplit(":", 1)[1]
    url = f"http://user:secret@127.0.0.1:{port}/n90.mp4"
    with open_video(url) as video:
        assert video.info.source == f"http://user:***@127.0.0.1:{port}/n90.mp4"
        assert video.info.live is False and video.info.frame_count == 90
        assert [read_number(f.image) for f in video.frames(fps=10.0)] == list(range(0, 90, 3))
        assert video.error is None


def test_bad_arguments_and_closed_reader(clip30):
    video = open_video(clip30)
    for kwargs in ({"fps": 0}, {"fps": -5}, {"fps": float("nan")}, {"fps": float("inf")},
                   {"duration_s": 0}, {"duration_s": -1.0}):
        with pytest.raises(ConfigError):
            video.frames(**kwargs)
    video.close()
    video.close()
    with pytest.raises(ConfigError, match="closed"):
        video.frames()


def test_odd_file_names(tmp_path, clip30, monkeypatch):
    """A colon (FFmpeg would see a protocol), spaces and brackets; a relative path."""
    odd = tmp_path / "take:2 (copy) %d.mp4"
    odd.write_bytes(clip30.read_bytes())
    monkeypatch.chdir(tmp_path)
    for source in (odd, odd.name):
        with open_video(source) as video:
            assert video.info.source == str(source) and video.info.frame_count == 90
            assert [f.index for f in video.frames(fps=1.0)] == [0, 30, 60]


def test_live_camera_is_timed_by_the_wall_clock(tmp_path, monkeypatch):
    """A fake camera 0: a 15-frame clip delivered at 30 frames/s with no length."""
    fake_camera(monkeypatch, write_numbered(tmp_path / "cam.mp4", 15, 30.0))
    with open_video(0) as video:
        assert video.info.source == "camera:0" and video.info.live
        assert video.info.frame_count is None and video.info.duration_s is None
        frames = list(video.frames(fps=5.0, duration_s=0.3))
        assert video.error is None  # stopped by duration_s
        assert 1 <= len(frames) <= 3 and frames[0].index == 0
        assert all(f.time_s < 0.3 for f in frames)
        assert all(f.time_s >= k / 5 - 1e-3 for k, f in enumerate(frames))
        rest = list(video.frames(fps=None))  # a live source goes on from where it is
        assert rest and rest[0].index > frames[-1].index
        assert [read_number(f.image) for f in rest] == [f.index for f in rest]
        assert video.error is not None and video.error.code == "unreadable"
        assert "stopped sending frames" in video.error.detail


def test_the_reader_keeps_no_frame(clip30):
    """Memory flat in video length: a yielded frame is freed once the caller drops it."""
    import gc
    import weakref

    with open_video(clip30) as video:
        frames = video.frames(fps=None)
        refs = []
        for _ in range(20):
            frame = next(frames)
            refs.append(weakref.ref(frame.image))
            del frame
        gc.collect()
        assert all(ref() is None for ref in refs)


def test_truncated_webm_whose_frame_count_is_estimated(tmp_path):
    clip = write_numbered(tmp_path / "n.webm", 60, 30.0)
    cut = tmp_path / "cut.webm"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 4])
    rows, error = sampled(clip, fps=None)
    assert [number for _, _, number in rows] == list(range(60)) and error is None
    rows, error = sampled(cut, fps=None)
    assert 10 < len(rows) < 60
    assert error is not None and error.code == "truncated" and "of 2.0 s" in error.detail
