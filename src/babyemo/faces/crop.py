"""Square, optionally eye-aligned face crops with one Pillow affine transform.

Coordinates are continuous image coordinates (pixel ``i`` covers ``[i, i + 1)``, so its
centre is ``i + 0.5``), with ``y`` pointing down, as Pillow and the detectors use them.

The maths of :func:`crop_face`, for a face box ``(x, y, w, h)``:

* The crop is a square of side ``S = max(w, h) * (1 + 2 * margin)`` source pixels centred
  on the box centre ``c = (x + w/2, y + h/2)``.
* With alignment, ``theta = eye_angle(face)`` (radians below) is the angle of the eye line,
  and the crop is taken from the image rotated about ``c`` so that this line becomes
  horizontal. Without alignment ``theta = 0``.
* The output has ``N`` pixels per side (``out_size``, or ``round(S)``), so one output pixel
  spans ``k = S / N`` source pixels. Output point ``(u, v)``, relative to the output centre
  ``(du, dv) = ((u - N/2) * k, (v - N/2) * k)``, samples the source point::

      x_src = cx + cos(theta) * du - sin(theta) * dv
      y_src = cy + sin(theta) * du + cos(theta) * dv

  i.e. the rotation by ``+theta`` that carries the horizontal output axis onto the eye line
  (check: ``(du, dv) = (1, 0)`` lands on ``c + (cos theta, sin theta)``, the eye direction).
  This is linear in ``(u, v)``, so it is a single ``Image.transform(..., AFFINE)`` with
  coefficients ``(a, b, c0, d, e, f)`` where ``x_src = a*u + b*v + c0`` and
  ``y_src = d*u + e*v + f``: ``a = k cos, b = -k sin, c0 = cx - k N/2 (cos - sin)``,
  ``d = k sin, e = k cos, f = cy - k N/2 (sin + cos)`` -- no full-image rotation. Pillow
  evaluates them at output pixel centres. Source points outside the image are filled with
  black (0).
* The affine sampler (bicubic) does not low-pass filter, so when the crop shrinks the face
  by ``k >= 2`` the region the square can reach is first box-averaged by ``r = floor(k)``
  (``Image.reduce``; reduced pixel ``j`` covers source ``[o + j*r, o + (j+1)*r)``, so the
  coefficients become ``(a/r, b/r, (c0 - ox)/r, d/r, e/r, (f - oy)/r)``) and the affine
  step shrinks by the remaining ``k/r < 2``. This also keeps the cost near
  ``out_size**2`` instead of ``S**2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from babyemo.errors import ConfigError
from babyemo.faces.registry import Face

MAX_SIDE_FACTOR = 8.0
"""A crop side larger than this many times the image's longest side is refused."""

_NATIVE_MODES = ("L", "RGB", "RGBA", "LA", "I", "F")


@dataclass(frozen=True)
class CropSpec:
    """How a face is cropped.

    Attributes:
        margin: Fraction of the face box size added on each side (0.25: the crop side is
            1.5 times the longer box side).
        align: Rotate so the eyes are level (only when the face has landmarks).

    Raises:
        ConfigError: ``margin`` is negative or not finite.
    """

    margin: float = 0.25
    align: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ConfigError(f"Face margin must be a number >= 0, got {self.margin}.",
                              "0.25 adds a quarter of the face size on each side")

    def to_dict(self) -> dict[str, Any]:
        """``{"margin": float, "align": bool}``."""
        return {"margin": float(self.margin), "align": bool(self.align)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CropSpec:
        """Inverse of :meth:`to_dict`; missing keys take the defaults, other keys are ignored
        (so a checkpoint's ``faces`` dict with its ``detector`` key works).

        Raises:
            ConfigError: ``margin`` is not a number >= 0.
        """
        try:
            margin = float(d.get("margin", cls.margin))
        except (TypeError, ValueError):
            raise ConfigError(f"Face margin must be a number, got {d.get('margin')!r}.") from None
        return cls(margin=margin, align=bool(d.get("align", cls.align)))


def eye_angle(face: Face) -> float:
    """The angle of the eye line, in degrees, 0 when the eyes are level.

    It is the direction from landmark 0 (the subject's right eye, on the image's left for an
    upright face) to landmark 1 (the subject's left eye), measured in image coordinates with
    ``y`` down: positive when the image-right eye is lower, i.e. the head is tilted
    clockwise as seen on screen. ``image.rotate(eye_angle(face))`` (Pillow rotates
    counter-clockwise) makes the eyes level. Using the landmark order rather than the
    left/right position keeps the full range ``(-180, 180]``, so an upside-down face is
    turned upright.

    Args:
        face: A face with at least two landmarks.

    Returns:
        Degrees in ``(-180, 180]``.

    Raises:
        ConfigError: The face has fewer than two landmarks, or the eyes coincide.
    """
    if len(face.landmarks) < 2:
        raise ConfigError("The face has no eye landmarks to align on.",
                          "use a detector with landmarks (yunet) or align=False")
    (x0, y0), (x1, y1) = face.landmarks[0], face.landmarks[1]
    dx, dy = x1 - x0, y1 - y0
    if not (math.isfinite(dx) and math.isfinite(dy)) or math.hypot(dx, dy) < 1e-6:
        raise ConfigError(f"The face's eye landmarks {face.landmarks[:2]} do not define a line.")
    return math.degrees(math.atan2(dy, dx))


def _check_box(face: Face, width: int, height: int) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in face.box)
    except (TypeError, ValueError):
        raise ConfigError(f"Malformed face box {face.box!r}.", "give (x, y, w, h)") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 1 or h < 1:
        raise ConfigError(f"Face box {face.box!r} is degenerate (width and height must be "
                          ">= 1 pixel and finite).", "check the face detector's output")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ConfigError(f"Face box {face.box!r} lies outside the {width}x{height} image.",
                          "the box belongs to another image or another image size")
    return x, y, w, h


def crop_face(image: Image.Image, face: Face, spec: CropSpec,
              out_size: int | None = None) -> Image.Image:
    """Cut a square around ``face``, eyes levelled if ``spec.align`` (maths: module docstring).

    Args:
        image: The image the face was detected in (same pixel size).
        face: The face; its box gives the centre and size, its first two landmarks the angle.
        spec: Margin and alignment.
        out_size: Side of the result in pixels; ``None`` keeps the crop's own size
            ``round(max(w, h) * (1 + 2 * margin))``.

    Returns:
        A new square image, in ``image``'s mode (``P``/``1``/other modes are converted to
        RGB), black where the square reaches outside the image.

    Raises:
        ConfigError: The box is not finite, narrower or lower than 1 pixel, entirely outside
            the image, or absurdly large; or ``out_size`` < 1.
    """
    width, height = image.size
    x, y, w, h = _check_box(face, width, height)
    if out_size is not None and int(out_size) < 1:
        raise ConfigError(f"out_size must be at least 1 pixel, got {out_size}.")
    side = max(w, h) * (1.0 + 2.0 * spec.margin)
    if side > MAX_SIDE_FACTOR * max(width, height):
        raise ConfigError(f"Face box {face.box!r} with margin {spec.margin} makes a {side:.0f} "
                          f"px crop of a {width}x{height} image.", "check the box and margin")
    theta = 0.0
    if spec.align and len(face.landmarks) >= 2:
        try:
            theta = math.radians(eye_angle(face))
        except ConfigError:
            theta = 0.0  # coinciding or non-finite eye points: crop without rotating
    if image.mode not in _NATIVE_MODES:
        image = image.convert("RGB")

    n = max(1, round(side)) if out_size is None else int(out_size)
    k = side / n  # source pixels per output pixel
    cx, cy = x + w / 2.0, y + h / 2.0
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    half = n / 2.0
    a, b, c0 = k * cos_t, -k * sin_t, cx - k * half * (cos_t - sin_t)
    d, e, f = k * sin_t, k * cos_t, cy - k * half * (sin_t + cos_t)
    r = math.floor(k)
    if r >= 2:  # shrink the face region by box averaging first (antialiasing, and faster)
        image, (ox, oy) = _reduce_region(image, (cx, cy), side, r)
        a, b, c0, d, e, f = a / r, b / r, (c0 - ox) / r, d / r, e / r, (f - oy) / r
    return image.transform((n, n), Image.Transform.AFFINE, (a, b, c0, d, e, f),
                           resample=Image.Resampling.BICUBIC, fillcolor=_black(image.mode))


def _reduce_region(image: Image.Image, centre: tuple[float, float], side: float,
                   r: int) -> tuple[Image.Image, tuple[int, int]]:
    """Box-average (``Image.reduce``) the part of ``image`` any rotation of the crop can touch.

    Returns the reduced image and the source position ``(ox, oy)`` of its origin: reduced
    point ``X'`` is source point ``ox + r * X'`` (and likewise for ``y``).
    """
    reach = side * math.sqrt(0.5) + 3 * r  # half-diagonal of the square + interpolation support
    cx, cy = centre
    x0 = max(0, math.floor(cx - reach))
    y0 = max(0, math.floor(cy - reach))
    x1 = min(image.width, math.ceil(cx + reach))
    y1 = min(image.height, math.ceil(cy + reach))
    return image.reduce(r, box=(x0, y0, x1, y1)), (x0, y0)


def _black(mode: str) -> Any:
    bands = Image.getmodebands(mode)
    return 0 if bands == 1 else (0,) * bands


__all__ = ["CropSpec", "crop_face", "eye_angle"]
