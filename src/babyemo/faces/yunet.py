"""The ``yunet`` face detector: YuNet through OpenCV's ``cv2.FaceDetectorYN``.

YuNet is a tiny anchor-free face detector giving a box, a score and five landmarks per face
(W. Wu, H. Peng, S. Yu, "YuNet: A Tiny Millisecond-level Face Detector", Machine
Intelligence Research 20, 2023). The ONNX model comes from the OpenCV Zoo
(``models/face_detection_yunet``, MIT licence) via :mod:`babyemo.faces.model_files`.

Detection runs at a fixed input scale: the image is resized with Pillow so that its longest
side is at most ``max_side`` pixels (larger images are shrunk; images whose longest side is
below :data:`TINY_SIDE` are enlarged to :data:`TINY_UPSCALE_TO`; others are used as they
are), and boxes and landmarks are mapped back to pixels of the original image.

Where it finds no face, ``get_detector("yunet")`` runs a second pass on turned, padded
copies of the image (faces lying on their side or upside down, close-ups;
:mod:`babyemo.faces.second_pass`); ``get_detector("yunet", second_pass=False)`` is YuNet
alone.

``cv2`` (package ``opencv-python-headless``, extra ``faces``) is imported only when a
detector is built.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

from babyemo.errors import ConfigError, MissingDependencyError
from babyemo.faces.model_files import YUNET_MODEL, model_path
from babyemo.faces.registry import Face, TimedDetector, register_detector, sort_faces
from babyemo.faces.second_pass import SecondPass, SecondPassDetector

if TYPE_CHECKING:
    from PIL import Image

TINY_SIDE = 160
"""Images whose longest side is below this many pixels are enlarged before detection."""

TINY_UPSCALE_TO = 320
"""...and are enlarged to this longest side (tiny face crops, e.g. 48x48 FER-2013 images)."""


def import_cv2() -> Any:
    """Import ``cv2`` or raise :class:`MissingDependencyError` (a dependency of babyemo,
    missing only from a broken or hand-made install)."""
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError("opencv-python-headless", None,
                                     "Face detection with yunet") from None
    return cv2


def detection_scale(width: int, height: int, max_side: int) -> float:
    """The factor an image is resized by before detection (1.0: not resized).

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        max_side: Longest side above which the image is shrunk to exactly ``max_side``.

    Returns:
        ``max_side / longest`` if ``longest > max_side``; ``TINY_UPSCALE_TO / longest`` if
        ``longest < TINY_SIDE``; else 1.0.
    """
    longest = max(width, height)
    if longest > max_side:
        return max_side / longest
    if 0 < longest < TINY_SIDE:
        return TINY_UPSCALE_TO / longest
    return 1.0


class YuNetDetector(TimedDetector):
    """YuNet via ``cv2.FaceDetectorYN``; see the module docstring.

    Args:
        score_threshold: Minimum face score in ``[0, 1]`` (0.6: the OpenCV Zoo demo default).
        nms_threshold: IoU above which overlapping boxes are suppressed (0.3, as the Zoo).
        top_k: Boxes kept before non-maximum suppression (50 is plenty for photos).
        max_side: Longest image side for detection, in pixels (640, the Zoo's input size).
        model_file: A :data:`babyemo.faces.model_files.KNOWN_MODEL_FILES` name.

    Raises:
        MissingDependencyError: ``cv2`` is not installed.
        ConfigError: An option is out of range, or OpenCV cannot load the model.
        DownloadError: The model file cannot be fetched or fails its checksum.
    """

    name = "yunet"

    def __init__(self, *, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 50, max_side: int = 640, model_file: str = YUNET_MODEL) -> None:
        super().__init__()
        for label, value in (("score_threshold", score_threshold),
                             ("nms_threshold", nms_threshold)):
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"yunet {label} must be in [0, 1], got {value}.")
        if int(top_k) < 1:
            raise ConfigError(f"yunet top_k must be at least 1, got {top_k}.")
        if int(max_side) < TINY_UPSCALE_TO:
            raise ConfigError(f"yunet max_side must be at least {TINY_UPSCALE_TO}, got {max_side}.",
                              "640 is the model's usual input size")
        self.score_threshold, self.nms_threshold = float(score_threshold), float(nms_threshold)
        self.top_k, self.max_side = int(top_k), int(max_side)
        cv2 = import_cv2()
        self.model_path = model_path(model_file)
        # one OpenCV network per thread: FaceDetectorYN keeps its input size and buffers,
        # so a shared one would serialise the parallel readers behind a lock
        self._local = threading.local()
        self._local.net = _create(cv2, str(self.model_path), self.score_threshold,
                                  self.nms_threshold, self.top_k)  # fails here, not later

    @property
    def _net(self) -> Any:
        """This thread's ``cv2.FaceDetectorYN`` (created on first use in the thread)."""
        net = getattr(self._local, "net", None)
        if net is None:
            net = self._local.net = _create(import_cv2(), str(self.model_path),
                                            self.score_threshold, self.nms_threshold,
                                            self.top_k)
        return net

    @property
    def settings(self) -> dict[str, Any]:
        """The options (plain types), recorded with the faces a prepared dataset stores."""
        return {"score_threshold": self.score_threshold, "nms_threshold": self.nms_threshold,
                "top_k": self.top_k, "max_side": self.max_side,
                "model_file": self.model_path.name}

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in ``image`` in original-image pixels, best first.

        Args:
            image: A PIL image of any mode (converted to RGB, then to BGR ``uint8`` for
                OpenCV).

        Returns:
            Faces with score >= ``score_threshold``, sorted by score then area, each with five
            landmarks. Boxes may extend past the image border when a face is cut off.
        """
        import numpy as np
        from PIL import Image as PILImage

        t0 = time.perf_counter()
        width, height = image.size
        if width < 1 or height < 1:
            self._record(t0)
            return []
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        scale = detection_scale(width, height, self.max_side)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size != (width, height):
            rgb = rgb.resize(size, PILImage.Resampling.BILINEAR, reducing_gap=3.0)
        bgr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, ::-1])
        net = self._net
        net.setInputSize(size)
        _, rows = net.detect(bgr)
        sx, sy = width / size[0], height / size[1]
        faces = [] if rows is None else [_to_face(row, sx, sy) for row in rows]
        faces = sort_faces([f for f in faces if f is not None])
        self._record(t0)
        return faces


def _create(cv2: Any, path: str, score: float, nms: float, top_k: int) -> Any:
    """``cv2.FaceDetectorYN.create`` with OpenCV's info/warning log lines silenced."""
    if not hasattr(cv2, "FaceDetectorYN"):
        raise ConfigError(f"OpenCV {cv2.__version__} has no FaceDetectorYN.",
                          "pip install -U 'opencv-python-headless>=4.8'")
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old = log.getLogLevel() if log is not None else None
    try:
        if log is not None:
            log.setLogLevel(log.LOG_LEVEL_ERROR)
        return cv2.FaceDetectorYN.create(path, "", (TINY_UPSCALE_TO, TINY_UPSCALE_TO),
                                         score, nms, top_k)
    except cv2.error as e:
        raise ConfigError(f"OpenCV {cv2.__version__} cannot load the YuNet model {path}: "
                          f"{str(e).strip()}.",
                          "pip install -U 'opencv-python-headless>=4.8'") from None
    finally:
        if log is not None and old is not None:
            log.setLogLevel(old)


def _to_face(row: Any, sx: float, sy: float) -> Face | None:
    """One ``FaceDetectorYN`` output row (15 floats) in original pixels, or ``None`` if bad.

    Row layout (OpenCV ``FaceDetectorYN::detect``): ``x, y, w, h``, then the five landmarks
    ``x, y`` (right eye, left eye, nose tip, right and left mouth corner), then the score.
    """
    values = [float(v) for v in row[:15]]
    if len(values) < 15 or not all(math.isfinite(v) for v in values):
        return None
    x, y, w, h = values[0] * sx, values[1] * sy, values[2] * sx, values[3] * sy
    if w <= 0 or h <= 0:
        return None
    landmarks = tuple((values[4 + 2 * i] * sx, values[5 + 2 * i] * sy) for i in range(5))
    score = min(1.0, max(0.0, values[14]))
    return Face(box=(x, y, w, h), score=score, landmarks=landmarks)


@register_detector("yunet", description="YuNet (Wu et al. 2023, OpenCV Zoo, MIT) via OpenCV "
                   "FaceDetectorYN: box, score and 5 landmarks; where it finds no face, a "
                   "second pass on copies turned in 45-degree steps and padded (faces lying "
                   "sideways or upside down, close-ups)")
def _make_yunet(*, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 50,
                max_side: int = 640, model_file: str = YUNET_MODEL,
                second_pass: bool | SecondPass = True) -> YuNetDetector | SecondPassDetector:
    """YuNet, wrapped in :class:`~babyemo.faces.second_pass.SecondPassDetector` unless
    ``second_pass`` is False (a :class:`~babyemo.faces.second_pass.SecondPass` gives its
    settings; True the defaults)."""
    detector = YuNetDetector(score_threshold=score_threshold, nms_threshold=nms_threshold,
                             top_k=top_k, max_side=max_side, model_file=model_file)
    if not second_pass:
        return detector
    settings = second_pass if isinstance(second_pass, SecondPass) else SecondPass()
    if settings.score_threshold < detector.score_threshold:
        raise ConfigError(f"The second pass's score_threshold {settings.score_threshold} is "
                          f"below yunet's {detector.score_threshold}: the second pass only "
                          "sees faces that reach the first's.",
                          "lower yunet's score_threshold too")
    return SecondPassDetector(detector, settings)


__all__ = ["TINY_SIDE", "TINY_UPSCALE_TO", "YuNetDetector", "detection_scale", "import_cv2"]
