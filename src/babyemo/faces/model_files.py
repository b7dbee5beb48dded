"""Find, download and verify the model files of face detectors.

Lookup order of :func:`model_path`:

1. ``BABYEMO_MODELS`` (:func:`babyemo.paths.local_models_dir`), a folder of local copies for
   offline machines; a file there must match its pinned SHA-256 or it is an error.
2. The model cache (:func:`babyemo.paths.models_cache_dir`); a file there that does not match
   is downloaded again.
3. Otherwise the file is downloaded into the cache from its pinned URL and verified against
   its pinned SHA-256 (:func:`babyemo.download.download_url`).

Each file's hash is checked once per process (again only when its size or modification
time changes).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import NamedTuple

from babyemo import paths
from babyemo.errors import DownloadError, unknown_name
from babyemo.fs import sha256_file

logger = logging.getLogger(__name__)


class ModelFile(NamedTuple):
    """A pinned model file.

    Attributes:
        url: Where it is downloaded from.
        sha256: Its SHA-256 (64 lower-case hex digits).
        size: Its size in bytes (``None``: unknown), also the download size limit.
        licence: Its licence and authors, for the docs and ``models`` listings.
    """

    url: str
    sha256: str
    size: int | None
    licence: str


YUNET_MODEL = "face_detection_yunet_2026may.onnx"
"""File name of the YuNet face detector of the OpenCV Zoo (the default model file)."""

KNOWN_MODEL_FILES: dict[str, ModelFile] = {
    YUNET_MODEL: ModelFile(
        url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
            "face_detection_yunet_2026may.onnx",
        sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
        size=229_738,
        licence="MIT (OpenCV Zoo, models/face_detection_yunet; Shiqi Yu and contributors)",
    ),
}
"""Model files babyemo knows how to fetch, by file name (entries may be plain 4-tuples)."""

_verified: dict[Path, tuple[int, int]] = {}
_lock = threading.Lock()


def _matches(path: Path, entry: ModelFile) -> bool:
    """True when ``path`` has the pinned size and SHA-256 (cached per size and mtime)."""
    stat = path.stat()
    key, stamp = path.resolve(), (stat.st_size, stat.st_mtime_ns)
    with _lock:
        if _verified.get(key) == stamp:
            return True
    if entry.size is not None and stat.st_size != entry.size:
        return False
    if sha256_file(path) != entry.sha256.lower():
        return False
    with _lock:
        _verified[key] = stamp
    return True


def _entry(name: str) -> ModelFile:
    try:
        return ModelFile(*KNOWN_MODEL_FILES[name])
    except KeyError:
        raise unknown_name("model file", name, KNOWN_MODEL_FILES) from None


def _offline_hint(name: str, entry: ModelFile) -> str:
    return (f"offline? download {entry.url} elsewhere, put it in a folder as {name} and set "
            f"BABYEMO_MODELS to that folder (SHA-256 {entry.sha256})")


def model_path(name: str = YUNET_MODEL) -> Path:
    """The local path of model file ``name``, downloading and verifying it if needed.

    Args:
        name: A key of :data:`KNOWN_MODEL_FILES`, e.g. ``"face_detection_yunet_2026may.onnx"``.

    Returns:
        An existing file whose SHA-256 matches the pinned one.

    Raises:
        RegistryError: ``name`` is not in :data:`KNOWN_MODEL_FILES`.
        DownloadError: The copy in ``BABYEMO_MODELS`` does not match its pinned SHA-256, or
            the download fails or does not match.
    """
    from babyemo.download import download_url

    entry = _entry(name)
    local_dir = paths.local_models_dir()
    if local_dir is not None:
        local = local_dir / name
        if local.is_file():
            if not _matches(local, entry):
                raise DownloadError(
                    f"{local} does not match the pinned SHA-256 of {name} "
                    f"({entry.sha256}).",
                    f"replace it with the file from {entry.url}, or unset BABYEMO_MODELS "
                    "to download it",
                )
            logger.info("Using %s from BABYEMO_MODELS", local)
            return local
        logger.info("%s is not in BABYEMO_MODELS=%s; using the model cache", name, local_dir)
    dest = paths.models_cache_dir() / name
    stale = dest.is_file()
    if stale:
        if _matches(dest, entry):
            return dest
        logger.warning("%s does not match its pinned SHA-256; downloading it again", dest)
    try:
        download_url(entry.url, dest, sha256=entry.sha256,
                     max_bytes=entry.size if entry.size else 1 << 30)
    except DownloadError as e:
        message = e.message
        if stale:
            message = (f"The cached {dest} does not match its pinned SHA-256, and downloading "
                       f"it again failed: {message}")
        raise DownloadError(message, _offline_hint(name, entry)) from e
    if not _matches(dest, entry):  # download_url verified it; this records the check
        raise DownloadError(f"{dest} does not match the pinned SHA-256 of {name}.",
                            _offline_hint(name, entry))
    return dest


__all__ = ["KNOWN_MODEL_FILES", "YUNET_MODEL", "ModelFile", "model_path"]
