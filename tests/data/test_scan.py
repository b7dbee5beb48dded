"""scan_folder / probe_image: the layout is read and every image is read once."""

from __future__ import annotations

import hashlib

from PIL import Image

from babyemo.data import hashing
from babyemo.data.scan import probe_image, scan_folder
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
