"""Prepare a dataset: scan its images once, group duplicates, split, write the manifest.

``prepare`` turns a catalogue name, a folder, an archive or a URL into
``<out>/manifest.csv`` + ``dataset.json`` (see :mod:`babyemo.data.manifest`). Every image
is read once: SHA-256 of the bytes (exact duplicates), Pillow header (true size, format,
mode) and a small grayscale decode (JPEG ``draft``) for the difference hash (near
duplicates) and the pixel spread (near-blank images). Splits are seeded, stratified by
label and duplicate-aware: exact duplicates, near-duplicates and (with a metadata CSV)
images of one subject always land in the same split.

No torch here; scikit-learn is imported only when a split is made.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageStat

from babyemo import paths
from babyemo.data.hashing import (
    NEAR_BLANK_STD,
    component_ids,
    dhash,
    exact_duplicate_groups,
    format_hash,
    near_duplicates,
)
from babyemo.data.images import IMAGE_SUFFIXES, load_image
from babyemo.data.manifest import (
    METADATA_FILE,
    SPLITS,
    Manifest,
    ManifestRow,
    new_info,
    now_iso,
    read_manifest,
    write_manifest,
)
from babyemo.errors import ConfigError, DataError, ImageError
from babyemo.io import atomic_write_bytes, atomic_write_text
from babyemo.progress import progress_bar

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "infant-emotions"
"""The dataset ``prepare()`` uses when no source is given."""

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
"""Default train/val/test fractions."""

SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
"""Folder names (case-insensitive) recognised as splits, and the split each one means."""

ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")

HASH_DECODE_SIZE = 64
"""JPEGs are decoded at >= this many pixels per side (Pillow ``draft``) for the hash."""

PARALLEL_MIN_FILES = 1000
"""Folders with at least this many image files are read by several processes."""

MAX_SKIPPED_FILES = 1000
"""At most this many skipped files are listed (with reasons) in ``dataset.json``."""

METADATA_COLUMNS = ("age_months", "sex", "skin_tone", "ethnicity", "source", "subject_id")
"""Documented metadata columns (besides the required ``path``); other columns are kept."""

_PREPARE_HINT = "run `babyemo data prepare` first"
_LAYOUT_HINT = ("expected <folder>/<class>/<image>, or <folder>/train|val|test/<class>/<image>")


# --------------------------------------------------------------------------- scanning


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
        dhash: 64-bit difference hash (:func:`babyemo.data.hashing.dhash`).
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
    """

    root: Path
    layout: str
    given_splits: list[str]
    images: list[ImageRecord]
    class_names: list[str]
    skipped: dict[str, int]
    skipped_files: list[dict[str, str]]
    ignored_folders: list[str] = field(default_factory=list)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _visible_subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name))
    except OSError as e:
        raise DataError(f"Cannot list {folder} ({e}).") from e


def _single_top_folder(folder: Path) -> Path:
    """The only entry of ``folder`` when it is a folder (archives often wrap everything)."""
    entries = [p for p in folder.iterdir() if not _hidden(p.name)]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


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
            self.skipped_files.append({"path": rel, "reason": reason or category,
                                       "category": category})

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
            self.skip(rel, "unreadable", f"cannot list folder ({e.strerror or e})")
            return
        for entry in entries:
            child = f"{rel}/{entry.name}"
            if _hidden(entry.name):
                self.skip(child, "hidden")
            elif "\\" in entry.name or "\n" in entry.name or "\r" in entry.name:
                self.skip(child, "unsupported_name", "file name has a backslash or newline")
            elif entry.is_symlink() and not self.inside(entry.path):
                self.skip(child, "outside_root", "symlink to a place outside the dataset")
            elif entry.is_dir():
                self.walk(entry.path, child, label, split)
            elif not entry.is_file():
                self.skip(child, "not_a_file", "not a regular file (broken link?)")
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
        raise ImageError(f"{path}: cannot read file ({e.strerror or e}).") from e
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
    for split, split_dir in split_dirs:
        prefix = split_dir.relative_to(root).as_posix()
        if not walker.inside(str(split_dir)):
            raise DataError(f"{split_dir} is a link to a folder outside {root}.",
                            "prepare the linked folder itself, or copy it inside the dataset")
        classes = 0
        for entry in sorted(split_dir.iterdir(), key=lambda p: p.name):
            rel = entry.name if prefix == "." else f"{prefix}/{entry.name}"
            if _hidden(entry.name):
                walker.skip(rel, "hidden")
            elif entry.is_symlink() and not walker.inside(str(entry)):
                walker.skip(rel, "outside_root", "symlink to a folder outside the dataset")
            elif entry.is_dir():
                classes += 1
                walker.walk(str(entry), rel, entry.name, split)
            elif entry.is_file():
                walker.skip(rel, "outside_class_folder", "not inside a class folder")
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
                      skipped_files=walker.skipped_files, ignored_folders=ignored)


# --------------------------------------------------------------------------- splitting


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Check train/val/test fractions.

    Raises:
        ConfigError: Not three finite non-negative numbers summing to 1 (within 1e-6)
            with a positive train fraction.
    """
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ConfigError(f"Split ratios must be numbers, got {ratios!r}.",
                          "e.g. --split 0.7,0.15,0.15") from None
    if len(values) != 3:
        raise ConfigError(f"Split ratios need three values (train, val, test), got "
                          f"{len(values)}: {ratios!r}.", "e.g. --split 0.7,0.15,0.15")
    if any(not math.isfinite(v) or v < 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise ConfigError(f"Split ratios must be non-negative and sum to 1, got {values}.",
                          "e.g. --split 0.7,0.15,0.15")
    if values[0] <= 0:
        raise ConfigError(f"The train ratio must be positive, got {values[0]}.",
                          "e.g. --split 0.7,0.15,0.15")
    return values  # type: ignore[return-value]


def _strata(labels: list[str]) -> list[str]:
    """Labels with classes of a single member merged (sklearn needs >= 2 per stratum)."""
    counts = Counter(labels)
    return [lab if counts[lab] >= 2 else "\0rare" for lab in labels]


def _two_way(items: np.ndarray, labels: list[str], fraction: float, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Split ``items`` into (keep, take) with about ``fraction`` taken, stratified if possible."""
    from sklearn.model_selection import train_test_split

    if fraction <= 0 or len(items) == 0:
        return items, items[:0]
    if fraction >= 1:
        return items[:0], items
    strata = _strata(labels)
    attempts: list[list[str] | None] = [strata] if len(set(strata)) > 1 else []
    attempts.append(None)
    for stratify in attempts:
        try:
            keep, take = train_test_split(items, test_size=fraction, random_state=seed,
                                          shuffle=True, stratify=stratify)
            return np.asarray(keep), np.asarray(take)
        except ValueError as e:
            logger.debug("Stratified split not possible (%s); trying unstratified", e)
    return items, items[:0]  # a single item: it stays on the keep side


def assign_splits(labels: Sequence[str], groups: Sequence[int], ratios: Sequence[float],
                  seed: int = 0) -> list[str]:
    """Assign ``train``/``val``/``test`` to items, keeping each group in one split.

    Groups (e.g. duplicates, one subject) are the units that are split: each group gets
    the most common label of its members (ties: alphabetical first) and the group ids are
    split with scikit-learn's ``train_test_split`` in two seeded, stratified stages: train
    vs the rest, then the rest into val vs test. Stratification falls back to unstratified
    when a class has too few groups. The ratios therefore apply to groups; with mostly
    single-image groups they match the image fractions closely.

    Args:
        labels: Label of each item.
        groups: Group id of each item (equal ids = same group).
        ratios: ``(train, val, test)`` fractions (see :func:`validate_ratios`).
        seed: Random seed; the result is a pure function of the arguments.

    Returns:
        The split name of each item.

    Raises:
        ConfigError: Bad ratios, or ``labels`` and ``groups`` of different lengths.
    """
    train_r, val_r, test_r = validate_ratios(ratios)
    if len(labels) != len(groups):
        raise ConfigError(f"assign_splits got {len(labels)} labels but {len(groups)} groups.")
    members: dict[int, list[str]] = {}
    for label, group in zip(labels, groups, strict=True):
        members.setdefault(group, []).append(label)
    group_ids = sorted(members)
    group_labels = []
    for g in group_ids:
        counts = Counter(members[g])
        top = max(counts.values())
        group_labels.append(min(lab for lab, c in counts.items() if c == top))
    index = np.arange(len(group_ids))
    split_of = np.full(len(group_ids), "train", dtype=object)
    if len(group_ids):
        _, rest = _two_way(index, group_labels, val_r + test_r, seed)
        rest = np.sort(rest)
        if len(rest):
            test_fraction = test_r / (val_r + test_r)
            val, test = _two_way(rest, [group_labels[i] for i in rest], test_fraction, seed)
            split_of[val] = "val"
            split_of[test] = "test"
    by_group = dict(zip(group_ids, split_of.tolist(), strict=True))
    return [by_group[g] for g in groups]


# --------------------------------------------------------------------------- metadata


def read_metadata(path: str | os.PathLike[str]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Read a metadata CSV: a ``path`` column plus any of :data:`METADATA_COLUMNS` or others.

    Paths are normalised to ``/`` separators without a leading ``./``.

    Returns:
        ``(columns, rows)``: the non-``path`` columns and ``{path: {column: value}}``.

    Raises:
        DataError: Missing file, no ``path`` column, a repeated path, or a non-numeric
            ``age_months``.
    """
    path = Path(path).expanduser()
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            raw_rows = list(reader)
    except FileNotFoundError:
        raise DataError(f"Metadata file not found: {path}.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"Cannot read the metadata CSV {path} ({e}).") from e
    if "path" not in header:
        raise DataError(f"The metadata CSV {path} has no 'path' column (columns: "
                        f"{', '.join(header) or 'none'}).",
                        "add a 'path' column with the image paths as in manifest.csv")
    columns = [h for h in header if h and h != "path"]
    rows: dict[str, dict[str, str]] = {}
    for line, raw in enumerate(raw_rows, start=2):
        rel = (raw.get("path") or "").strip().replace("\\", "/")
        while rel.startswith("./"):
            rel = rel[2:]
        if not rel:
            continue
        if rel in rows:
            raise DataError(f"{path}, line {line}: path {rel!r} appears twice.")
        values = {c: (raw.get(c) or "").strip() for c in columns}
        age = values.get("age_months", "")
        if age:
            try:
                float(age)
            except ValueError:
                raise DataError(f"{path}, line {line}: age_months {age!r} is not a number."
                                ) from None
        rows[rel] = values
    return columns, rows


def _metadata_groups(paths_: Sequence[str], rows: dict[str, dict[str, str]]) -> list[list[int]]:
    by_subject: dict[str, list[int]] = {}
    for i, rel in enumerate(paths_):
        subject = rows.get(rel, {}).get("subject_id", "")
        if subject:
            by_subject.setdefault(subject, []).append(i)
    return [g for g in by_subject.values() if len(g) > 1]


def _check_metadata(path: Path, paths_: Sequence[str], rows: dict[str, dict[str, str]]
                    ) -> list[str]:
    known = set(paths_)
    matched = sum(1 for rel in rows if rel in known)
    if matched == 0:
        example = next(iter(rows), "(no rows)")
        raise DataError(f"No path of the metadata CSV {path} matches the dataset (e.g. "
                        f"{example!r} vs {paths_[0]!r}).",
                        "paths must be relative to the dataset root, as in manifest.csv")
    notes = []
    if matched < len(rows):
        notes.append(f"{len(rows) - matched} metadata row(s) name images not in the dataset")
    if matched < len(known):
        notes.append(f"{len(known) - matched} image(s) have no metadata row")
    return notes


# --------------------------------------------------------------------------- sources


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_") or "dataset"


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise ConfigError(f"Dataset name {name!r} is not a simple folder name.",
                          "use letters, digits, '.', '_' and '-'")
    return name


def _archive_stem(path: Path) -> str | None:
    lower = path.name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def _extract(archive: Path) -> Path:
    import json

    from babyemo.data import download

    target = paths.datasets_dir() / _safe_name(_archive_stem(archive) or archive.stem)
    marker = target / ".babyemo-archive.json"
    stat = archive.stat()
    record = {"archive": str(archive.resolve()), "size": stat.st_size}
    if target.is_dir() and any(target.iterdir()):
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        if previous != record:
            raise DataError(f"{target} already exists and was not extracted from {archive}.",
                            "delete that folder, or prepare the extracted folder directly")
        logger.info("Using %s (already extracted from %s)", target, archive)
        return _single_top_folder(target)
    download.extract_archive(archive, target)
    atomic_write_text(marker, json.dumps(record, indent=2))
    return _single_top_folder(target)


def resolve_source(source: str | os.PathLike[str] | None) -> tuple[Path, str, str]:
    """Turn what the user gave into a local folder.

    Order: ``None`` → :data:`DEFAULT_SOURCE`; an ``http(s)://`` (or ``file://``) URL →
    :func:`babyemo.data.download.fetch_url_dataset`; an existing folder → used in place; an
    existing ``.zip``/``.tar*`` file → extracted into ``datasets_dir()/<stem>``; otherwise a
    catalogue name → :func:`babyemo.data.download.fetch_dataset`. An archive whose only
    top-level entry is a folder yields that folder.

    Returns:
        ``(folder, default_name, source_text)``.

    Raises:
        DataError: Neither an existing path, a URL nor a catalogue name.
        DownloadError: Fetching or extracting failed.
    """
    text = DEFAULT_SOURCE if source is None else str(source)
    if re.match(r"^(https?|file)://", text, flags=re.IGNORECASE):
        from babyemo.data import download

        folder = download.fetch_url_dataset(text)
        return folder, _safe_name(folder.name), text
    path = Path(text).expanduser()
    if path.is_dir():
        return path, _safe_name(path.resolve().name), str(path.resolve())
    if path.is_file():
        if _archive_stem(path) is None:
            raise DataError(f"{path} is a file but not a .zip or .tar archive.",
                            "give a folder of class folders, an archive, a URL or a "
                            "catalogue name")
        return _extract(path), _safe_name(_archive_stem(path) or path.stem), str(path.resolve())
    if os.sep in text or "/" in text or text.startswith((".", "~")):
        raise DataError(f"No such file or folder: {path}.",
                        "give a folder of class folders, a .zip/.tar archive, an http(s) URL "
                        "or a catalogue name")
    from babyemo.data import catalog

    if text in catalog.CATALOG:
        from babyemo.data import download

        return download.fetch_dataset(text), text, text
    import difflib

    close = difflib.get_close_matches(text, list(catalog.CATALOG), n=2, cutoff=0.6)
    hint = (f"did you mean {' or '.join(close)}?" if close else
            "give an existing folder, a .zip/.tar archive, an http(s) URL or a catalogue "
            f"name ({', '.join(catalog.CATALOG)})")
    raise DataError(f"Dataset source not found: {text!r}.", hint)


# --------------------------------------------------------------------------- prepare


@dataclass
class PrepareResult:
    """What :func:`prepare` made.

    Attributes:
        manifest: The written manifest.
        manifest_path: Its ``manifest.csv``.
        skipped: Reason → number of files skipped.
        skipped_files: ``{"path", "reason"}`` of skipped files (capped).
        n_images: Rows in the manifest.
        warnings: Problems worth telling the user (e.g. duplicates across given splits).
    """

    manifest: Manifest
    manifest_path: Path
    skipped: dict[str, int]
    skipped_files: list[dict[str, str]]
    n_images: int
    warnings: list[str] = field(default_factory=list)


def _spanning(ids: Sequence[int], splits: Sequence[str]) -> int:
    seen: dict[int, set[str]] = {}
    for g, s in zip(ids, splits, strict=True):
        seen.setdefault(g, set()).add(s)
    return sum(1 for v in seen.values() if len(v) > 1)


def _split_records(scan: ScanResult, ids: list[int], ratios: tuple[float, float, float],
                   seed: int, resplit: bool) -> tuple[list[str], dict[str, Any], list[str]]:
    labels = [im.label for im in scan.images]
    given = set(scan.given_splits)
    notes: list[str] = []
    if scan.layout == "imagefolder" or resplit or given == {"train"}:
        splits = assign_splits(labels, ids, ratios, seed)
        return splits, {"given": False, "carved": []}, notes
    splits = [im.split or "train" for im in scan.images]
    carved: list[str] = []
    if "val" not in given and ratios[1] > 0:
        train_idx = [i for i, s in enumerate(splits) if s == "train"]
        val_fraction = ratios[1] / (ratios[0] + ratios[1])
        sub = assign_splits([labels[i] for i in train_idx], [ids[i] for i in train_idx],
                            (1 - val_fraction, val_fraction, 0.0), seed)
        for i, s in zip(train_idx, sub, strict=True):
            splits[i] = s
        carved = ["val"]
        logger.info("Carved a validation split (%.1f%% of train/) out of train/",
                    100 * val_fraction)
    elif "val" not in given:
        notes.append("no validation split: the val ratio is 0 and there is no val/ folder")
    if "test" not in given:
        notes.append("no test split: the dataset has train/ and val/ folders only")
    leaks = _spanning(ids, splits)
    if leaks:
        notes.append(f"{leaks} group(s) of duplicates or of one subject span the given splits "
                     "(a leak between training and evaluation); use --resplit for a "
                     "duplicate-aware split")
    return splits, {"given": True, "carved": carved}, notes


def duplicate_ids(sha256s: Sequence[str], dhashes: Sequence[int],
                  extra_groups: Sequence[Sequence[int]] = (),
                  max_distance: int | None = None) -> tuple[list[int], int]:
    """Group ids joining exact duplicates, near-duplicates and ``extra_groups``.

    Args:
        sha256s: SHA-256 of each image.
        dhashes: Difference hash of each image.
        extra_groups: More groups of indices to keep together (e.g. one subject).
        max_distance: Near-duplicate Hamming distance, ``None`` = chosen from the data
            (:func:`babyemo.data.hashing.near_duplicates`).

    Returns:
        ``(ids, max_distance)``: a group id per image and the distance used.
    """
    exact = exact_duplicate_groups(list(sha256s))
    near, distance = near_duplicates(list(dhashes), max_distance)
    return component_ids(len(sha256s), [*exact, *near, *extra_groups]), distance


def prepare(
    source: str | os.PathLike[str] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    split: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    resplit: bool = False,
    metadata: str | os.PathLike[str] | None = None,
    name: str | None = None,
    near_duplicate_distance: int | None = None,
) -> PrepareResult:
    """Scan a dataset, split it duplicate-aware and write ``manifest.csv`` + ``dataset.json``.

    Args:
        source: Catalogue name, folder, ``.zip``/``.tar*`` archive or ``http(s)`` URL
            (default :data:`DEFAULT_SOURCE`), see :func:`resolve_source`.
        out: Output folder (default ``paths.prepared_dir() / name``).
        split: ``(train, val, test)`` fractions for a new split.
        seed: Seed of the split.
        resplit: Ignore train/val/test folders and split everything anew.
        metadata: Optional CSV with a ``path`` column (and e.g. ``subject_id``); copied to
            ``metadata.csv`` beside the manifest. Images of one subject share a split.
        name: Dataset name (default: the catalogue name or the folder name).
        near_duplicate_distance: dHash Hamming distance for near-duplicates (default:
            chosen from the data, see :mod:`babyemo.data.hashing`).

    Splits: class folders get a new seeded split stratified by label. Given
    ``train/``+``val/``(+``test/``) folders are kept; with ``train/`` and ``test/`` only, a
    validation split of ``val / (train + val)`` of ``train/`` is carved out; ``train/`` alone
    is split like class folders. Exact duplicates (SHA-256), near-duplicates (dHash) and one
    subject's images are never split apart in a new or carved split.

    Returns:
        A :class:`PrepareResult`. The manifest path is also remembered as the last prepared
        dataset (``babyemo train`` without ``--data`` uses it).

    Raises:
        ConfigError: Bad ratios or name.
        DataError: Source not found, bad layout, no images, one class, bad metadata.
        DownloadError: Fetching or extracting the source failed.
    """
    ratios = validate_ratios(split)
    if name is not None:
        _check_name(name)
    folder, default_name, source_text = resolve_source(source)
    name = name or default_name
    scan = scan_folder(folder)
    paths_ = [im.path for im in scan.images]
    extra_groups: list[list[int]] = []
    meta_columns: list[str] = []
    meta_bytes: bytes | None = None
    warnings: list[str] = []
    if metadata is not None:
        meta_path = Path(metadata).expanduser()
        meta_columns, meta_rows = read_metadata(meta_path)
        warnings += _check_metadata(meta_path, paths_, meta_rows)
        extra_groups = _metadata_groups(paths_, meta_rows)
        meta_bytes = meta_path.read_bytes()
    ids, distance = duplicate_ids([im.sha256 for im in scan.images],
                                  [im.dhash for im in scan.images], extra_groups,
                                  near_duplicate_distance)
    splits, split_info, notes = _split_records(scan, ids, ratios, seed, resplit)
    warnings += notes
    rows = [ManifestRow(im.path, im.label, s, im.sha256, im.width, im.height, im.format,
                        format_hash(im.dhash)) for im, s in zip(scan.images, splits, strict=True)]
    out_dir = Path(out).expanduser() if out is not None else paths.prepared_dir() / name
    info = new_info(
        name, scan.root, source_text, scan.class_names,
        split={"ratios": list(ratios), "seed": seed, **split_info},
        skipped=scan.skipped, skipped_files=scan.skipped_files,
        metadata=METADATA_FILE if meta_bytes is not None else None,
        layout=scan.layout, given_splits=scan.given_splits,
        ignored_folders=scan.ignored_folders,
        near_duplicate_distance=distance,
        modes=dict(sorted(Counter(im.mode for im in scan.images).items())),
        near_blank=[im.path for im in scan.images if im.std < NEAR_BLANK_STD],
        warnings=warnings,
    )
    if meta_bytes is not None:
        atomic_write_bytes(out_dir / METADATA_FILE, meta_bytes)
    manifest_path = write_manifest(rows, out_dir, info)
    manifest = read_manifest(manifest_path)
    paths.update_state(last_manifest=str(manifest_path.resolve()))
    logger.info("Prepared %s: %d images -> %s", name, len(rows), manifest_path)
    return PrepareResult(manifest=manifest, manifest_path=manifest_path, skipped=scan.skipped,
                         skipped_files=scan.skipped_files, n_images=len(rows),
                         warnings=warnings)


def split_manifest(
    manifest_path: str | os.PathLike[str],
    *,
    split: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    near_duplicate_distance: int | None = None,
) -> Manifest:
    """Re-split an existing manifest (no image is decoded) and write it.

    Uses the manifest's ``sha256`` and ``dhash`` columns (and ``subject_id`` of its
    ``metadata.csv``) to keep duplicates and subjects together, exactly as :func:`prepare`.

    Args:
        manifest_path: ``manifest.csv`` or its folder.
        split: New ``(train, val, test)`` fractions.
        seed: Seed of the split.
        out: Output folder (default: in place). ``metadata.csv`` is copied along.
        near_duplicate_distance: As in :func:`prepare`.

    Returns:
        The re-split :class:`Manifest` as written.

    Raises:
        ConfigError: Bad ratios.
        ManifestError: Unreadable manifest or a bad ``dhash`` value.
    """
    ratios = validate_ratios(split)
    manifest = read_manifest(manifest_path)
    try:
        hashes = [int(r.dhash, 16) for r in manifest.rows]
    except ValueError:
        from babyemo.errors import ManifestError

        raise ManifestError(f"{manifest.path} has a dhash that is not hexadecimal.",
                            "prepare the dataset again") from None
    paths_ = [r.path for r in manifest.rows]
    extra: list[list[int]] = []
    meta_name = manifest.info.get("metadata")
    meta_file = manifest.path.parent / meta_name if meta_name else None
    if meta_file is not None and meta_file.is_file():
        _, meta_rows = read_metadata(meta_file)
        extra = _metadata_groups(paths_, meta_rows)
    ids, distance = duplicate_ids([r.sha256 for r in manifest.rows], hashes, extra,
                                  near_duplicate_distance)
    splits = assign_splits([r.label for r in manifest.rows], ids, ratios, seed)
    for row, s in zip(manifest.rows, splits, strict=True):
        row.split = s
    info = dict(manifest.info) or new_info(manifest.name, manifest.root, str(manifest.path),
                                           manifest.class_names)
    info["root"] = str(manifest.root)
    info["split"] = {"ratios": list(ratios), "seed": seed, "given": False, "carved": [],
                     "created": now_iso()}
    info["near_duplicate_distance"] = distance
    info["warnings"] = [w for w in info.get("warnings", []) if "given splits" not in w]
    out_dir = Path(out).expanduser() if out is not None else manifest.path.parent
    same_folder = out_dir.resolve() == manifest.path.parent.resolve()
    if meta_file is not None and meta_file.is_file() and not same_folder:
        atomic_write_bytes(out_dir / METADATA_FILE, meta_file.read_bytes())
    written = write_manifest(manifest.rows, out_dir, info)
    paths.update_state(last_manifest=str(written.resolve()))
    return read_manifest(written)


def last_manifest() -> Path:
    """The ``manifest.csv`` of the most recently prepared (or re-split) dataset.

    Raises:
        DataError: Nothing was prepared yet, or that manifest is gone.
    """
    recorded = paths.read_state().get("last_manifest")
    if not recorded:
        raise DataError("No prepared dataset yet.", _PREPARE_HINT)
    path = Path(recorded)
    if not path.is_file():
        raise DataError(f"The last prepared manifest {path} no longer exists.", _PREPARE_HINT)
    return path


__all__ = ["DEFAULT_RATIOS", "DEFAULT_SOURCE", "ImageRecord", "PrepareResult", "ScanResult",
           "assign_splits", "duplicate_ids", "last_manifest", "prepare", "probe_image",
           "read_metadata", "resolve_source", "scan_folder", "split_manifest",
           "validate_ratios"]
