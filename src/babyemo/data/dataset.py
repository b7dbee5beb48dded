"""torch Datasets over a manifest split, and over a list of unlabelled image files.

Both decode with :func:`babyemo.data.images.load_image` at the same draft size
(:func:`decode_size`), so training, evaluation and prediction see identical pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from babyemo.config import InputSpec
from babyemo.data.images import IMAGE_SUFFIXES, load_image
from babyemo.data.manifest import Manifest
from babyemo.errors import DataError, ImageError

Transform = Callable[[Any], torch.Tensor]


def decode_size(spec: InputSpec) -> int:
    """Smallest side (pixels) JPEGs are decoded at: twice the model input.

    Pillow's JPEG ``draft`` decodes at 1/2, 1/4 or 1/8 scale, several times faster than a
    full decode, while keeping at least this many pixels for resizing and augmentation.
    """
    return 2 * spec.size


class ManifestDataset(Dataset):
    """Labelled images of one manifest split.

    Items are ``(image, label)`` with ``image`` a ``(C, S, S) float32`` tensor from
    ``transform`` and ``label`` the int index of the row's label in ``class_names``.

    Args:
        manifest: The prepared dataset.
        split: ``"train"``, ``"val"`` or ``"test"`` (``None``: every row).
        class_names: Logit order; every label of the split must be in it.
        spec: Input spec (channels and decode size).
        transform: PIL image → tensor.
        cache: Keep decoded images in memory after the first epoch (no JPEG decoding
            afterwards). Each DataLoader worker holds its own cache.

    Raises:
        DataError: The split is empty or has a label not in ``class_names``.
    """

    def __init__(self, manifest: Manifest, split: str | None, class_names: Sequence[str],
                 spec: InputSpec, transform: Transform, cache: bool = False) -> None:
        rows = manifest.rows if split is None else manifest.rows_for(split)
        if not rows:
            raise DataError(f"The manifest {manifest.path} has no '{split}' rows.",
                            "re-split it with `babyemo data split`")
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({r.label for r in rows} - index.keys())
        if unknown:
            raise DataError(
                f"Labels {unknown} of the '{split}' split are not among the model's "
                f"class names {list(class_names)}.",
                "evaluate on data with the same classes, or map the labels",
            )
        self.paths = [manifest.resolve(r) for r in rows]
        self.rel_paths = [r.path for r in rows]
        self.targets = [index[r.label] for r in rows]
        self.spec, self.transform = spec, transform
        self._cache: dict[int, Any] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Any:
        """The decoded PIL image of item ``i`` (from the cache when enabled).

        Raises:
            ImageError: The file cannot be decoded (prepare normally excludes these).
        """
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = load_image(self.paths[i], self.spec.channels, decode_size(self.spec))
        if self._cache is not None:
            self._cache[i] = img
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(i)), self.targets[i]


def find_images(inputs: Iterable[str | os.PathLike[str]], recursive: bool = True
                ) -> tuple[list[Path], int]:
    """Expand files and folders into a sorted list of files to predict on.

    Files named directly are always kept. Inside folders every visible regular file is
    kept (non-images become error rows later, never silently dropped); hidden files and
    folders (name starting with ``.``) are skipped and counted.

    Returns:
        ``(files, n_hidden_skipped)``.

    Raises:
        DataError: An input path does not exist.
    """
    files: list[Path] = []
    hidden = 0
    for item in inputs:
        path = Path(item)
        if path.is_file():
            files.append(path)
            continue
        if not path.is_dir():
            raise DataError(f"No such file or folder: {path}", "check the path")
        walker = os.walk(path, followlinks=False) if recursive else [
            (str(path), [], [p.name for p in path.iterdir()])]
        for dirpath, dirnames, filenames in walker:
            hidden += sum(d.startswith(".") for d in dirnames)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    hidden += 1
                    continue
                candidate = Path(dirpath) / name
                if candidate.is_file() or candidate.is_symlink():
                    files.append(candidate)
    return files, hidden


class FileDataset(Dataset):
    """Unlabelled image files for prediction; a bad file yields an error, not an exception.

    Items are dicts ``{"index": int, "image": (C, S, S) float32 tensor or None,
    "error": str or None}``; use :func:`collate_files` as the DataLoader ``collate_fn``.
    """

    def __init__(self, paths: Sequence[Path], spec: InputSpec, transform: Transform) -> None:
        self.paths, self.spec, self.transform = list(paths), spec, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.paths[i]
        if path.suffix.lower() not in IMAGE_SUFFIXES and not _looks_like_image(path):
            return {"index": i, "image": None, "error": "not an image file"}
        try:
            img = load_image(path, self.spec.channels, decode_size(self.spec))
            return {"index": i, "image": self.transform(img), "error": None}
        except ImageError as e:
            return {"index": i, "image": None, "error": e.message.replace(f"{path}: ", "", 1)}


def _looks_like_image(path: Path) -> bool:
    try:
        from babyemo.data.images import sniff_format

        sniff_format(path)
        return True
    except ImageError:
        return False


def collate_files(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`FileDataset` items.

    Returns:
        ``{"indices": list[int], "images": (M, C, S, S) float32 tensor or None,
        "ok": list[int] (indices with an image, in ``images`` order),
        "errors": dict[int, str]}``.
    """
    ok = [it for it in items if it["image"] is not None]
    return {
        "indices": [it["index"] for it in items],
        "images": torch.stack([it["image"] for it in ok]) if ok else None,
        "ok": [it["index"] for it in ok],
        "errors": {it["index"]: it["error"] for it in items if it["image"] is None},
    }
