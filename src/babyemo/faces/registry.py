"""Faces, the face-detector protocol and the face-detector registry (torch-free).

Detectors are registered by name with :func:`register_detector` on a factory
``factory(**kwargs) -> FaceDetector``. :func:`get_detector` builds each (name, kwargs)
combination once per process and caches it, so a detector's model file is loaded once.
The built-in detectors are ``none`` (defined here: the image is already a face crop) and
``yunet`` (:mod:`babyemo.faces.yunet`, imported on first use).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from babyemo.errors import ConfigError, RegistryError, unknown_name

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_DETECTOR = "yunet"
"""The detector used when none is named."""

_BUILTIN_MODULES = ("babyemo.faces.yunet",)


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: ``(x, y, w, h)`` in pixels of the original (upright, EXIF-applied) image; ``x, y``
            is the top-left corner, in the continuous coordinates where pixel ``i`` covers
            ``[i, i + 1)``.
        score: Detector confidence in ``[0, 1]``.
        landmarks: Five ``(x, y)`` points in original-image pixels, in YuNet's order: the
            subject's right eye, left eye, nose tip, right mouth corner, left mouth corner.
            For an upright face the subject's right eye is on the left of the image.
            ``()`` when the detector gives none.
        rotation: ``None`` when the face was found in the image as it is; else the angle in
            degrees (counter-clockwise on screen, in ``[0, 360)``) by which the image was
            turned when a second pass found it (:mod:`babyemo.faces.second_pass`; 0 for
            the padded, unturned copy). The box and landmarks are in original-image pixels
            either way.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] = ()
    rotation: float | None = None

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return self.box[2] * self.box[3]

    def to_dict(self) -> dict[str, Any]:
        """Plain types: ``{"box": [x, y, w, h], "score": s, "landmarks": [[x, y], ...]}``,
        plus ``"rotation": degrees`` for a face found by a second pass."""
        out = {"box": [float(v) for v in self.box], "score": float(self.score),
               "landmarks": [[float(x), float(y)] for x, y in self.landmarks]}
        if self.rotation is not None:
            out["rotation"] = float(self.rotation)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Face:
        """Inverse of :meth:`to_dict` (lists or tuples; ``landmarks`` and ``rotation`` may
        be missing).

        Raises:
            ConfigError: ``d`` has no 4-number ``box``, a non-numeric ``score`` or malformed
                ``landmarks``.
        """
        try:
            box = tuple(float(v) for v in d["box"])
            if len(box) != 4:
                raise ValueError(f"box has {len(box)} values, not 4")
            score = float(d.get("score", math.nan))
            landmarks = tuple((float(x), float(y)) for x, y in (d.get("landmarks") or ()))
            rotation = None if d.get("rotation") is None else float(d["rotation"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"Malformed face {dict(d)!r}: {e}.",
                              "a face is {'box': [x, y, w, h], 'score': s, "
                              "'landmarks': [[x, y], ...]}") from None
        return cls(box=box, score=score, landmarks=landmarks,  # type: ignore[arg-type]
                   rotation=rotation)


@runtime_checkable
class FaceDetector(Protocol):
    """What a face detector provides.

    The built-in detectors also keep timing counters: ``last_seconds`` (the last
    :meth:`detect` call), ``total_seconds`` and ``calls`` (since creation or
    ``reset_timing()``), so callers can report detection cost separately, and a
    ``settings`` dict of their options in plain types (what found the faces a prepared
    dataset stores; :func:`detector_settings`).
    """

    name: str

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in ``image`` (any PIL mode), best first.

        Returns:
            Faces sorted by score, descending; ties broken by larger box area first.
            Coordinates are in pixels of ``image``.
        """
        ...


def detector_settings(detector: Any) -> dict[str, Any]:
    """``detector.settings`` (its options in plain types), or ``{}`` when it has none."""
    settings = getattr(detector, "settings", None)
    return dict(settings) if isinstance(settings, Mapping) else {}


def sort_faces(faces: list[Face]) -> list[Face]:
    """``faces`` sorted by score descending, then by box area descending (stable)."""
    return sorted(faces, key=lambda f: (-f.score, -f.area))


class TimedDetector:
    """Mixin keeping the timing counters of :meth:`detect`.

    Attributes:
        last_seconds: Wall time of the last call (resizing, colour conversion and inference).
        total_seconds: Sum over calls since creation or :meth:`reset_timing`.
        calls: Number of calls since creation or :meth:`reset_timing`.
    """

    def __init__(self) -> None:
        self.last_seconds = 0.0
        self.total_seconds = 0.0
        self.calls = 0

    def reset_timing(self) -> None:
        """Set the timing counters back to zero."""
        self.last_seconds, self.total_seconds, self.calls = 0.0, 0.0, 0

    def _record(self, t0: float) -> None:
        self.last_seconds = time.perf_counter() - t0
        self.total_seconds += self.last_seconds
        self.calls += 1


class WholeImageDetector(TimedDetector):
    """The ``none`` detector: the image is already a face crop.

    :meth:`detect` returns one face covering the whole image: box ``(0, 0, W, H)``,
    score 1.0, no landmarks (so cropping with it never rotates).
    """

    name = "none"

    def detect(self, image: Image.Image) -> list[Face]:
        """One face covering all of ``image`` (none for an empty image)."""
        t0 = time.perf_counter()
        w, h = image.size
        faces = [Face(box=(0.0, 0.0, float(w), float(h)), score=1.0)] if w and h else []
        self._record(t0)
        return faces


@dataclass(frozen=True)
class DetectorInfo:
    """One registered face detector.

    Attributes:
        name: Registry name, e.g. ``"yunet"``.
        description: One line naming the method and its source.
        factory: ``factory(**kwargs) -> FaceDetector``.
    """

    name: str
    description: str
    factory: Callable[..., FaceDetector]


_DETECTORS: dict[str, DetectorInfo] = {}
_CACHE: dict[tuple[Any, ...], FaceDetector] = {}
_LOCK = threading.RLock()
_loaded_builtins = False


def register_detector(
    name: str, *, description: str
) -> Callable[[Callable[..., FaceDetector]], Callable[..., FaceDetector]]:
    """Decorator registering a face-detector factory under ``name``.

    Args:
        name: Unique registry name (lower case, no spaces).
        description: One line naming the method and its source.

    Returns:
        The decorator; it returns the factory unchanged.

    Raises:
        RegistryError: ``name`` is already registered.
    """

    def decorator(factory: Callable[..., FaceDetector]) -> Callable[..., FaceDetector]:
        with _LOCK:
            if name in _DETECTORS:
                raise RegistryError(f"Face detector '{name}' is already registered.",
                                    "choose another name")
            _DETECTORS[name] = DetectorInfo(name, description, factory)
        return factory

    return decorator


def _load_builtins() -> None:
    global _loaded_builtins
    with _LOCK:
        if not _loaded_builtins:
            _loaded_builtins = True
            for module in _BUILTIN_MODULES:
                importlib.import_module(module)


def list_detectors() -> list[DetectorInfo]:
    """The registered face detectors, sorted by name."""
    _load_builtins()
    with _LOCK:
        return [info for _, info in sorted(_DETECTORS.items())]


def _cache_key(name: str, kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    key = (os.getpid(), name, tuple(sorted(kwargs.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def get_detector(name: str = DEFAULT_DETECTOR, **kwargs: Any) -> FaceDetector:
    """The face detector ``name`` built with ``kwargs``, cached per process.

    The same ``(name, kwargs)`` returns the same object within a process (a forked worker
    builds its own), so a model file is loaded once. Unhashable ``kwargs`` are not cached.

    Args:
        name: A registered detector name (see :func:`list_detectors`).
        **kwargs: Passed to the detector's factory, e.g. ``score_threshold=0.7`` for yunet.

    Raises:
        RegistryError: Unknown name; the hint lists the closest names.
        MissingDependencyError: The detector needs an optional package that is missing.
        DownloadError: Its model file cannot be fetched or fails its checksum.
        ConfigError: Invalid ``kwargs``.
    """
    _load_builtins()
    with _LOCK:
        info = _DETECTORS.get(name)
        if info is None:
            raise unknown_name("face detector", name, _DETECTORS)
        key = _cache_key(name, kwargs)
        if key is not None and key in _CACHE:
            return _CACHE[key]
        try:
            inspect.signature(info.factory).bind(**kwargs)
        except TypeError as e:
            raise ConfigError(f"Invalid options for face detector '{name}': {e}.",
                              "check the option names") from None
        detector = info.factory(**kwargs)
        if key is not None:
            _CACHE[key] = detector
        return detector


def clear_detector_cache() -> None:
    """Forget every cached detector (they are rebuilt on next use)."""
    with _LOCK:
        _CACHE.clear()


@register_detector("none", description="No detection: the image is already a face crop "
                   "(one face covering the whole image)")
def _make_none() -> FaceDetector:
    return WholeImageDetector()


__all__ = [
    "DEFAULT_DETECTOR",
    "DetectorInfo",
    "Face",
    "FaceDetector",
    "TimedDetector",
    "WholeImageDetector",
    "clear_detector_cache",
    "detector_settings",
    "get_detector",
    "list_detectors",
    "register_detector",
    "sort_faces",
]
