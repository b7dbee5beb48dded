"""Scan a dataset folder: find its layout and read every image once.

The layout is class folders (``<class>/<image>``) or split folders (``train/``, ``val/``
or ``validation/``, ``test/``) of class folders. Every image is read once: SHA-256 of the
bytes (exact duplicates), Pillow header (true size, format, mode) and a small grayscale
decode (JPEG ``draft``) for the difference hash (near duplicates) and the pixel spread
(near-blank images). Whatever is not a readable image is counted, with its reason.
Nothing is written.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat

from babyemo.data.inspection.hashing import dhash
from babyemo.data.loading.folders import (
    SPLIT_ALIASES,
    entry_problem,
    is_hidden,
    is_utf8,
    os_error_reason,
    printable_name,
    visible_subdirs,
)
from babyemo.data.loading.images import IMAGE_SUFFIXES, load_image
from babyemo.data.preparation.manifest import SPLITS
from babyemo.errors import DataError, ImageError
from babyemo.progress import progress_bar

logger = logging.getLogger(__name__)

HASH_DECODE_SIZE = 64
"""JPEGs are decoded at >= this many pixels per side (Pillow ``draft``) for the hash."""

PARALLEL_MIN_FILES = 1000
"""Folders with at least this many image files are read by several processes."""

MAX_SKIPPED_FILES = 1000
"""At most this many skipped files are listed (with reasons) in ``dataset.json``."""

_LAYOUT_HINT = ("expected <folder>/<class>/<image>, or <folder>/train|val|test/<class>/<image>")


@dataclass
class ImageRecord:
    """What one scan learns about one readable image.

    Attributes:
        path: Relative POSIX path under the dataset root.
        label: Class folder name.
        split: Split given by the folder layout (``"train"``/``"val"``/``"test"``) or
            ``None`` in an ImageFolder layout.
        sha256: Hex SHA-256 of the file's bytes.
        width: Width in pixels as stored (before EXIF rotation).
        height: Height in pixels as stored.
        format: Format sniffed by Pillow, e.g. ``"JPEG"``.
        mode: Pillow mode of the file, e.g. ``"RGB"``, ``"L"``, ``"P"``.
        dhash: 64-bit difference hash (:func:`babyemo.data.inspection.hashing.dhash`).
        std: Standard deviation of the grayscale pixels (0-255) at hash decode size.
    """

    path: str
    label: str
    split: str | None
    sha256: str
    width: int
    height: int
    format: str
    mode: str
    dhash: int
    std: float


@dataclass
class ScanResult:
    """A dataset folder as scanned (nothing written).

    Attributes:
        root: Absolute dataset root.
        layout: ``"imagefolder"`` (class folders) or ``"splits"`` (train/val/test folders).
        given_splits: Splits present as folders (empty for ``"imagefolder"``).
        images: Readable images, sorted by path.
        class_names: Sorted class folder names that hold at least one readable image.
        skipped: Category → number of files (or hidden entries) skipped. Categories:
            ``hidden``, ``not_image``, ``unreadable``, ``outside_class_folder``,
            ``outside_root`` (symlink leaving the root), ``not_a_file``, ``unsupported_name``.
        skipped_files: ``{"path", "reason", "category"}`` of skipped files (not hidden
            ones), capped at :data:`MAX_SKIPPED_FILES`.
        ignored_folders: Top-level folders that are neither splits nor used.
        empty_class_folders: Class folders (relative paths) without any readable image;
            their name is not a class unless another split has images of it.
    """

    root: Path
    layout: str
    given_splits: list[str]
    images: list[ImageRecord]
    class_names: list[str]
    skipped: dict[str, int]
    skipped_files: list[dict[str, str]]
    ignored_folders: list[str] = field(default_factory=list)
    empty_class_folders: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """Problems of the folder worth telling the user (empty class folders)."""
        return [f"class folder '{rel}' has no readable image (its files, if any, are "
                "listed as skipped)" for rel in self.empty_class_folders]


def _visible_subdirs(folder: Path) -> list[Path]:
    try:
        return visible_subdirs(folder)
    except OSError as e:
        raise DataError(f"Cannot list {folder} ({e}).") from e


def _layout(root: Path) -> tuple[str, list[tuple[str | None, Path]], list[str]]:
    """Split folders of ``root``: ``(layout, [(split or None, folder)], ignored)``."""
    subdirs = _visible_subdirs(root)
    splits: dict[str, Path] = {}
    for d in subdirs:
        split = SPLIT_ALIASES.get(d.name.lower())
        if split is None:
            continue
        if split in splits:
            raise DataError(f"{root} has both {splits[split].name}/ and {d.name}/.",
                            "keep one validation folder (val/ or validation/)")
        splits[split] = d
    if not splits:
        return "imagefolder", [(None, root)], []
    if "train" not in splits:
        raise DataError(f"{root} has {'/'.join(sorted(p.name for p in splits.values()))} "
                        "folders but no train/ folder.", _LAYOUT_HINT)
    used = set(splits.values())
    ignored = [d.name for d in subdirs if d not in used]
    if ignored:
        logger.warning("Ignoring folders beside the split folders in %s: %s", root,
                       ", ".join(ignored))
    ordered = [(s, splits[s]) for s in SPLITS if s in splits]
    return "splits", ordered, ignored


class _Walker:
    """Collects candidate image files and skip counts below the class folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.skipped: Counter[str] = Counter()
        self.skipped_files: list[dict[str, str]] = []
        self.files: list[tuple[str, str, str | None, str]] = []  # rel, label, split, abs
        self._seen_dirs: set[str] = set()

    def skip(self, rel: str, category: str, reason: str | None = None) -> None:
        self.skipped[category] += 1
        if category != "hidden" and len(self.skipped_files) < MAX_SKIPPED_FILES:
            self.skipped_files.append({"path": printable_name(rel),
                                       "reason": reason or category, "category": category})

    def inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def walk(self, folder: str, rel: str, label: str, split: str | None) -> None:
        real = os.path.realpath(folder)
        if real in self._seen_dirs:  # a symlink loop
            return
        self._seen_dirs.add(real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self.skip(rel, "unreadable", f"cannot list folder ({os_error_reason(e)})")
            return
        for entry in entries:
            child = f"{rel}/{entry.name}"
            try:
                self._classify(entry, child, label, split)
            except OSError as e:  # a symlink loop, or the entry vanished or is unreadable
                self.skip(child, "not_a_file", os_error_reason(e))

    def _classify(self, entry: os.DirEntry[str], child: str, label: str,
                  split: str | None) -> None:
        """Queue ``entry`` (an image file), walk it (a folder) or skip it with a reason.

        Raises:
            OSError: ``entry`` cannot be examined (symlink loop, vanished, no permission).
        """
        if is_hidden(entry.name):
            self.skip(child, "hidden")
        elif ("\\" in entry.name or "\n" in entry.name or "\r" in entry.name
              or entry.name != entry.name.strip()):
            self.skip(child, "unsupported_name",
                      "name has a backslash, a newline or leading/trailing spaces")
        elif not is_utf8(child):
            self.skip(child, "unsupported_name", "file or folder name is not valid UTF-8")
        elif entry.is_symlink() and not self.inside(entry.path):
            self.skip(child, "outside_root", "symlink to a place outside the dataset")
        elif entry.is_dir():
            self.walk(entry.path, child, label, split)
        elif not entry.is_file():
            self.skip(child, "not_a_file", entry_problem(entry.path) or "not a regular file")
        elif os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
            self.skip(child, "not_image", "file name does not end like an image")
        else:
            self.files.append((child, label, split, entry.path))


def probe_image(path: str | os.PathLike[str]) -> tuple[str, int, int, str, str, int, float]:
    """Read one image file once for the manifest.

    Returns:
        ``(sha256, width, height, format, mode, dhash, std)``: hex SHA-256 of the bytes,
        stored size and format/mode from the header, the 64-bit difference hash and the
        grayscale pixel standard deviation, both from a decode at about
        :data:`HASH_DECODE_SIZE` pixels (JPEG draft).

    Raises:
        ImageError: Missing, unreadable or undecodable file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: {os_error_reason(e)}.") from e
    sha = hashlib.sha256(data).hexdigest()
    gray = load_image(path, channels=1, draft_size=HASH_DECODE_SIZE)
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
            fmt, mode = str(header.format), str(header.mode)
    except Exception as e:  # the file changed between the two reads
        raise ImageError(f"{path}: cannot read the image header ({e}).") from e
    std = float(ImageStat.Stat(gray).stddev[0])
    return sha, int(width), int(height), fmt, mode, dhash(gray), std


def _probe_or_reason(path: str) -> tuple[str, int, int, str, str, int, float] | str:
    """:func:`probe_image`, with a failure returned as its reason (for worker processes)."""
    try:
        return probe_image(path)
    except ImageError as e:
        return _reason(e, path)


def _default_workers(n_files: int) -> int:
    """Worker processes for probing: one per CPU core (at most 8) for >= 1,000 files.

    Only where ``fork`` exists (Linux and other POSIX except macOS, whose default
    ``spawn`` would re-run an unguarded user script); elsewhere images are read in-process.
    """
    import multiprocessing
    import sys

    if n_files < PARALLEL_MIN_FILES or sys.platform in ("darwin", "win32"):
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def _probe_all(files: list[str], workers: int | None, task: Any) -> list[Any]:
    """Probe every file, in order; in ``workers`` forked processes when > 1."""
    workers = _default_workers(len(files)) if workers is None else workers
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        try:
            ctx = multiprocessing.get_context("fork")
            results = []
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                for result in pool.map(_probe_or_reason, files, chunksize=128):
                    results.append(result)
                    task.advance()
            return results
        except BrokenProcessPool as e:
            raise DataError(f"A process reading images died ({e}).",
                            "out of memory, or an image crashes the decoder; "
                            "inspect the folder in smaller parts") from e
        except (OSError, ValueError) as e:  # no fork or no semaphores: read in-process
            logger.info("Reading images in one process (%s)", e)
            task.update(completed=0)
    results = []
    for path in files:
        results.append(_probe_or_reason(path))
        task.advance()
    return results


def _reason(error: ImageError, path: str) -> str:
    message = error.message
    return message[len(path) + 2:] if message.startswith(f"{path}: ") else message


def scan_folder(folder: str | os.PathLike[str], *, workers: int | None = None) -> ScanResult:
    """Scan a dataset folder: find the layout, read every image once, count what is skipped.

    Layouts: class folders (``<class>/<image>``, images may sit in sub-folders of a class
    folder), or split folders ``train/``, ``val/`` or ``validation/``, ``test/`` each holding
    class folders.

    Args:
        folder: The dataset folder.
        workers: Processes reading images (default: one per CPU core for >= 1,000
            files where ``fork`` is available, else 1).

    Returns:
        The :class:`ScanResult` (nothing is written).

    Raises:
        DataError: Missing folder, no class folders, no readable images, or one class only.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"Dataset folder not found: {folder}.",
                        "give a folder of class folders, an archive, a URL or a catalogue "
                        "name (`babyemo data download --list`)")
    root = folder.resolve()
    layout, split_dirs, ignored = _layout(root)
    walker = _Walker(root)
    class_dirs: list[tuple[str, str, str | None]] = []  # (rel, label, split)
    for split, split_dir in split_dirs:
        prefix = split_dir.relative_to(root).as_posix()
        if not walker.inside(str(split_dir)):
            raise DataError(f"{split_dir} is a link to a folder outside {root}.",
                            "prepare the linked folder itself, or copy it inside the dataset")
        classes = 0
        try:
            entries = sorted(split_dir.iterdir(), key=lambda p: p.name)
        except OSError as e:
            raise DataError(f"Cannot list {split_dir} ({os_error_reason(e)}).",
                            "check that the folder exists and is readable") from e
        for entry in entries:
            rel = entry.name if prefix == "." else f"{prefix}/{entry.name}"
            if is_hidden(entry.name):
                walker.skip(rel, "hidden")
            elif not is_utf8(entry.name):
                walker.skip(rel, "unsupported_name", "folder or file name is not valid UTF-8")
            elif entry.is_symlink() and not walker.inside(str(entry)):
                walker.skip(rel, "outside_root", "symlink to a folder outside the dataset")
            elif entry.is_dir():
                classes += 1
                class_dirs.append((rel, entry.name, split))
                walker.walk(str(entry), rel, entry.name, split)
            elif entry.is_file():
                walker.skip(rel, "outside_class_folder", "not inside a class folder")
            else:
                walker.skip(rel, "not_a_file", entry_problem(entry) or "not a regular file")
        if classes == 0:
            where = split_dir if split is None else f"{split_dir} ({split} split)"
            raise DataError(f"{where} has no class folders.", _LAYOUT_HINT)
    images: list[ImageRecord] = []
    with progress_bar("Reading images", total=len(walker.files), unit="img") as task:
        results = _probe_all([f[3] for f in walker.files], workers, task)
    for (rel, label, split, _), result in zip(walker.files, results, strict=True):
        if isinstance(result, str):
            walker.skip(rel, "unreadable", result)
        else:
            images.append(ImageRecord(rel, label, split, *result))
    class_names = sorted({im.label for im in images})
    found = {(im.split, im.label) for im in images}
    empty = [rel for rel, label, split in class_dirs if (split, label) not in found]
    if not images:
        raise DataError(f"No readable images in {root} ({len(walker.files)} candidate "
                        f"file(s), skipped: {dict(walker.skipped) or 'none'}).", _LAYOUT_HINT)
    if len(class_names) < 2:
        raise DataError(f"{root} has one class only ({class_names[0]!r}); classification "
                        "needs at least two class folders.", _LAYOUT_HINT)
    given = [s for s, _ in split_dirs if s is not None]
    logger.info("Scanned %s: %d images, %d classes, skipped %s", root, len(images),
                len(class_names), dict(walker.skipped) or "none")
    return ScanResult(root=root, layout=layout, given_splits=given, images=images,
                      class_names=class_names, skipped=dict(walker.skipped),
                      skipped_files=walker.skipped_files, ignored_folders=ignored,
                      empty_class_folders=empty)


__all__ = ["HASH_DECODE_SIZE", "ImageRecord", "ScanResult", "probe_image", "scan_folder"]
