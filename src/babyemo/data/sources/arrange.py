"""Arrange an extracted catalogue download into a babyemo dataset folder.

Some catalogue archives need rearranging (``infant-emotions`` keeps its labels in a JSON
file; ``fer2013`` nests ``data/train`` and ``data/test``); any other download is used from
the first folder that holds split or class folders.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from babyemo.data.loading.folders import SPLIT_ALIASES, visible_subdirs
from babyemo.data.loading.images import is_candidate
from babyemo.data.sources.catalog import DatasetEntry
from babyemo.errors import DownloadError

logger = logging.getLogger(__name__)


def find_dataset_root(folder: Path) -> Path:
    """Descend through single wrapper folders until split or class folders appear.

    Returns:
        The first folder below (or equal to) ``folder`` that has a split folder, images,
        or more or fewer than one visible sub-folder.
    """
    current = folder
    while True:
        subdirs = visible_subdirs(current)
        if any(d.name.lower() in SPLIT_ALIASES for d in subdirs):
            return current
        has_images = any(f.is_file() and is_candidate(f) for f in current.iterdir())
        if len(subdirs) == 1 and not has_images:
            current = subdirs[0]
            continue
        return current


def _find_in_archive(extracted: Path, relative: str) -> Path:
    """``relative`` at the top of the archive or inside its single top-level folder."""
    for base in [extracted, *visible_subdirs(extracted)]:
        if (base / relative).exists():
            return base / relative
    raise DownloadError(f"The archive has no {relative} (its layout changed?).",
                        "download it by hand and pass a folder of class folders with --source")


def count_images(folder: Path) -> int:
    """Number of visible files with an image suffix anywhere below ``folder``."""
    return sum(1 for p in folder.rglob("*") if p.is_file() and is_candidate(p))


def _layout_infant_emotions(entry: DatasetEntry, extracted: Path, out: Path) -> None:
    """``data/baby_emotion_samples/`` + JSON labels -> ``out/<class>/<image>``."""
    labels_file = _find_in_archive(extracted, "data/baby_emotion_samples.json")
    images_dir = labels_file.parent / "baby_emotion_samples"
    try:
        rows = json.loads(labels_file.read_text(encoding="utf-8"))["labels"]
        if not isinstance(rows, list):
            raise TypeError("'labels' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DownloadError(f"Cannot read the labels file {labels_file.name}: {e!r}.",
                            "the archive layout changed; use --source with class folders") from e
    classes = entry.classes
    for cls in classes:
        (out / cls).mkdir(parents=True, exist_ok=True)
    placed: dict[str, str] = {}
    counts: Counter[str] = Counter()
    missing: list[str] = []
    bad_rows = conflicts = 0
    for row in rows:
        ok = (isinstance(row, (list, tuple)) and len(row) == 2 and isinstance(row[0], str)
              and isinstance(row[1], int) and not isinstance(row[1], bool)
              and 0 <= row[1] < len(classes))
        file_name = PurePosixPath(row[0].replace("\\", "/")).name if ok else ""
        if not file_name or file_name in (".", ".."):
            bad_rows += 1
            continue
        cls = classes[row[1]]
        if file_name in placed:
            if placed[file_name] != cls:
                conflicts += 1
                logger.warning("%s is listed as %s and as %s; kept as %s",
                               file_name, placed[file_name], cls, placed[file_name])
            continue
        source = images_dir / file_name
        if not source.is_file():
            missing.append(file_name)
            continue
        os.replace(source, out / cls / file_name)
        placed[file_name] = cls
        counts[cls] += 1
    unlisted = sorted(p.name for p in images_dir.iterdir() if p.is_file() and is_candidate(p)) \
        if images_dir.is_dir() else []
    if missing:
        logger.warning("%d images listed in %s are missing from the archive, e.g. %s",
                       len(missing), labels_file.name, ", ".join(missing[:3]))
    if unlisted:
        logger.warning("%d images in the archive are not in %s and were left out, e.g. %s",
                       len(unlisted), labels_file.name, ", ".join(unlisted[:3]))
    if bad_rows:
        logger.warning("%d malformed rows in %s were skipped", bad_rows, labels_file.name)
    if not counts:
        raise DownloadError(f"No labelled images found in the {entry.name} archive.",
                            "the archive layout changed; use --source with class folders")
    logger.info("%s: %d images (%s); %d listed but missing, %d unlisted, %d conflicting",
                entry.name, sum(counts.values()),
                ", ".join(f"{c} {counts[c]}" for c in classes),
                len(missing), len(unlisted), conflicts)


def _layout_fer2013(entry: DatasetEntry, extracted: Path, out: Path) -> None:
    """``data/train`` and ``data/test`` of the archive -> ``out/train``, ``out/test``."""
    data = _find_in_archive(extracted, "data")
    train, test = data / "train", data / "test"
    if not (train.is_dir() and test.is_dir()):
        raise DownloadError(f"The {entry.name} archive has no data/train and data/test.",
                            "the archive layout changed; use --source with train/ and test/")
    out.mkdir(parents=True, exist_ok=True)
    os.replace(train, out / "train")
    os.replace(test, out / "test")
    found = tuple(d.name for d in visible_subdirs(out / "train"))
    if set(found) != set(entry.classes):
        logger.warning("%s: expected classes %s, found %s", entry.name, entry.classes, found)
    logger.info("%s: %d train and %d test images", entry.name,
                count_images(out / "train"), count_images(out / "test"))


def _layout_generic(entry: DatasetEntry, extracted: Path, out: Path) -> None:
    os.replace(find_dataset_root(extracted), out)


_LAYOUTS: dict[str, Callable[[DatasetEntry, Path, Path], None]] = {
    "infant-emotions": _layout_infant_emotions,
    "fer2013": _layout_fer2013,
}


def arrange(entry: DatasetEntry, extracted: Path, out: Path) -> None:
    """Move the dataset ``entry`` out of the folder ``extracted`` into the new folder ``out``.

    Args:
        entry: The catalogue entry; its name picks the rearrangement and its classes are
            the label order (``infant-emotions``) or the expected class folders (``fer2013``).
        extracted: The extracted archive (its files are moved, not copied).
        out: Folder to create, laid out as a babyemo dataset (class folders, or split
            folders of class folders).

    Raises:
        DownloadError: The archive's layout is not the expected one.
    """
    _LAYOUTS.get(entry.name, _layout_generic)(entry, extracted, out)


__all__ = ["arrange", "count_images", "find_dataset_root"]
