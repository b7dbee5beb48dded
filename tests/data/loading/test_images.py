"""babyemo.data.loading.images: every odd image decodes upright to 8-bit RGB/L, every bad one is an
ImageError naming the file and the reason (issue #6, bad input)."""

from __future__ import annotations

import logging
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from babyemo.data.loading import images
from babyemo.data.loading.images import MAX_PIXELS, load_image, sniff_format
from babyemo.errors import ImageError
from tests.bad_files import (
    BAD,
    CASES,
    QUADRANTS,
    READABLE,
    bomb_png,
    build,
    deny_read,
    exif_jpeg,
    heic_stub,
)


def _quadrant_colours(img: Image.Image) -> list[tuple[int, ...]]:
    """Mean colour of the centre of each quadrant (TL, TR, BL, BR)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float64)
    h, w = arr.shape[:2]
    out = []
    for y in (h // 4, 3 * h // 4):
        for x in (w // 4, 3 * w // 4):
            patch = arr[max(0, y - h // 8): y + h // 8 + 1, max(0, x - w // 8): x + w // 8 + 1]
            out.append(tuple(int(v) for v in patch.reshape(-1, 3).mean(0).round()))
    return out


def _close(a, b, tol=24) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("draft", [None, 24])
def test_exif_orientations_give_the_upright_image(tmp_path, orientation, draft):
    path = exif_jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    stored = Image.open(path)
    if orientation >= 5:  # stored rotated by 90 degrees: width and height swapped
        assert stored.size == (48, 64)
    img = load_image(path, 3, draft_size=draft)
    assert img.mode == "RGB"
    assert img.size[0] > img.size[1], "landscape once upright"
    got = _quadrant_colours(img)
    assert all(_close(g, q) for g, q in zip(got, QUADRANTS, strict=True)), (orientation, got)
    gray = load_image(path, 1, draft_size=draft)
    assert gray.mode == "L" and gray.size == img.size


@pytest.mark.parametrize("case", READABLE)
def test_every_readable_case_decodes_to_8bit(tmp_path, case):
    path = build(case, tmp_path)
    for channels, mode in ((3, "RGB"), (1, "L")):
        img = load_image(path, channels, draft_size=24)
        assert img.mode == mode and min(img.size) >= 1
    assert sniff_format(path) in {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}


@pytest.mark.parametrize("case", BAD)
def test_every_bad_case_is_one_image_error_naming_the_file(tmp_path, case):
    path = build(case, tmp_path)
    expected = CASES[case][2]
    if case == "newline_name":  # a valid image: only the scan refuses its name
        assert load_image(path).mode == "RGB"
        return
    with pytest.raises(ImageError) as err:
        load_image(path, 3, draft_size=24)
    message = err.value.message
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message.replace(str(path), "")


@pytest.mark.parametrize("case, colours", [
    ("cmyk_jpeg", QUADRANTS),
    ("png_16bit", None),       # gray levels of the pattern, top 8 bits kept
    ("la_png", None),
    ("one_bit_png", None),
    ("gif_animated", QUADRANTS),  # first frame, not the later solid frames
    ("bmp", QUADRANTS), ("tiff", QUADRANTS), ("webp_named_jpg", QUADRANTS),
])
def test_modes_keep_the_picture(tmp_path, case, colours):
    img = load_image(build(case, tmp_path), 3)
    got = _quadrant_colours(img)
    if colours is not None:
        assert all(_close(g, q, 40) for g, q in zip(got, colours, strict=True)), got
    else:  # grayscale: the four quadrants stay distinguishable, not a blank image
        assert len({g[0] // 16 for g in got}) >= 2, got


def test_16bit_png_keeps_its_levels(tmp_path):
    arr = np.full((8, 8), 0x8000, np.uint16)
    arr[:4] = 0xFF00
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    got = np.asarray(load_image(path, 1))
    assert got[0, 0] == 255 and got[7, 0] == 128


@pytest.mark.parametrize("mode, values, expected", [
    ("I", (30000, 60000), (117, 234)),         # 16-bit data in a 32-bit image: top 8 bits
    ("I", (10, 200), (10, 200)),               # already 8-bit values: kept
    ("I", (-1000, 1000), (0, 255)),            # any other range: stretched
    ("F", (0.25, 1.0), (64, 255)),             # 0-1 floats
    ("F", (10.0, 200.0), (10, 200)),
])
def test_32bit_and_float_images_are_scaled_not_clipped(tmp_path, mode, values, expected):
    arr = np.zeros((8, 8), np.int32 if mode == "I" else np.float32)
    arr[:4], arr[4:] = values
    path = tmp_path / "x.tif"
    Image.fromarray(arr, mode).save(path)
    got = np.asarray(load_image(path, 1))
    assert abs(int(got[0, 0]) - expected[0]) <= 1 and abs(int(got[7, 0]) - expected[1]) <= 1


@pytest.mark.parametrize("case", ["palette_png_transparency", "rgba_png"])
def test_transparency_is_composited_on_white(tmp_path, case):
    img = Image.new("RGBA", (8, 8), (200, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 200, 255))
    path = tmp_path / "t.png"
    (img.convert("P") if case.startswith("palette") else img).save(
        path, **({"transparency": img.convert("P").getpixel((4, 4))}
                 if case.startswith("palette") else {}))
    got = np.asarray(load_image(path, 3))
    assert tuple(got[4, 4]) == (255, 255, 255)


def test_decompression_bombs_are_refused_from_the_header(tmp_path, monkeypatch):
    bomb = bomb_png(tmp_path / "bomb.png", 10_000, 10_000)  # 100 Mpx in ~12 KB
    assert bomb.stat().st_size < 100_000
    start = time.perf_counter()
    with pytest.raises(ImageError, match=r"image too large \(100,000,000 pixels") as err:
        load_image(bomb)
    assert time.perf_counter() - start < 1.0, "refused before decoding"
    assert "decompression-bomb" in err.value.hint
    # Pillow's own guard switched off by the user: babyemo's limit still holds.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageError, match="image too large"):
        load_image(bomb)
    just_under = bomb_png(tmp_path / "ok.png", 9_000, 9_000)
    assert 9_000 * 9_000 < MAX_PIXELS
    assert load_image(just_under, 1, draft_size=24).size == (9_000, 9_000)


def test_huge_jpeg_is_decoded_at_a_reduced_scale(tmp_path):
    path = build("huge_jpeg_6000x4000", tmp_path)
    img = load_image(path, 3, draft_size=48)
    assert 48 <= min(img.size) < 4000  # JPEG draft: not the 24-Mpx full decode
    assert _close(_quadrant_colours(img)[0], QUADRANTS[0], 40)


def test_truncated_jpeg_is_refused_not_grey_filled(tmp_path):
    path = build("truncated_jpeg", tmp_path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageError, match=r"truncated JPEG file: it ends before its image data "
                       r"does \(only 1,500 bytes; an incomplete download or copy\?\)\.$") as err:
        load_image(path)
    assert err.value.code == "truncated" and "not processed" not in err.value.message


def test_heic_without_pillow_heif_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_heif_state", {})
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails
    path = heic_stub(tmp_path / "IMG_0001.HEIC")
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert "pillow-heif" in err.value.message and "pip install pillow-heif" in err.value.message
    renamed = heic_stub(tmp_path / "IMG_0002.jpg")  # sniffed from the bytes, not the name
    with pytest.raises(ImageError, match="pillow-heif"):
        load_image(renamed)


class _FakeHeif(ImageFile.ImageFile):
    """Stands in for pillow-heif's plugin: the 64 bytes after the ``ftyp`` box of
    :func:`heic_stub` are read as an 8x8 grayscale image (all black)."""

    format = "HEIF"

    def _open(self):
        self._mode, self._size = "L", (8, 8)
        self.tile = [ImageFile._Tile("raw", (0, 0, 8, 8), 24, ("L", 0, 1))]


def test_heic_with_pillow_heif_is_registered_and_read(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_heif_state", {})
    monkeypatch.setattr(Image, "ID", list(Image.ID))
    monkeypatch.setattr(Image, "OPEN", dict(Image.OPEN))
    calls = []

    def register_heif_opener():
        calls.append(1)
        Image.register_open("HEIF", _FakeHeif, lambda head: images.is_heif(head[:16]))

    monkeypatch.setitem(sys.modules, "pillow_heif",
                        types.SimpleNamespace(register_heif_opener=register_heif_opener))
    path = heic_stub(tmp_path / "IMG_0001.heic")
    img = load_image(path)
    assert img.size == (8, 8) and img.mode == "RGB" and tuple(np.asarray(img)[0, 0]) == (0, 0, 0)
    load_image(path)
    assert calls == [1], "registered once"


def test_unreadable_file_is_permission_denied(tmp_path, monkeypatch):
    path = build("png_named_jpg", tmp_path)
    deny_read(path, monkeypatch)
    with pytest.raises(ImageError, match=r": permission denied\.$"):
        load_image(path)


def test_file_gone_and_folder_given(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "gone.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_corrupt_exif_keeps_the_stored_pixels(tmp_path, monkeypatch, caplog):
    path = exif_jpeg(tmp_path / "o1.jpg", 1)

    def broken(_img, **_kw):
        raise SyntaxError("bad EXIF IFD")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    with caplog.at_level(logging.WARNING, logger="babyemo.data.loading.images"):
        img = load_image(path)
    assert img.size == (64, 48) and "EXIF orientation" in caplog.text


def test_any_decoder_exception_becomes_an_image_error(tmp_path, monkeypatch):
    path = build("png_named_jpg", tmp_path)

    def explode(self, *a, **k):
        raise IndexError("decoder bug")

    monkeypatch.setattr(ImageFile.ImageFile, "load", explode)
    with pytest.raises(ImageError, match=r"damaged PNG image data: the decoder failed "
                       r"\(decoder bug\)\.$") as err:
        load_image(path)
    assert err.value.code == "corrupt"


def test_a_broken_pillow_heif_does_not_break_other_images(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_heif_state", {})

    def register_heif_opener():
        raise OSError("libheif.so.1: cannot open shared object file")

    monkeypatch.setitem(sys.modules, "pillow_heif",
                        types.SimpleNamespace(register_heif_opener=register_heif_opener))
    assert load_image(build("png_named_jpg", tmp_path)).mode == "RGB"
    with pytest.raises(ImageError, match="pillow-heif is installed but cannot be used"):
        load_image(heic_stub(tmp_path / "a.heic"))
