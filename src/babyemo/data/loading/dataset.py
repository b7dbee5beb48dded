"""torch Datasets over a manifest split, and over a list of unlabelled image files.

Both decode with :func:`babyemo.data.loading.images.load_image` at the same draft size
(:func:`decode_size`), so validation, evaluation and prediction see identical pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from babyemo.config import InputSpec, NoFaceFallback
from babyemo.data.loading.file_errors import FileErrorCode
from babyemo.data.loading.image_cache import ImageCache, cache_key, content_digest
from babyemo.data.loading.images import load_image, read_image_bytes
from babyemo.data.preparation.manifest import Manifest, check_split
from babyemo.errors import DataError, ImageError

Transform = Callable[[Any], torch.Tensor]

logger = logging.getLogger(__name__)

_WARNED_CHANGED: set[Path] = set()
"""Manifests whose changed images were already reported in this process (once each)."""


def _is_file(path: Path) -> bool:
    """``path.is_file()``, with any OS refusal (a name too long, permission denied on a
    folder of the path) or a value the OS cannot take counted as "not a file"."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def decode_size(spec: InputSpec, augment: bool = False) -> int:
    """Smallest side (pixels) images are decoded at: the model input, or twice it for
    training with augmentation (random resized crops zoom in).

    Pillow's JPEG ``draft`` decodes at 1/2, 1/4 or 1/8 scale, several times faster than a
    full decode, while keeping at least this many pixels for resizing and augmentation.
    Evaluation, validation and prediction all decode at ``spec.size``, so they see the
    same pixels.
    """
    return 2 * spec.size if augment else spec.size


class ManifestDataset(Dataset):
    """Labelled images of one manifest split.

    Items are ``(image, label)`` with ``image`` a ``(C, S, S) float32`` tensor from
    ``transform`` and ``label`` the int index of the row's label in ``class_names``.

    Args:
        manifest: The prepared dataset.
        split: ``"train"``, ``"val"`` or ``"test"``, several of them (e.g.
            ``("train", "val")``), or ``None`` for every row.
        class_names: Logit order; every label of the split must be in it.
        spec: Input spec (channels and decode size).
        transform: PIL image → tensor.
        cache: Where decoded images are kept after the first epoch (no JPEG decoding
            afterwards): a :class:`babyemo.data.loading.image_cache.RamCache` (each DataLoader
            worker holds its own), a :class:`~babyemo.data.loading.image_cache.DiskCache`, or
            ``None``. Entries are keyed on the SHA-256 of the bytes read at each load (not
            the manifest's ``sha256`` column), and a miss decodes those same bytes: a file
            replaced since ``prepare`` is decoded anew, never served from the cache.
        augment: Decode at twice the input size, for training augmentation (see
            :func:`decode_size`).
        crop: Crop each image to its face box from the manifest (see
            :func:`babyemo.faces.crop_face`); an image without a face is used whole
            (counted in :attr:`n_without_face`). ``None`` uses whole images.

    Raises:
        ConfigError: An unknown split name.
        DataError: The split is empty, has a label not in ``class_names``, a file of it is
            missing, or ``crop`` is given but the manifest has no face boxes.
    """

    def __init__(self, manifest: Manifest, split: str | Sequence[str] | None,
                 class_names: Sequence[str],
                 spec: InputSpec, transform: Transform, cache: ImageCache | None = None,
                 crop: Any = None, augment: bool = False) -> None:
        if isinstance(split, str):
            split = (split,)
        for name in split or ():
            check_split(name, allow_all=False)
        rows = (manifest.rows if split is None
                else [r for r in manifest.rows if r.split in split])
        split = None if split is None else "+".join(split)
        if not rows:
            has = ", ".join(manifest.splits()) or "none"
            raise DataError(f"The manifest {manifest.path} has no '{split}' rows (its splits: "
                            f"{has}).", "choose one of those, or re-split it with "
                            "`babyemo data split`")
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({r.label for r in rows} - index.keys())
        if unknown:
            raise DataError(
                f"Labels {unknown} of the '{split}' split are not among the model's "
                f"class names {list(class_names)}.",
                "evaluate on data with the same classes, or map the labels",
            )
        if crop is not None and not manifest.has_faces:
            raise DataError(f"The manifest {manifest.path} has no face boxes, but the model "
                            "was trained on face crops.",
                            "prepare the data with `babyemo data prepare --faces yunet`")
        self.crop = crop
        self.faces = [r.face for r in rows]
        self.n_without_face = sum(1 for f in self.faces if f is None) if crop else 0
        self.paths = [manifest.resolve(r) for r in rows]  # ManifestError: escapes the root
        missing = [r.path for r, p in zip(rows, self.paths, strict=True) if not _is_file(p)]
        if missing:
            raise DataError(f"{len(missing)} file(s) of {manifest.path} are missing or "
                            f"unreachable (e.g. {missing[0]}).",
                            "restore them, or prepare the dataset again")
        self.rel_paths = [r.path for r in rows]
        self.targets = [index[r.label] for r in rows]
        self.sha256 = [r.sha256 for r in rows]
        self.spec, self.transform, self.cache = spec, transform, cache
        self.draft_size = decode_size(spec, augment)
        self.manifest_path = manifest.path

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Any:
        """The decoded PIL image of item ``i`` (from the cache when there is one).

        Raises:
            ImageError: The file cannot be decoded (prepare normally excludes these).
        """
        if self.cache is not None:
            data = read_image_bytes(self.paths[i])
            digest = content_digest(data)
            if (self.sha256[i] and digest != self.sha256[i]
                    and self.manifest_path not in _WARNED_CHANGED):
                _WARNED_CHANGED.add(self.manifest_path)
                logger.warning("%s changed since the manifest %s was prepared (its SHA-256 "
                               "differs); its current pixels are used. Prepare the dataset "
                               "again if images were replaced.", self.rel_paths[i],
                               self.manifest_path)
            return load_cached(self.paths[i], self.faces[i], self.crop, self.spec,
                               self.draft_size, self.cache, data=data, digest=digest)
        return load_cached(self.paths[i], self.faces[i], self.crop, self.spec, self.draft_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(i)), self.targets[i]


def load_cached(path: Path, face: dict[str, Any] | None, crop: Any, spec: InputSpec,
                draft_size: int, cache: ImageCache | None = None, *, data: bytes | None = None,
                digest: str | None = None) -> Any:
    """Decode ``path`` as a training or evaluation item: cropped to ``face`` with ``crop``
    (:func:`load_face_crop`, whole image when ``face`` is ``None``), or whole with a JPEG
    draft of ``draft_size`` pixels when ``crop`` is ``None``; from ``cache`` when it holds
    the item (keyed by the bytes' digest and these settings), else decoded and kept there.

    Args:
        path: The file.
        face: Its face dict (manifest or detector), or ``None``.
        crop: A :class:`babyemo.faces.CropSpec`, or ``None`` for whole images.
        spec: The input spec (channels).
        draft_size: Decode size in pixels (see :func:`decode_size`).
        cache: The image cache, or ``None``.
        data: The file's bytes when already read; ``digest`` their
            :func:`~babyemo.data.loading.image_cache.content_digest`.

    Returns:
        A PIL image.

    Raises:
        ImageError: The file cannot be decoded.
    """
    key = None
    if cache is not None:
        if data is None:
            data = read_image_bytes(path)
        key = cache_key(digest or content_digest(data), size=draft_size,
                        mode="RGB" if spec.channels == 3 else "L", crop=crop,
                        face=face if crop is not None else None)
        img = cache.get(key)
        if img is not None:
            return img
    if crop is not None:
        img = load_face_crop(path, face, crop, spec, draft_size, data=data)
    else:
        img = load_image(path, spec.channels, draft_size, data=data)
    if key is not None:
        cache.put(key, img)
    return img


def load_face_crop(path: Path, face: dict[str, Any] | None, crop: Any,
                   spec: InputSpec, size: int, data: bytes | None = None) -> Any:
    """Decode ``path`` at full resolution and crop it to ``face`` (whole image if ``None``).

    Boxes are in pixels of the full-resolution upright image, so no JPEG draft is used.
    The crop is ``size`` pixels square (see :func:`decode_size`), in the spec's channels.
    ``data``: the file's bytes, already read (decoded instead of the file).

    Raises:
        ImageError: The file cannot be decoded.
    """
    from babyemo.faces import Face, crop_face

    img = load_image(path, 3, data=data)
    if face is not None:
        img = crop_face(img, Face.from_dict(face), crop, out_size=size)
    return img if spec.channels == 3 else img.convert("L")


@dataclass(frozen=True)
class FaceDetection:
    """How prediction finds faces.

    Attributes:
        detector: Face-detector registry name (e.g. ``"yunet"``).
        crop: The :class:`babyemo.faces.CropSpec` to crop with (as in training).
        fallback: A :class:`~babyemo.config.NoFaceFallback` value: ``"whole_image"``
            (default): a photo without a face is classified whole; ``"error"``: it is a
            row with ``error=no_face`` (``"full"``: old name of ``"whole_image"``).
        keep_crops: Also return the crops as PIL images (for ``--save-crops``).
        options: Keyword options of the detector
            (:func:`babyemo.faces.get_detector`), e.g. ``{"second_pass": False}`` for
            video frames.
    """

    detector: str
    crop: Any
    fallback: str = NoFaceFallback.whole_image.value
    keep_crops: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class FaceEntry:
    """One region of a photo to classify: a face, or the whole image.

    Attributes:
        image: The model input, ``(C, S, S) uint8`` (``None`` once collated).
        face: The detected face (:class:`babyemo.faces.Face`, boxes in pixels of the
            upright image), a whole-image box when classified whole after no face was
            found, or ``None`` without face detection.
        face_index: Index of the face in the photo (0 = highest score), ``None`` for a
            whole image.
        crop: The face crop as a PIL image when crops are kept (``--save-crops``).
    """

    image: torch.Tensor | None
    face: Any = None
    face_index: int | None = None
    crop: Any = None


@dataclass
class FileItem:
    """What :class:`FileDataset` gives for one file.

    Attributes:
        path: The file.
        entries: One :class:`FaceEntry` per region to classify (empty on error).
        error: ``None``, or a :class:`~babyemo.data.loading.file_errors.FileErrorCode` value.
        error_detail: The human reason with an ``error``.
        size: ``(width, height)`` in pixels of the decoded image, or ``None``.
        detect_seconds: Time spent in face detection for this file, in seconds.
    """

    path: Path
    entries: list[FaceEntry] = field(default_factory=list)
    error: str | None = None
    error_detail: str | None = None
    size: tuple[int, int] | None = None
    detect_seconds: float = 0.0


@dataclass
class FileBatch:
    """A batch of :class:`FileItem` (see :func:`collate_files`).

    Attributes:
        items: The items, their entries' images taken out (``None``).
        images: ``(M, C, S, S) uint8``: every entry of every item, in order; ``None`` when
            no item has an entry.
    """

    items: list[FileItem]
    images: torch.Tensor | None


class FileDataset(Dataset):
    """Unlabelled image files for prediction; a bad file yields an error, not an exception.

    Without ``faces`` each file gives one entry (the whole image); with ``faces`` each file
    gives one entry per detected face (:class:`FileItem`, :class:`FaceEntry`). Use
    :func:`collate_files` as the DataLoader ``collate_fn``.
    """

    def __init__(self, paths: Sequence[Path], spec: InputSpec, transform: Transform,
                 faces: FaceDetection | None = None) -> None:
        self.paths, self.spec, self.transform, self.faces = list(paths), spec, transform, faces

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> FileItem:
        path = self.paths[i]
        item = FileItem(path)
        try:
            if self.faces is None:
                img = load_image(path, self.spec.channels, decode_size(self.spec))
            else:
                img = load_image(path, 3)
        except ImageError as e:
            item.error = e.code or FileErrorCode.UNREADABLE.value
            item.error_detail = e.message.replace(f"{path}: ", "", 1).removesuffix(".")
            return item
        return add_regions(item, img, self.spec, self.transform, self.faces)


def add_regions(item: FileItem, img: Any, spec: InputSpec, transform: Transform,
                faces: FaceDetection | None) -> FileItem:
    """Put the regions of a decoded image to classify into ``item``: the whole image
    without ``faces``; else one entry per face found, or, when none is found, the whole
    image or a ``no_face`` error (``faces.fallback``). Shared by photo files
    (:class:`FileDataset`) and video frames.

    Args:
        item: The item to fill (its ``size``, ``entries``, ``error``, ``detect_seconds``).
        img: The decoded, upright PIL image (RGB with ``faces``).
        spec: The model input.
        transform: PIL image -> ``(C, S, S) uint8`` model input.
        faces: How faces are found, or ``None``.

    Returns:
        ``item``.
    """
    import time

    from babyemo.faces import Face, crop_face, get_detector

    item.size = img.size
    if faces is None:
        item.entries.append(FaceEntry(transform(img)))
        return item
    t0 = time.perf_counter()
    found = get_detector(faces.detector, **faces.options).detect(img)
    item.detect_seconds = time.perf_counter() - t0
    if not found:
        if NoFaceFallback(faces.fallback) is NoFaceFallback.error:
            item.error = FileErrorCode.NO_FACE.value
            item.error_detail = f"no face found (face detector {faces.detector})"
            return item
        whole = Face(box=(0.0, 0.0, float(img.width), float(img.height)), score=float("nan"),
                     landmarks=())
        found, indices = [whole], [None]
    else:
        indices = list(range(len(found)))
    for face, k in zip(found, indices, strict=True):
        crop = (crop_face(img, face, faces.crop, out_size=decode_size(spec))
                if k is not None else img)
        model_img = crop if spec.channels == 3 else crop.convert("L")
        item.entries.append(FaceEntry(transform(model_img), face, k,
                                      crop if faces.keep_crops and k is not None else None))
    return item


def collate_files(items: list[FileItem]) -> FileBatch:
    """Batch :class:`FileDataset` items: their entries' images stacked in order (and taken
    out of the entries)."""
    tensors = []
    for item in items:
        for entry in item.entries:
            tensors.append(entry.image)
            entry.image = None
    return FileBatch(items, torch.stack(tensors) if tensors else None)
