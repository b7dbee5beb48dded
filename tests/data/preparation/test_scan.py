"""scan_folder / probe_image: the layout is read and every image is read once."""

from __future__ import annotations

import hashlib

from PIL import Image

from babyemo.data.inspection import hashing
from babyemo.data.preparation.scan import probe_image, scan_folder
from tests.data.helpers import make_distinct_folder, save_pattern


def test_parallel_scan_matches_serial(tmp_path):
    root = make_distinct_folder(tmp_path / "d", per_class=5)
    (root / "happy" / "broken.jpg").write_bytes(b"garbage")
    serial = scan_folder(root, workers=1)
    parallel = scan_folder(root, workers=2)
    assert parallel.images == serial.images and len(serial.images) == 15
    assert parallel.skipped == serial.skipped == {"unreadable": 1}
    assert parallel.skipped_files == serial.skipped_files


def test_probe_reports_true_size_and_near_blank(tmp_path):
    big = save_pattern(tmp_path / "big.jpg", 3, size=(1000, 600))
    sha, w, h, fmt, mode, dh, std = probe_image(big)
    assert (w, h, fmt, mode) == (1000, 600, "JPEG", "RGB") and std > 10
    assert sha == hashlib.sha256(big.read_bytes()).hexdigest()
    flat = tmp_path / "flat.png"
    Image.new("L", (40, 40), 128).save(flat)
    assert probe_image(flat)[-1] < hashing.NEAR_BLANK_STD


def test_links_loops_pipes_and_undecodable_names_are_skipped_with_reasons(tmp_path):
    import os

    root = make_distinct_folder(tmp_path / "d", per_class=3)
    (root / "happy" / "loop.jpg").symlink_to("loop.jpg")
    (root / "loop_class").symlink_to("loop_class")          # a loop where a class would be
    (root / "angry" / "again").symlink_to(root / "angry", target_is_directory=True)
    os.mkfifo(root / "crying" / "pipe.png")
    bad_name = os.fsdecode(b"b\xe9b\xe9.png")
    save_pattern(root / "crying" / bad_name, 91)
    result = scan_folder(root)
    reasons = {f["path"]: (f["category"], f["reason"]) for f in result.skipped_files}
    assert reasons["happy/loop.jpg"][1].startswith("symbolic link loop")
    assert reasons["loop_class"][1].startswith("symbolic link loop")
    assert reasons["crying/pipe.png"] == ("not_a_file",
                                          "not a regular file (a pipe, socket or device)")
    assert reasons["crying/b\\xe9b\\xe9.png"] == ("unsupported_name",
                                                 "file or folder name is not valid UTF-8")
    assert len(result.images) == 9  # the folder link back to angry/ adds nothing twice
    assert sum(result.skipped.values()) == 4


def test_empty_class_folders_are_warned_about(tmp_path):
    root = make_distinct_folder(tmp_path / "d", per_class=3)
    (root / "sleepy").mkdir()
    (root / "bored").mkdir()
    (root / "bored" / "x.jpg").write_bytes(b"")
    result = scan_folder(root)
    assert result.class_names == ["angry", "crying", "happy"]
    assert result.empty_class_folders == ["bored", "sleepy"]
    assert [w.split("'")[1] for w in result.warnings()] == ["bored", "sleepy"]
    assert result.skipped == {"unreadable": 1}


def test_a_split_folder_that_cannot_be_listed_is_a_clear_error(tmp_path, monkeypatch):
    import pathlib

    import pytest

    from babyemo.errors import DataError

    root = tmp_path / "d"
    make_distinct_folder(root / "train", per_class=2)
    make_distinct_folder(root / "test", per_class=2, seed0=50)
    real_iterdir = pathlib.Path.iterdir

    def iterdir(self):
        if self.name == "test":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    with pytest.raises(DataError, match=r"Cannot list .*test \(permission denied\)"):
        scan_folder(root)
