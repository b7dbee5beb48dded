"""A second detection pass for photos in which a detector finds no face: turned, padded copies.

Face detectors such as YuNet are trained on upright faces. Newborns photographed lying on
their side or upside down, and close-ups whose face fills or overflows the frame, are
missed: on the 1,020 face-centred photos of ``infant-emotions`` YuNet alone finds a face in
974 (95.5 %). :class:`SecondPassDetector` wraps a detector; where the wrapped one finds
nothing in the image as it is, it runs it again on copies of the image turned by each of
:attr:`SecondPass.angles` and padded with black on every side (so a close-up face becomes
smaller than the frame and a turned face gets its corners back), and keeps the single best
face scoring at least :attr:`SecondPass.score_threshold`. Its box and five landmarks are
mapped back to pixels of the original image, so that eye-landmark alignment
(:func:`babyemo.faces.crop_face`) turns it upright.

Test-time rotation of the input is the usual way to find rotated faces with an upright
detector (e.g. H. A. Rowley, S. Baluja, T. Kanade, "Rotation invariant neural
network-based face detection", CVPR 1998, run the detector on derotated windows). The
settings were chosen on the photos the first pass misses (``docs/faces.md``): with turns
of 90 degrees only, crying newborns tilted by about 45 degrees were often found upside
down (YuNet scores an upside-down crying newborn about as high as an upright one); 45-degree
steps find them upright. A single best face, and a threshold above the first pass's, keep
false faces out: every turned copy is another chance for a false detection, and on
``baby-photos`` every face the second pass adds with these settings is a real one.

Pillow only (the wrapped detector brings its own dependencies).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from babyemo.errors import ConfigError
from babyemo.faces.registry import Face, FaceDetector, TimedDetector

if TYPE_CHECKING:
    from PIL import Image

Affine = tuple[float, float, float, float, float, float]
"""``(a, b, c, d, e, f)``: frame point ``(u, v)`` is image point
``(a*u + b*v + c, d*u + e*v + f)`` (Pillow's ``Image.transform`` AFFINE convention)."""


@dataclass(frozen=True)
class SecondPass:
    """How the second pass looks for a face the first pass missed.

    Attributes:
        angles: Degrees (counter-clockwise on screen) the image is turned by, one detection
            each; 0 is the padded copy of the image as it is. Default: every 45 degrees.
        pad: Black border added on each side of the turned image, as a fraction of its
            longest side (0.5: the frame is twice as large, so a face filling the photo
            fills half of it).
        score_threshold: The kept face's minimum detector score in ``[0, 1]`` (0.75: above
            YuNet's 0.6, see the module docstring).
        max_side: Longest side of each frame in pixels: larger frames are shrunk to it
            before detection (640, YuNet's input size).

    Raises:
        ConfigError: No angle, a non-finite angle, a negative or non-finite ``pad``, a
            threshold outside ``[0, 1]`` or ``max_side`` < 32.
    """

    angles: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
    pad: float = 0.5
    score_threshold: float = 0.75
    max_side: int = 640

    def __post_init__(self) -> None:
        angles = tuple(float(a) % 360.0 for a in self.angles)
        if not angles or not all(math.isfinite(a) for a in angles):
            raise ConfigError(f"Second-pass angles must be finite degrees, got {self.angles!r}.",
                              "e.g. (0, 45, 90, 135, 180, 225, 270, 315)")
        object.__setattr__(self, "angles", angles)
        if not math.isfinite(self.pad) or self.pad < 0:
            raise ConfigError(f"Second-pass pad must be a number >= 0, got {self.pad}.",
                              "0.5 adds half the image's longest side on each side")
        if not 0.0 <= float(self.score_threshold) <= 1.0:
            raise ConfigError(f"Second-pass score_threshold must be in [0, 1], got "
                              f"{self.score_threshold}.")
        if int(self.max_side) < 32:
            raise ConfigError(f"Second-pass max_side must be at least 32, got {self.max_side}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain types: ``{"angles": [...], "pad", "score_threshold", "max_side"}``."""
        return {"angles": list(self.angles), "pad": float(self.pad),
                "score_threshold": float(self.score_threshold), "max_side": int(self.max_side)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SecondPass:
        """Inverse of :meth:`to_dict`; missing keys take the defaults.

        Raises:
            ConfigError: A value is malformed or out of range.
        """
        try:
            return cls(angles=tuple(float(a) for a in d.get("angles", cls.angles)),
                       pad=float(d.get("pad", cls.pad)),
                       score_threshold=float(d.get("score_threshold", cls.score_threshold)),
                       max_side=int(d.get("max_side", cls.max_side)))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"Malformed second-pass settings {dict(d)!r}: {e}.") from None


def turned_frame(image: Image.Image, angle: float, pad: float,
                 max_side: int) -> tuple[Image.Image, Affine]:
    """``image`` turned by ``angle`` degrees (counter-clockwise on screen) about its centre,
    on a black canvas padded by ``pad`` times the turned image's longest side on each side,
    and shrunk so that its longest side is at most ``max_side`` pixels.

    One affine resampling (bilinear) from the image (box-averaged first by ``floor(k)`` when
    one frame pixel spans ``k >= 2`` image pixels, as in :func:`babyemo.faces.crop_face`);
    a quarter turn is the same as ``image.rotate(angle, expand=True)`` plus the border.

    Args:
        image: The image (RGB or L).
        angle: Degrees, counter-clockwise on screen (Pillow's ``rotate`` direction).
        pad: Border on each side, as a fraction of the turned image's longest side (>= 0).
        max_side: Longest frame side in pixels.

    Returns:
        ``(frame, affine)``: the frame, and the map from frame points to image points
        (see :data:`Affine`), in continuous pixel coordinates (pixel ``i`` covers
        ``[i, i + 1)``).
    """
    from PIL import Image as PILImage

    width, height = image.size
    t = math.radians(angle)
    cos_t, sin_t = math.cos(t), math.sin(t)
    if abs(cos_t) < 1e-12:
        cos_t = 0.0
    if abs(sin_t) < 1e-12:
        sin_t = 0.0
    turned_w = abs(width * cos_t) + abs(height * sin_t)
    turned_h = abs(width * sin_t) + abs(height * cos_t)
    border = pad * max(turned_w, turned_h)
    frame_w, frame_h = turned_w + 2 * border, turned_h + 2 * border
    k = max(1.0, max(frame_w, frame_h) / max_side)  # image pixels per frame pixel
    n_w, n_h = max(1, round(frame_w / k)), max(1, round(frame_h / k))
    # Frame point (u, v), relative to the frame centre and in image pixels, is
    # (du, dv) = ((u - n_w/2) k, (v - n_h/2) k); turning it back by the angle gives the
    # image point centre + (cos du - sin dv, sin du + cos dv).
    a, b, d, e = k * cos_t, -k * sin_t, k * sin_t, k * cos_t
    c = width / 2 - a * n_w / 2 - b * n_h / 2
    f = height / 2 - d * n_w / 2 - e * n_h / 2
    affine: Affine = (a, b, c, d, e, f)
    source, coeffs = image, affine
    r = math.floor(k)
    if r >= 2:  # box-average first: bilinear sampling alone would alias
        source = image.reduce(r)
        coeffs = (a / r, b / r, c / r, d / r, e / r, f / r)
    fill: Any = 0 if len(source.getbands()) == 1 else (0,) * len(source.getbands())
    frame = source.transform((n_w, n_h), PILImage.Transform.AFFINE, coeffs,
                             resample=PILImage.Resampling.BILINEAR, fillcolor=fill)
    return frame, affine


def face_to_image(face: Face, affine: Affine, angle: float) -> Face:
    """A face found in a :func:`turned_frame` in pixels of the original image.

    The landmarks are mapped exactly. The box keeps its centre (mapped) and its size in
    image pixels, width and height swapped when the frame is a quarter turn (90 or 270
    degrees, to within 45): it is the face's own box, upright in the frame, not the
    axis-aligned bounding box of the turned box (which would be up to 1.41 times larger at
    45 degrees). For multiples of 90 degrees both are the same.

    Args:
        face: The face in frame pixels.
        affine: The frame's map to the image (from :func:`turned_frame`).
        angle: The frame's angle in degrees (recorded as :attr:`Face.rotation`).
    """
    a, b, c, d, e, f = affine
    k = math.hypot(a, d)
    x, y, w, h = face.box
    u, v = x + w / 2, y + h / 2
    cx, cy = a * u + b * v + c, d * u + e * v + f
    if 45.0 < angle % 180.0 < 135.0:
        w, h = h, w
    w, h = w * k, h * k
    landmarks = tuple((a * px + b * py + c, d * px + e * py + f) for px, py in face.landmarks)
    return Face(box=(cx - w / 2, cy - h / 2, w, h), score=face.score, landmarks=landmarks,
                rotation=float(angle) % 360.0)


class SecondPassDetector(TimedDetector):
    """A detector with a second pass on turned, padded copies where it finds no face.

    Args:
        inner: The detector (e.g. :class:`babyemo.faces.yunet.YuNetDetector`); its own
            score threshold applies in both passes, and the second pass also needs
            ``settings.score_threshold``.
        settings: The second pass (:class:`SecondPass`; default: its defaults).

    Attributes:
        name: The inner detector's name (the second pass is a setting of it).
        inner: The wrapped detector.
        second_pass: The :class:`SecondPass`.
        second_pass_calls: Images the second pass ran on (the first found no face), since
            creation or :meth:`reset_timing`.
        second_pass_found: ...of which the second pass found a face.
    """

    def __init__(self, inner: FaceDetector, settings: SecondPass | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.second_pass = settings or SecondPass()
        self.second_pass_calls = 0
        self.second_pass_found = 0

    @property
    def settings(self) -> dict[str, Any]:
        """The inner detector's settings plus ``second_pass`` (plain types)."""
        inner = getattr(self.inner, "settings", None)
        return {**(dict(inner) if isinstance(inner, Mapping) else {}),
                "second_pass": self.second_pass.to_dict()}

    @property
    def model_path(self) -> Any:
        """The inner detector's model file (``None`` if it has none)."""
        return getattr(self.inner, "model_path", None)

    def reset_timing(self) -> None:
        """Set the timing and second-pass counters back to zero."""
        super().reset_timing()
        self.second_pass_calls = self.second_pass_found = 0

    def detect(self, image: Image.Image) -> list[Face]:
        """The inner detector's faces in ``image``; if none, at most one face from the
        second pass (the best over the turned copies, see the module docstring).

        Args:
            image: A PIL image of any mode (converted to RGB for the second pass).

        Returns:
            Faces in original-image pixels, best first. A second-pass face has its
            :attr:`~babyemo.faces.Face.rotation` set; its box centre lies in the image.
        """
        t0 = time.perf_counter()
        faces = self.inner.detect(image)
        if not faces and image.width > 0 and image.height > 0:
            self.second_pass_calls += 1
            faces = self._second_pass(image)
            self.second_pass_found += bool(faces)
        self._record(t0)
        return faces

    def _second_pass(self, image: Image.Image) -> list[Face]:
        rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
        spec = self.second_pass
        best: Face | None = None
        for angle in spec.angles:
            frame, affine = turned_frame(rgb, angle, spec.pad, spec.max_side)
            for face in self.inner.detect(frame):
                if face.score < spec.score_threshold or (best and face.score <= best.score):
                    continue
                mapped = face_to_image(face, affine, angle)
                x, y, w, h = mapped.box
                if 0 <= x + w / 2 < image.width and 0 <= y + h / 2 < image.height:
                    best = mapped
        return [best] if best is not None else []


__all__ = ["Affine", "SecondPass", "SecondPassDetector", "face_to_image", "turned_frame"]
