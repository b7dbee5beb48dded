"""``babyemo predict``'s inputs split into photos and video sources
(:func:`babyemo.video.inputs.find_media`): names decide, nothing is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from babyemo.errors import DataError
from babyemo.video.inputs import find_media
from tests.conftest import make_image


def _touch(path: Path, data: bytes = b"not opened") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a.png, clip.mp4, notes.txt, sub/b.jpg, sub/visit.MOV, .hidden.mp4."""
    root = tmp_path / "in"
    make_image(root / "a.png")
    _touch(root / "clip.mp4")
    _touch(root / "notes.txt")
    make_image(root / "sub" / "b.jpg")
    _touch(root / "sub" / "visit.MOV")
    _touch(root / ".hidden.mp4")
    return root


def test_a_video_in_a_folder_is_a_source_not_a_photo_nor_a_skipped_non_image(folder):
    media = find_media([folder])
    assert media.has_video
    assert media.sources == [str(folder / "clip.mp4"), str(folder / "sub" / "visit.MOV")]
    assert media.found.files == [folder / "a.png", folder / "sub" / "b.jpg"]
    assert media.found.entries == media.found.files
    assert media.found.non_images == [folder / "notes.txt"]  # still counted as skipped
    assert media.found.hidden == 1  # .hidden.mp4: hidden, never a source
    assert media.found.folders == [folder]


def test_all_files_still_takes_videos_out_of_the_photos(folder):
    media = find_media([folder], all_files=True)
    assert media.sources == [str(folder / "clip.mp4"), str(folder / "sub" / "visit.MOV")]
    assert media.found.files == [folder / "a.png", folder / "notes.txt", folder / "sub" / "b.jpg"]
    assert media.found.non_images == []


def test_no_recursion_leaves_sub_folder_videos_alone(folder):
    media = find_media([folder], recursive=False)
    assert media.sources == [str(folder / "clip.mp4")]
    assert media.found.files == [folder / "a.png"]


def test_named_video_files_and_photos(tmp_path):
    video = _touch(tmp_path / "v.mkv")
    photo = make_image(tmp_path / "p.jpg")
    media = find_media([photo, video])
    assert media.sources == [str(video)]
    assert media.found.files == [photo] and media.found.entries == [photo]


def test_sources_keep_the_input_order_of_files_folders_and_urls(tmp_path):
    """Rows, episodes and numbered timelines follow the sources' order: the order given
    on the command line (a folder's videos where the folder was named), camera last."""
    first = _touch(tmp_path / "folder" / "b.mp4")
    second = _touch(tmp_path / "a.avi")
    url = "rtsp://camera.local/live"
    media = find_media([tmp_path / "folder", url, second], camera=0)
    assert media.sources == [str(first), url, str(second), 0]
    media = find_media([second, tmp_path / "folder"])
    assert media.sources == [str(second), str(first)]


def test_a_video_named_and_inside_a_named_folder_is_kept_where_it_was_found(tmp_path):
    video = _touch(tmp_path / "folder" / "v.mp4")
    media = find_media([tmp_path / "folder", video])
    assert media.sources == [str(video), str(video)]  # as photos: each time it is given


def test_stream_urls_and_camera_alone_need_no_file(tmp_path):
    media = find_media(["http://example.org/cam.mjpg", "RTSP://h/stream"])
    assert media.sources == ["http://example.org/cam.mjpg", "RTSP://h/stream"]
    assert media.found.files == [] and media.found.entries == []
    media = find_media([], camera=2)
    assert media.sources == [2] and media.has_video
    assert find_media([], camera=0).sources == [0]  # camera 0 is a camera, not "none"


def test_photos_only_is_as_before(tmp_path):
    photo = make_image(tmp_path / "p.png")
    media = find_media([tmp_path])
    assert not media.has_video and media.sources == []
    assert media.found.files == [photo]


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: [tmp / "missing.mp4"], "No such file or folder"),
    (lambda tmp: [], "(no input)"),
    (lambda tmp: [_touch(tmp / "d" / "readme.txt").parent], "1 non-image file"),
])
def test_nothing_to_predict_is_a_data_error(tmp_path, make, fragment):
    with pytest.raises(DataError) as err:
        find_media(make(tmp_path))
    assert fragment in err.value.message and err.value.hint


def test_a_missing_file_beside_a_url_is_still_an_error(tmp_path):
    with pytest.raises(DataError, match="No such file or folder"):
        find_media(["rtsp://h/s", tmp_path / "gone.mp4"])
