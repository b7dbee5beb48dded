"""Face cropping and eye alignment on synthetic Pillow images (no detector needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from babyemo.errors import ConfigError
from babyemo.faces import CropSpec, Face, crop_face, eye_angle

SIZE = 480            # canvas side; the face disc is centred
CENTRE = SIZE / 2.0
RADIUS = 100          # face disc radius
EYE_DX, EYE_DY, EYE_R = 35.0, -20.0, 8   # eyes at centre + (-+EYE_DX, EYE_DY)
EYE_GRAY = 40


def _render(angle: float) -> tuple[Image.Image, Face]:
    """A light disc with two dark eye dots, turned clockwise on screen by ``angle`` degrees.

    Returns the image and the face whose landmarks are the analytic eye centres (image-left
    eye first, as YuNet gives them) and whose box bounds the disc.
    """
    img = Image.new("RGB", (SIZE, SIZE), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    c = CENTRE
    draw.ellipse([c - RADIUS, c - RADIUS, c + RADIUS, c + RADIUS], fill=(235, 205, 180))
    for sx in (-1, 1):
        ex, ey = c + sx * EYE_DX, c + EYE_DY
        draw.ellipse([ex - EYE_R, ey - EYE_R, ex + EYE_R, ey + EYE_R], fill=(EYE_GRAY,) * 3)
    # Pillow rotates counter-clockwise for positive angles: -angle turns it clockwise.
    img = img.rotate(-angle, resample=Image.Resampling.BICUBIC, center=(c, c),
                     fillcolor=(128, 128, 128))
    t = math.radians(angle)

    def turn(dx: float, dy: float) -> tuple[float, float]:  # clockwise on screen, y down
        return (c + dx * math.cos(t) - dy * math.sin(t), c + dx * math.sin(t) + dy * math.cos(t))

    landmarks = (turn(-EYE_DX, EYE_DY), turn(EYE_DX, EYE_DY), turn(0, 10), turn(-30, 50),
                 turn(30, 50))
    box = (c - RADIUS, c - RADIUS, 2.0 * RADIUS, 2.0 * RADIUS)
    return img, Face(box=box, score=0.99, landmarks=landmarks)


def _dark_centroids(img: Image.Image, near: list[tuple[float, float]], reach: float = 15.0):
    """Centroids of the eye-dark pixels nearest each point of ``near`` (pixel centres)."""
    gray = np.asarray(img.convert("L"), dtype=np.float64)
    ys, xs = np.nonzero((gray > 10) & (gray < 100))  # eye dots, not the black fill (0)
    xs, ys = xs + 0.5, ys + 0.5
    out = []
    for px, py in near:
        sel = (xs - px) ** 2 + (ys - py) ** 2 < reach ** 2
        assert sel.sum() > 50, f"no eye dot near {(px, py)}"
        out.append((float(xs[sel].mean()), float(ys[sel].mean())))
    return out


ANGLES = [-30.0, -10.0, 0.0, 15.0, 40.0]
LYING = [-135.0, -90.0, -60.0, 90.0, 135.0, 175.0, -170.0]
"""Faces lying on their side or upside down (what the yunet second pass finds)."""


@pytest.mark.parametrize("angle", ANGLES + LYING)
def test_eye_angle_recovers_the_rendered_angle(angle: float) -> None:
    img, face = _render(angle)
    assert eye_angle(face) == pytest.approx(angle, abs=1e-9)
    # The same from the eye dots as they appear in the pixels (what a detector would see).
    measured = _dark_centroids(img, list(face.landmarks[:2]))
    seen = Face(box=face.box, score=1.0, landmarks=tuple(measured))
    assert (eye_angle(seen) - angle + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=0.5)


@pytest.mark.parametrize("angle", ANGLES + LYING)
def test_aligned_crop_levels_the_eyes(angle: float) -> None:
    img, face = _render(angle)
    measured = tuple(_dark_centroids(img, list(face.landmarks[:2])))
    face = Face(box=face.box, score=1.0, landmarks=measured)
    crop = crop_face(img, face, CropSpec(margin=0.25, align=True))
    assert crop.size == (300, 300)
    half = 150.0  # the box centre (the disc centre) is the crop centre
    expected = [(half - EYE_DX, half + EYE_DY), (half + EYE_DX, half + EYE_DY)]
    (lx, ly), (rx, ry) = _dark_centroids(crop, expected)
    assert abs(ly - ry) <= 1.0
    assert lx < half < rx
    assert rx - lx == pytest.approx(2 * EYE_DX, abs=1.5)
    assert ly == pytest.approx(half + EYE_DY, abs=1.5)  # eyes above the centre, not below


@pytest.mark.parametrize("angle", [-30.0, 15.0])
def test_unaligned_crop_keeps_the_orientation(angle: float) -> None:
    img, face = _render(angle)
    crop = crop_face(img, face, CropSpec(margin=0.25, align=False))
    shift = CENTRE - 150.0  # crop origin in the image
    expected = [(x - shift, y - shift) for x, y in face.landmarks[:2]]
    (lx, ly), (rx, ry) = _dark_centroids(crop, expected)
    assert math.degrees(math.atan2(ry - ly, rx - lx)) == pytest.approx(angle, abs=1.0)
    # Without rotation the crop is a plain copy of the image region.
    region = img.crop((int(shift), int(shift), int(shift) + 300, int(shift) + 300))
    diff = np.abs(np.asarray(crop, np.int16) - np.asarray(region, np.int16))
    assert diff.max() <= 1


def test_align_without_landmarks_does_not_rotate() -> None:
    img, face = _render(25.0)
    bare = Face(box=face.box, score=1.0, landmarks=())
    a = crop_face(img, bare, CropSpec(align=True))
    b = crop_face(img, bare, CropSpec(align=False))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ConfigError):
        eye_angle(bare)


def test_upside_down_face_is_turned_upright() -> None:
    img, face = _render(180.0)
    assert abs(eye_angle(face)) == pytest.approx(180.0, abs=1e-6)
    crop = crop_face(img, face, CropSpec(margin=0.25))
    expected = [(150.0 - EYE_DX, 150.0 + EYE_DY), (150.0 + EYE_DX, 150.0 + EYE_DY)]
    (_, ly), (_, ry) = _dark_centroids(crop, expected)
    assert ly < 150 and ry < 150  # eyes in the upper half again


def _noise(size=(200, 160), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(1, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize(("box", "margin", "side"), [
    ((50.0, 30.0, 100.0, 100.0), 0.25, 150),
    ((50.0, 30.0, 100.0, 100.0), 0.0, 100),
    ((40.0, 20.0, 60.0, 100.0), 0.5, 200),   # the longer side counts
    ((60.0, 40.0, 80.0, 40.0), 0.1, 96),
])
def test_crop_size_and_margin_arithmetic(box, margin, side) -> None:
    img = _noise()
    crop = crop_face(img, Face(box=box, score=1.0), CropSpec(margin=margin, align=False))
    assert crop.size == (side, side)
    assert crop.mode == "RGB"


def test_crop_is_centred_on_the_box_and_exact() -> None:
    img = _noise()
    box = (50.0, 30.0, 100.0, 100.0)  # centre (100, 80); side 150 -> region [25, 175) x [5, 155)
    crop = crop_face(img, Face(box=box, score=1.0), CropSpec(margin=0.25, align=False))
    expected = np.asarray(img)[5:155, 25:175]
    assert np.abs(np.asarray(crop, np.int16) - expected.astype(np.int16)).max() <= 1


def test_box_partly_outside_is_padded_black() -> None:
    img = _noise()
    # Centre (0, 0), side 150: the crop covers [-75, 75) on both axes.
    crop = crop_face(img, Face(box=(-50.0, -50.0, 100.0, 100.0), score=1.0), CropSpec(0.25))
    arr = np.asarray(crop)
    assert crop.size == (150, 150)
    assert arr[:73, :].max() == 0 and arr[:, :73].max() == 0  # outside the image: black
    inside = arr[77:, 77:].astype(np.int16)
    assert np.abs(inside - np.asarray(img)[2:75, 2:75].astype(np.int16)).max() <= 1
    assert inside.min() > 0  # the noise image has no zeros, so no fill leaked in


def test_out_size_resizes_and_matches_a_plain_resize() -> None:
    smooth = _noise((400, 400)).resize((40, 40)).resize((400, 400), Image.Resampling.BICUBIC)
    face = Face(box=(100.0, 100.0, 200.0, 200.0), score=1.0)
    full = crop_face(smooth, face, CropSpec(margin=0.25, align=False))
    assert full.size == (300, 300)
    for out in (64, 100, 150, 299, 450):
        small = crop_face(smooth, face, CropSpec(margin=0.25, align=False), out_size=out)
        assert small.size == (out, out)
        ref = full.resize((out, out), Image.Resampling.BOX)
        diff = np.abs(np.asarray(small, np.float64) - np.asarray(ref, np.float64))
        assert diff.mean() < 4.0, out


@pytest.mark.parametrize("out", [60, 77, 150, 256, 600, 900])
def test_out_size_keeps_positions_exact(out: int) -> None:
    img = Image.new("L", (800, 800), 100)
    img.paste(255, (300, 300, 320, 320))  # centre (310, 310)
    face = Face(box=(200.0, 200.0, 400.0, 400.0), score=1.0)  # side 600, crop origin (100, 100)
    crop = np.asarray(crop_face(img, face, CropSpec(margin=0.25), out_size=out), np.float64)
    weight = np.clip(crop - 100.0, 0, None)
    ys, xs = np.indices(crop.shape)
    cx = float((weight * (xs + 0.5)).sum() / weight.sum())
    cy = float((weight * (ys + 0.5)).sum() / weight.sum())
    expected = 210.0 * out / 600.0
    assert cx == pytest.approx(expected, abs=0.25)
    assert cy == pytest.approx(expected, abs=0.25)


def test_out_size_with_rotation_and_shrinking() -> None:
    img, face = _render(40.0)
    crop = crop_face(img, face, CropSpec(margin=0.25), out_size=60)  # 300 px -> 60: r = 5
    assert crop.size == (60, 60)
    gray = np.asarray(crop.convert("L"), dtype=np.float64)
    # The eyes (dark) sit level in the upper half: compare the darkest spots' rows.
    left = np.unravel_index(np.argmin(gray[:, :30]), (60, 30))
    right = np.unravel_index(np.argmin(gray[:, 30:]), (60, 30))
    assert abs(int(left[0]) - int(right[0])) <= 1
    assert left[0] < 30


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I", "F"])
def test_image_modes(mode: str) -> None:
    img = _noise().convert(mode)
    crop = crop_face(img, Face(box=(50.0, 30.0, 100.0, 100.0), score=1.0), CropSpec(),
                     out_size=40)
    assert crop.size == (40, 40)
    assert crop.mode == ("RGB" if mode == "P" else mode)


@pytest.mark.parametrize("box", [
    (10.0, 10.0, 0.0, 50.0), (10.0, 10.0, 50.0, 0.5), (float("nan"), 10.0, 50.0, 50.0),
    (10.0, 10.0, float("inf"), 50.0), (10.0, 10.0, -20.0, 50.0),
    (500.0, 10.0, 50.0, 50.0), (-80.0, 10.0, 50.0, 50.0),   # entirely outside the image
    (0.0, 0.0, 5000.0, 5000.0),                              # absurdly large
])
def test_degenerate_box_is_a_config_error(box) -> None:
    with pytest.raises(ConfigError):
        crop_face(_noise(), Face(box=box, score=1.0), CropSpec())


def test_bad_out_size_and_margin() -> None:
    face = Face(box=(50.0, 30.0, 100.0, 100.0), score=1.0)
    with pytest.raises(ConfigError):
        crop_face(_noise(), face, CropSpec(), out_size=0)
    with pytest.raises(ConfigError):
        CropSpec(margin=-0.1)
    with pytest.raises(ConfigError):
        CropSpec(margin=float("nan"))


def test_crop_spec_round_trip() -> None:
    spec = CropSpec(margin=0.4, align=False)
    assert spec.to_dict() == {"margin": 0.4, "align": False}
    assert CropSpec.from_dict(spec.to_dict()) == spec
    assert CropSpec.from_dict({}) == CropSpec()
    # A checkpoint's faces dict carries the detector too; it is ignored here.
    assert CropSpec.from_dict({"detector": "yunet", "margin": 0.1, "align": True}) == \
        CropSpec(margin=0.1, align=True)
    with pytest.raises(ConfigError):
        CropSpec.from_dict({"margin": "wide"})
