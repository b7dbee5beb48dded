"""One vocabulary of per-file errors (issue 12, item 7).

Every :class:`~babyemo.data.loading.file_errors.FileErrorCode` is documented in
``docs/data-formats.md`` and nothing else is; every code is produced by a real bad file
(built by :mod:`tests.bad_files` or here), through ``load_image`` and through
``predict_to_files``, whose CSV and JSON carry the code in ``error`` and the reason in
``error_detail``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from babyemo.data.loading import images
from babyemo.data.loading.file_errors import FILE_ERROR_CODES, FileErrorCode
from babyemo.data.loading.images import load_image
from babyemo.errors import ImageError
from babyemo.faces import register_detector
from babyemo.runtime import Runtime
from tests.bad_files import BAD, build, deny_read, noise_image, quadrant_image
from tests.conftest import REPO, make_checkpoint, make_image

CASE_CODES = {
    "zero_byte": "empty_file",
    "truncated_jpeg": "truncated",
    "random_bytes_jpg": "not_an_image",
    "text_named_png": "not_an_image",
    "heic_without_pillow_heif": "unsupported_format",
    "bomb_png_over_limit": "too_large",
    "bomb_png_over_2x_limit": "too_large",
    "symlink_loop": "link_loop",
}
"""Code of every bad case of :mod:`tests.bad_files` that ``load_image`` refuses."""


def _bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _bmp_bad_depth(path: Path) -> Path:
    data = bytearray(_bytes(quadrant_image(), "BMP"))
    data[28:30] = (7).to_bytes(2, "little")  # 7 bits per pixel: no decoder for it
    return _write(path, bytes(data))


def _png_zeroed_data(path: Path) -> Path:
    data = bytearray(_bytes(noise_image((96, 96)), "PNG"))
    middle = len(data) // 2
    data[middle:middle + 64] = b"\0" * 64  # damaged compressed pixel data
    return _write(path, bytes(data))


def _cut(fmt: str):
    def make(path: Path) -> Path:
        data = _bytes(noise_image((96, 96)), fmt)
        return _write(path, data[: len(data) // 2])
    return make


MORE_FILES = {
    # file name: (builder, code, a substring of the reason)
    "bad_depth.bmp": (_bmp_bad_depth, "corrupt", "damaged BMP image data"),
    "zeroed.png": (_png_zeroed_data, "corrupt", "damaged PNG image data"),
    "cut.webp": (_cut("WEBP"), "truncated", "truncated WEBP file"),
    "photo.jxl": (lambda p: _write(p, b"\xff\x0a" + b"\0" * 100), "unsupported_format",
                  "JPEG XL"),
    "page.jpg": (lambda p: _write(p, b"<!DOCTYPE html>\n<html><body>404</body></html>"),
                 "not_an_image", "HTML web page"),
    "notes.jpg": (lambda p: _write(p, "bébé notes\n".encode() * 30), "not_an_image",
                  "holds text"),
}
"""Bad files beyond :mod:`tests.bad_files`, each with its code and reason."""


def documented_codes() -> dict[str, str]:
    """Code -> example of the error-code table of docs/data-formats.md."""
    text = (REPO / "docs" / "data-formats.md").read_text(encoding="utf-8")
    section = text.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| [^|]+ \| `([^`]*)` \|$", section, flags=re.M)
    return dict(rows)


def test_every_code_is_documented_and_only_those():
    documented = documented_codes()
    assert set(documented) == FILE_ERROR_CODES
    assert len(documented) == len(FileErrorCode)  # no code listed twice
    assert all(code == code.lower() and " " not in code for code in FILE_ERROR_CODES)
    assert str(FileErrorCode.NO_FACE) == "no_face" and FileErrorCode.TRUNCATED == "truncated"


def test_every_bad_case_has_a_code():
    assert set(CASE_CODES) == set(BAD) - {"newline_name"}  # a valid image with an odd name


@pytest.fixture
def no_pillow_heif(monkeypatch):
    monkeypatch.setattr(images, "_heif_state", {})
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails


@pytest.mark.parametrize("case", sorted(CASE_CODES))
def test_load_image_gives_the_code_of_each_bad_case(tmp_path, case, no_pillow_heif):
    path = build(case, tmp_path)
    with pytest.raises(ImageError) as err:
        load_image(path, 3, draft_size=24)
    assert err.value.code == CASE_CODES[case], err.value.message


@pytest.mark.parametrize("name", sorted(MORE_FILES))
def test_load_image_gives_the_code_of_more_bad_files(tmp_path, name):
    builder, code, reason = MORE_FILES[name]
    with pytest.raises(ImageError) as err:
        load_image(builder(tmp_path / name), 3)
    assert err.value.code == code and reason in err.value.message, err.value.message


def test_a_real_jpeg_cut_short_is_truncated_in_words(tmp_path, baby_photos_dir):
    """A real photo cut to 5,000 bytes: ``truncated``, never Pillow's "N bytes not
    processed" (the message a user saw before)."""
    photo = sorted(baby_photos_dir.glob("*.jpg"))[0]
    cut = _write(tmp_path / "cut.jpg", photo.read_bytes()[:5000])
    for kwargs in ({}, {"draft_size": 24}):  # face detection decodes in full; else a draft
        with pytest.raises(ImageError) as err:
            load_image(cut, 3, **kwargs)
        message = err.value.message
        assert err.value.code == "truncated" and "not processed" not in message
        assert message == (f"{cut}: truncated JPEG file: it ends before its image data does "
                           "(only 5,000 bytes; an incomplete download or copy?).")


def test_avif_without_support_is_unsupported(tmp_path, monkeypatch):
    path = _write(tmp_path / "a.avif", b"\0\0\0\x1cftypavif" + b"\0" * 200)
    monkeypatch.setattr(images, "_pillow_reads", lambda feature: False)
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert err.value.code == "unsupported_format" and "AVIF" in err.value.message


def test_unreadable_file_and_missing_file_are_unreadable(tmp_path, monkeypatch):
    gone = tmp_path / "gone.jpg"
    with pytest.raises(ImageError) as err:
        load_image(gone)
    assert err.value.code == "unreadable" and "file not found" in err.value.message
    locked = make_image(tmp_path / "locked.png")
    deny_read(locked, monkeypatch)
    with pytest.raises(ImageError) as err:
        load_image(locked)
    assert err.value.code == "unreadable" and err.value.message.endswith("permission denied.")


NO_FACE = "test_never_a_face"


class _NeverAFace:
    name = NO_FACE

    def detect(self, image):
        return []


register_detector(NO_FACE, description="test: finds no face")(_NeverAFace)


def _bad_folder(root: Path) -> dict[str, str]:
    """A folder holding one file or entry per code except ``no_face`` and the two good
    photos; returns ``{name: code}`` of the bad ones."""
    expected = {}
    for case, code in CASE_CODES.items():
        if case.startswith("bomb_png_over_2x"):
            continue
        expected[build(case, root).name] = code
    for name, (builder, code, _) in MORE_FILES.items():
        builder(root / name)
        expected[name] = code
    (root / "broken.jpg").symlink_to("nowhere.jpg")
    expected["broken.jpg"] = "broken_link"
    os.mkfifo(root / "pipe.jpg")
    expected["pipe.jpg"] = "not_a_file"
    make_image(root / "good.png")
    make_image(root / "good2.jpg", color=(20, 200, 90))
    (root / "readme.txt").write_text("photos of the lab\n")  # skipped: not named like an image
    return expected


def test_predict_writes_code_and_detail_for_every_code(tmp_path, tiny_arch, monkeypatch,
                                                      no_pillow_heif):
    from babyemo.prediction import Predictor, predict_to_files

    root = tmp_path / "photos"
    root.mkdir()
    expected = _bad_folder(root)
    locked = root / "locked.png"
    make_image(locked)
    deny_read(locked, monkeypatch)
    expected["locked.png"] = "unreadable"
    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    predictor = Predictor(ckpt, runtime=Runtime(precision="fp32", workers=0, readers=1))
    out, jout = tmp_path / "o.csv", tmp_path / "o.json"
    summary = predict_to_files([root], predictor, csv_out=out, json_out=jout)
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert list(next(iter(rows.values())))[-2:] == ["error", "error_detail"]
    assert set(rows) == set(expected) | {"good.png", "good2.jpg"}  # readme.txt skipped
    for name, code in expected.items():
        assert rows[name]["error"] == code, (name, rows[name])
        assert rows[name]["error_detail"] and rows[name]["label"] == ""
        assert not rows[name]["error_detail"].endswith(".")
    for good in ("good.png", "good2.jpg"):
        assert rows[good]["error"] == rows[good]["error_detail"] == ""
    assert summary.n_errors == len(expected) and summary.n_no_face == 0
    assert summary.n_non_image_skipped == 1 and summary.n_failed == len(expected)
    assert sum(summary.error_counts.values()) == len(expected)
    data = {Path(d["path"]).name: d for d in json.loads(jout.read_text(encoding="utf-8"))}
    assert {n: d["error"] for n, d in data.items() if d["error"]} == expected
    assert data["good.png"]["error_detail"] is None
    assert data["pipe.jpg"]["error_detail"] == rows["pipe.jpg"]["error_detail"]

    produced = set(expected.values())
    faces = Predictor(ckpt, faces=NO_FACE, no_face_fallback="error",
                      runtime=Runtime(precision="fp32", workers=0))
    summary = predict_to_files([root / "good.png"], faces, csv_out=tmp_path / "f.csv")
    row = next(csv.DictReader((tmp_path / "f.csv").open()))
    assert row["error"] == "no_face" and row["error_detail"] == (
        f"no face found (face detector {NO_FACE})")
    assert summary.n_no_face == 1 and summary.n_errors == 0 and summary.n_failed == 1
    produced.add(row["error"])
    unlisted = tmp_path / "unlisted"
    unlisted.mkdir()
    monkeypatch.setattr(os, "scandir", _refuse(unlisted, os.scandir))
    summary = predict_to_files([unlisted], predictor, csv_out=tmp_path / "u.csv")
    row = next(csv.DictReader((tmp_path / "u.csv").open()))
    assert (row["error"], row["error_detail"]) == (
        "unreadable", "cannot list folder (permission denied)")
    produced.add(row["error"])
    assert produced == FILE_ERROR_CODES  # every code comes from a real bad file


def _refuse(folder: Path, real):
    def scandir(path="."):
        if os.fspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", str(folder))
        return real(path)
    return scandir
