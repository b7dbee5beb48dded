"""Pixel bombs with tiny files (issue 13): images under the pixel limit whose shape makes a
later resize explode (a 103-byte 200000x1 PNG asks the evaluation resize for gigabytes).

One guard, :func:`babyemo.data.loading.images.check_geometry`, refuses them from the header in
every decode, so they are ``too_large`` error rows / skipped files in predict (with and
without face detection), prepare and evaluate, and never reach a resize: the tests spy on
the evaluation transform and on the face detector, so a bomb that got through fails an
assertion instead of allocating gigabytes.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from babyemo.data.loading.images import MAX_ASPECT_RATIO, MAX_PIXELS, check_geometry, load_image
from babyemo.errors import ImageError
from babyemo.faces import Face, register_detector
from babyemo.runtime import Runtime
from tests.bad_files import bomb_png
from tests.conftest import make_checkpoint, make_image

BOMBS = {
    "wide_strip.png": (200_000, 1),  # the 200000x1 PNG: 103 bytes here
    "tall_strip.png": (1, 5_000_000),  # the 1x80,000,000 PNG's class, 10 KB
    "just_over.png": (21 * 40, 40),  # 21:1
    "tall_just_over.png": (40, 21 * 40 + 1),
}
"""File name -> (width, height) of images the guard refuses."""

ACCEPTED = [(20 * 40, 40), (40, 20 * 40), (640, 480), (1, 1), (20, 1)]
"""Shapes at or inside the 20:1 limit, decoded as before."""


def _bombs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {name: bomb_png(folder / name, w, h) for name, (w, h) in BOMBS.items()}
    jpeg = folder / "strip.jpg"  # a JPEG goes through the draft path
    Image.new("RGB", (4000, 150), (90, 60, 30)).save(jpeg, "JPEG")
    out["strip.jpg"] = jpeg
    return out


def _aspect_ok(size: tuple[int, int]) -> bool:
    w, h = size
    return max(w, h) <= MAX_ASPECT_RATIO * min(w, h)


@pytest.fixture
def guarded_resize(monkeypatch):
    """Spy on the evaluation transform: fail (without resizing) on an elongated image."""
    from babyemo import transforms

    seen: list[tuple[int, int]] = []
    real = transforms.EvalTransform.__call__

    def call(self, image):
        size = image.size if isinstance(image, Image.Image) else (image.shape[-1],
                                                                  image.shape[-2])
        seen.append(size)
        assert _aspect_ok(size), f"an elongated {size} image reached the resize"
        return real(self, image)

    monkeypatch.setattr(transforms.EvalTransform, "__call__", call)
    return seen


SPY = "test_bomb_spy"


class _SpyDetector:
    """A face in the middle of every image; fails on an elongated one (never resized)."""

    name = SPY
    sizes: list[tuple[int, int]] = []

    def detect(self, image):
        type(self).sizes.append(image.size)
        assert _aspect_ok(image.size), f"an elongated {image.size} image reached the detector"
        w, h = image.size
        return [Face(box=(w * 0.25, h * 0.25, w * 0.5, h * 0.5), score=0.9)]


register_detector(SPY, description="test: spy that refuses elongated images")(_SpyDetector)


@pytest.mark.parametrize("name", [*BOMBS, "strip.jpg"])
def test_elongated_images_are_refused_from_the_header(tmp_path, monkeypatch, name):
    path = _bombs(tmp_path)[name]
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: pytest.fail("decoded an image the header refuses"))
    start = time.perf_counter()
    for kwargs in ({}, {"channels": 1, "draft_size": 64}, {"data": path.read_bytes()}):
        with pytest.raises(ImageError, match=r"image too elongated \(\d+x\d+ pixels, "
                           r"[\d,.]+:1, over the 20:1 aspect-ratio limit\)") as err:
            load_image(path, **kwargs)
        assert err.value.code == "too_large"
        assert err.value.message.startswith(f"{path}: ") and "pixel-bomb" in err.value.hint
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("size", ACCEPTED)
def test_shapes_within_the_limit_still_decode(tmp_path, size):
    path = bomb_png(tmp_path / "ok.png", *size)
    assert load_image(path, 3).size == size


def test_check_geometry_is_the_one_guard():
    check_geometry("x.png", 20, 1)
    check_geometry("x.png", 9_000, 9_000)
    with pytest.raises(ImageError, match=r"x.png: image too elongated \(200000x1 pixels, "
                       r"200,000:1,") as err:
        check_geometry("x.png", 200_000, 1)
    assert err.value.code == "too_large"
    with pytest.raises(ImageError, match=r"41x2 pixels, 20\.5:1"):
        check_geometry("x.png", 41, 2)
    with pytest.raises(ImageError, match="over the 89,478,485-pixel limit") as err:
        check_geometry("x.png", MAX_PIXELS, 2)
    assert err.value.code == "too_large" and "decompression-bomb" in err.value.hint
    with pytest.raises(ImageError, match=r"0x5 pixels \(no pixels\)") as err:
        check_geometry("x.png", 0, 5)
    assert err.value.code == "corrupt"


def _photos(root: Path) -> tuple[dict[str, Path], list[str]]:
    bombs = _bombs(root)
    good = []
    for i, colour in enumerate([(200, 100, 50), (20, 200, 90), (60, 60, 220)]):
        make_image(root / f"photo{i}.jpg", color=colour, size=(64, 48))
        good.append(f"photo{i}.jpg")
    return bombs, good


@pytest.mark.parametrize("faces", [None, SPY])
def test_predict_writes_an_error_row_per_bomb_and_goes_on(tmp_path, tiny_arch, guarded_resize,
                                                          faces):
    from babyemo.prediction import Predictor, predict_to_files

    bombs, good = _photos(tmp_path / "photos")
    _SpyDetector.sizes = []
    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    predictor = Predictor(ckpt, faces=faces, runtime=Runtime(precision="fp32", workers=0))
    out = tmp_path / "out.csv"
    summary = predict_to_files([tmp_path / "photos"], predictor, csv_out=out)
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert set(rows) == set(bombs) | set(good)
    for name in bombs:
        assert rows[name]["error"] == "too_large", rows[name]
        assert rows[name]["error_detail"].startswith("image too elongated")
        assert rows[name]["label"] == ""
    for name in good:
        assert rows[name]["error"] == "" and rows[name]["label"], rows[name]
    assert summary.n_errors == len(bombs) and summary.error_counts == {"too_large": len(bombs)}
    assert guarded_resize, "the transform spy saw the good photos"
    if faces:
        assert len(_SpyDetector.sizes) == len(good)  # the detector only saw the photos


def test_prepare_skips_bombs_with_their_reason(tmp_path):
    from babyemo.data.preparation.prepare import prepare

    root = tmp_path / "ds"
    for cls, colour in (("angry", (220, 40, 40)), ("happy", (40, 200, 40))):
        for i in range(4):
            make_image(root / cls / f"{i}.png", color=tuple(c + 5 * i for c in colour))
    _bombs(root / "angry")
    result = prepare(root, out=tmp_path / "prep", faces=SPY)
    paths = {r.path for r in result.manifest.rows}
    assert len(paths) == 8 and not any("strip" in p or "over" in p for p in paths)
    assert result.skipped == {"unreadable": len(BOMBS) + 1}
    reasons = {Path(f["path"]).name: f["reason"] for f in result.skipped_files}
    assert set(reasons) == set(BOMBS) | {"strip.jpg"}
    assert all(r.startswith("image too elongated") for r in reasons.values())


def test_evaluation_dataset_refuses_an_image_replaced_by_a_bomb(prepared, tmp_path,
                                                                tiny_arch, guarded_resize):
    """A manifest image swapped for a bomb after prepare: a typed ``too_large`` error
    naming the file, before any resize (evaluate stops at an unreadable file, as for a
    missing one), with whole images and with face crops."""
    from babyemo.config import InputSpec
    from babyemo.data.loading.dataset import ManifestDataset, load_face_crop
    from babyemo.data.preparation.manifest import read_manifest
    from babyemo.evaluation import evaluate
    from babyemo.faces import CropSpec

    manifest = read_manifest(prepared)
    row = manifest.rows_for("test")[0]
    target = manifest.resolve(row)
    target.unlink()
    bomb_png(target, 200_000, 1)
    spec = InputSpec(size=24, mean=(0.5,) * 3, std=(0.5,) * 3)
    ds = ManifestDataset(manifest, "test", manifest.class_names, spec, lambda im: im)
    with pytest.raises(ImageError, match="image too elongated") as err:
        ds.load(ds.rel_paths.index(row.path))
    assert err.value.code == "too_large"
    face = {"box": (0.0, 0.0, 10.0, 1.0), "score": 0.9, "landmarks": ()}
    with pytest.raises(ImageError, match="image too elongated"):
        load_face_crop(target, face, CropSpec(), spec, 24)
    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    with pytest.raises(ImageError, match=f"{row.path.split('/')[-1]}: image too elongated"):
        evaluate(ckpt, data=prepared, split="test",
                 runtime=Runtime(device="cpu", workers=0, readers=1))
