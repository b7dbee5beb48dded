"""Caches of decoded, resized images, so epochs after the first do no JPEG decoding.

``ram`` keeps the PIL images in a dict of the process; ``disk`` keeps them as raw
``uint8`` ``.npy`` arrays under :func:`babyemo.paths.image_cache_dir`, shared by DataLoader
worker processes and by later runs on the same files. Keys are made by
:func:`cache_key` from :func:`content_digest` of the bytes read at load time (never from the
manifest's ``sha256`` column, which goes stale when an image is replaced after ``prepare``
and may be blank or repeated in a hand-made manifest) and everything that changes the
decoded pixels, so a changed file or another decode size never reads a stale entry, and two
different files never share one. On a miss those same bytes are decoded, so an entry always
holds the pixels of the bytes its key names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from babyemo.errors import ConfigError
from babyemo.fs import atomic_open

_HEX64 = re.compile(r"[0-9a-f]{64}")


class ImageCache(Protocol):
    """Get and put decoded PIL images by key."""

    def get(self, key: str) -> Image.Image | None:
        """The cached image, or ``None`` when absent (or unreadable)."""

    def put(self, key: str, img: Image.Image) -> None:
        """Store ``img`` under ``key``."""


def content_digest(data: bytes) -> str:
    """SHA-256 (hex) of a file's bytes, as read now: the identity of its cache entries."""
    return hashlib.sha256(data).hexdigest()


def cache_key(sha256: str, *, size: int, mode: str, crop: Any = None,
              face: dict[str, Any] | None = None) -> str:
    """A key naming one decoded image.

    Args:
        sha256: :func:`content_digest` of the bytes that are decoded (64 hex digits).
        size: Decode size in pixels (JPEG draft / crop output side).
        mode: PIL mode of the result (``"RGB"`` or ``"L"``).
        crop: The :class:`babyemo.faces.CropSpec` or ``None`` (whole image).
        face: The face box the image is cropped to, or ``None``.

    Returns:
        ``<sha256>-<size>-<mode>`` plus, for face crops, a short hash of the crop
        settings and the face box.

    Raises:
        ConfigError: ``sha256`` is not 64 hex digits (e.g. a blank manifest value): such a
            key would be shared by unrelated images.
    """
    if not _HEX64.fullmatch(sha256 or ""):
        raise ConfigError(f"An image-cache key needs the SHA-256 of the file's bytes, got "
                          f"{sha256!r}.", "use content_digest() of the bytes read")
    key = f"{sha256}-{size}-{mode}"
    if crop is not None:
        extra = json.dumps({"crop": repr(crop), "face": face}, sort_keys=True, default=str)
        key += "-" + hashlib.sha256(extra.encode()).hexdigest()[:16]
    return key


class RamCache:
    """Decoded images kept in this process's memory (each worker process has its own)."""

    def __init__(self) -> None:
        self._items: dict[str, Image.Image] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Image.Image | None:
        """The cached image, or ``None``."""
        return self._items.get(key)

    def put(self, key: str, img: Image.Image) -> None:
        """Keep ``img`` (already loaded; Pillow images hold their pixels in memory)."""
        self._items[key] = img


class DiskCache:
    """Decoded images as ``uint8`` ``.npy`` files (``(H, W)`` or ``(H, W, 3)``) in ``folder``.

    Files are written under a temporary name and renamed, so a crash or a concurrent
    worker never leaves a half-written entry; an unreadable entry is treated as absent
    and rewritten.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> Image.Image | None:
        """The cached image, or ``None`` when absent or unreadable."""
        path = self._path(key)
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            return None
        return Image.fromarray(arr)

    def put(self, key: str, img: Image.Image) -> None:
        """Write ``img`` as an ``.npy`` file (atomically)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            np.save(f, np.asarray(img), allow_pickle=False)


def make_cache(mode: str) -> ImageCache | None:
    """The cache for a :class:`babyemo.config.CacheMode` value (``auto`` must be resolved).

    Returns:
        A :class:`RamCache`, a :class:`DiskCache` in :func:`babyemo.paths.image_cache_dir`,
        or ``None`` for ``"none"``.
    """
    if mode == "ram":
        return RamCache()
    if mode == "disk":
        from babyemo.paths import image_cache_dir

        return DiskCache(image_cache_dir())
    return None
