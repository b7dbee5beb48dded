"""Inspect a dataset: counts, balance, sizes, formats, duplicates, leaks and demographics.

Works on a prepared manifest (no image is decoded: duplicates come from its ``sha256`` and
``dhash`` columns) or on a raw folder, which is scanned in memory exactly as ``prepare``
would scan it (splits as given by the folders, or ``all``). Nothing is written. No torch.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from babyemo.data.inspection.hashing import (
    NEAR_BLANK_STD,
    exact_duplicate_groups,
    near_duplicates,
)
from babyemo.data.preparation.manifest import MANIFEST_FILE, read_manifest
from babyemo.data.sources import catalog
from babyemo.errors import DataError

logger = logging.getLogger(__name__)

IMBALANCE_WARNING = 1.5
"""Warn when the largest class has more than this many times the images of the smallest."""

MAX_EXAMPLES = 10
"""Example groups or files listed per finding."""

FORMAT_SUFFIXES = {
    "JPEG": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "MPO": {".jpg", ".jpeg", ".jpe", ".jfif", ".mpo"},
    "PNG": {".png"},
    "WEBP": {".webp"},
    "GIF": {".gif"},
    "BMP": {".bmp", ".dib"},
    "TIFF": {".tif", ".tiff"},
    "HEIF": {".heic", ".heif"},
    "AVIF": {".avif"},
}
"""File name endings that match each Pillow format (others are reported as mismatches)."""


@dataclass
class DuplicateStats:
    """Duplicate groups of a dataset.

    Attributes:
        groups: Number of groups (two or more images each).
        images: Images in those groups.
        spanning_splits: Groups whose images are in more than one split (a leak).
        conflicting_labels: Groups whose images carry different labels.
        problems: Groups that span splits or carry conflicting labels (or both).
        examples: Up to :data:`MAX_EXAMPLES` groups (paths), problem groups first.
    """

    groups: int = 0
    images: int = 0
    spanning_splits: int = 0
    conflicting_labels: int = 0
    problems: int = 0
    examples: list[list[str]] = field(default_factory=list)


@dataclass
class DatasetReport:
    """What :func:`inspect_dataset` found (``to_dict()`` is JSON-safe).

    Attributes:
        name: Dataset name (``dataset.json`` name or folder name).
        root: Absolute image root.
        inspected: What was inspected (manifest path or folder).
        kind: ``"manifest"`` or ``"folder"``.
        n_images: Readable images.
        class_names: Sorted class names.
        counts: ``{split: {class: n}}``; split ``"all"`` for an unsplit folder.
        imbalance: Largest / smallest class count, ``"all"`` and per split (``None`` when a
            class has no image there).
        sizes: ``{"width"|"height": {"min", "median", "max"}}`` in pixels.
        modes: Pillow mode → images (``None`` when not recorded).
        formats: Sniffed format → images.
        extension_mismatches: Files whose name ending does not match their format.
        extension_mismatch_examples: ``{"path", "format"}`` examples.
        unreadable: ``{"path", "reason"}`` of files that could not be decoded.
        skipped_files: ``{"path", "reason", "category"}`` of every skipped file that is not
            hidden (as recorded by the scan; capped at
            :data:`~babyemo.data.preparation.scan.MAX_SKIPPED_FILES`).
        missing_files: Manifest rows whose file no longer exists (a manifest only;
            training and evaluation stop at them).
        skipped: Skip category → count (hidden, not_image, unreadable, ...).
        exact_duplicates: Byte-identical groups (same SHA-256).
        near_duplicates: Groups of images within ``near_duplicate_distance`` dHash bits
            that are not all byte-identical.
        near_duplicate_distance: Hamming distance used.
        near_blank: Images with grayscale pixel std below
            :data:`~babyemo.data.inspection.hashing.NEAR_BLANK_STD` (``None`` when not recorded).
        catalogue: Documented terms/demographics of the matching catalogue entry, or None.
        metadata: Distribution of ``metadata.csv`` columns per class and split, or None.
        faces: Face detection stored in the manifest (``data prepare --faces``), or None:
            ``detector``, ``rate`` ``{split: {class: fraction with a face}}``,
            ``with_face``, ``multi_face`` and ``tiny_face`` (primary face shorter than
            :data:`TINY_FACE_PX`) counts, and ``no_face_examples``.
        warnings: Problems found, one sentence each.
    """

    name: str
    root: str
    inspected: str
    kind: str
    n_images: int
    class_names: list[str]
    counts: dict[str, dict[str, int]]
    imbalance: dict[str, float | None]
    sizes: dict[str, dict[str, float]]
    modes: dict[str, int] | None
    formats: dict[str, int]
    extension_mismatches: int
    extension_mismatch_examples: list[dict[str, str]]
    unreadable: list[dict[str, str]]
    skipped: dict[str, int]
    exact_duplicates: DuplicateStats
    near_duplicates: DuplicateStats
    near_duplicate_distance: int
    near_blank: list[str] | None
    catalogue: dict[str, str] | None
    metadata: dict[str, Any] | None
    warnings: list[str]
    faces: dict[str, Any] | None = None
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-safe types (non-finite numbers become ``None``)."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class _Item:
    path: str
    label: str
    split: str
    sha256: str
    dhash: int
    width: int
    height: int
    format: str


def _duplicate_stats(groups: list[list[int]], items: Sequence[_Item]) -> DuplicateStats:
    stats = DuplicateStats(groups=len(groups), images=sum(len(g) for g in groups))
    problems, others = [], []
    for g in groups:
        spans = len({items[i].split for i in g}) > 1
        conflict = len({items[i].label for i in g}) > 1
        stats.spanning_splits += spans
        stats.conflicting_labels += conflict
        stats.problems += spans or conflict
        (problems if spans or conflict else others).append(g)
    for g in (problems + others)[:MAX_EXAMPLES]:
        stats.examples.append([f"{items[i].path} [{items[i].label}, {items[i].split}]"
                               for i in g])
    return stats


def _imbalance(counts: dict[str, int]) -> float | None:
    values = list(counts.values())
    if not values or min(values) == 0:
        return None
    return round(max(values) / min(values), 3)


def _summary(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": float(statistics.median(values)), "max": max(values)}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _distribution(values: list[str], numeric: bool) -> dict[str, Any]:
    present = [v for v in values if v != ""]
    if numeric:
        nums = [float(v) for v in present]
        out: dict[str, Any] = {"n": len(nums), "missing": len(values) - len(nums)}
        if nums:
            out.update(min=min(nums), median=float(statistics.median(nums)), max=max(nums))
        return out
    counts = Counter(v if v != "" else "(missing)" for v in values)
    return dict(counts.most_common(20))


def _metadata_report(meta_path: Path, items: Sequence[_Item], class_names: list[str],
                     splits: list[str]) -> tuple[dict[str, Any], list[str]]:
    from babyemo.data.preparation.metadata import read_metadata

    columns, rows = read_metadata(meta_path)
    warnings: list[str] = []
    matched = [rows.get(it.path) for it in items]
    n_matched = sum(r is not None for r in matched)
    report: dict[str, Any] = {"file": str(meta_path), "columns": columns,
                              "images_with_metadata": n_matched,
                              "images_without_metadata": len(items) - n_matched,
                              "by_class": {}, "by_split": {}, "subjects": None}
    if n_matched < len(items):
        warnings.append(f"{len(items) - n_matched} image(s) have no row in {meta_path.name}")
    for column in columns:
        if column == "subject_id":
            continue
        values = [(r or {}).get(column, "") for r in matched]
        numeric = column == "age_months" or (any(values) and all(
            _is_number(v) for v in values if v))
        pairs = list(zip(values, items, strict=True))
        report["by_class"][column] = {
            c: _distribution([v for v, it in pairs if it.label == c], numeric)
            for c in class_names}
        report["by_split"][column] = {
            s: _distribution([v for v, it in pairs if it.split == s], numeric) for s in splits}
    if "subject_id" in columns:
        subject_splits: dict[str, set[str]] = {}
        for r, it in zip(matched, items, strict=True):
            subject = (r or {}).get("subject_id", "")
            if subject:
                subject_splits.setdefault(subject, set()).add(it.split)
        leaking = sorted(s for s, sp in subject_splits.items() if len(sp) > 1)
        report["subjects"] = {"n": len(subject_splits), "in_several_splits": len(leaking),
                              "examples": leaking[:MAX_EXAMPLES]}
        if leaking:
            warnings.append(f"{len(leaking)} subject(s) appear in more than one split (e.g. "
                            f"{', '.join(leaking[:3])}): the same child is seen in training "
                            "and evaluation")
    return report, warnings


def _extension_mismatches(items: Sequence[_Item]) -> list[dict[str, str]]:
    out = []
    for it in items:
        allowed = FORMAT_SUFFIXES.get(it.format.upper())
        if allowed is not None and os.path.splitext(it.path)[1].lower() not in allowed:
            out.append({"path": it.path, "format": it.format})
    return out


TINY_FACE_PX = 32
"""A primary face whose box is shorter than this many pixels is reported as tiny."""


def _face_report(manifest: Any) -> dict[str, Any] | None:
    """Detection rate per split and class, multi-face and tiny-face counts."""
    if not manifest.has_faces:
        return None
    rate: dict[str, dict[str, float]] = {}
    for split in manifest.splits():
        rows = manifest.rows_for(split)
        rate[split] = {}
        for c in manifest.class_names:
            of_class = [r for r in rows if r.label == c]
            if of_class:
                rate[split][c] = sum(1 for r in of_class if r.n_faces) / len(of_class)
    rows = manifest.rows
    return {
        "detector": (manifest.info.get("faces") or {}).get("detector"),
        "n_images": len(rows),
        "with_face": sum(1 for r in rows if r.n_faces),
        "multi_face": sum(1 for r in rows if (r.n_faces or 0) > 1),
        "tiny_face": sum(1 for r in rows if r.face and min(r.face["box"][2:]) < TINY_FACE_PX),
        "rate": rate,
        "no_face_examples": [r.path for r in rows if not r.n_faces][:MAX_EXAMPLES],
    }


def _load(path: Path) -> tuple[list[_Item], dict[str, Any]]:
    """Items and context from a manifest or a raw folder."""
    is_manifest = path.is_file() or (path.is_dir() and (path / MANIFEST_FILE).is_file())
    if is_manifest:
        manifest = read_manifest(path)
        items = [_Item(r.path, r.label, r.split, r.sha256, h, r.width, r.height, r.format)
                 for r, h in zip(manifest.rows, manifest.dhashes(), strict=True)]
        info = manifest.info
        meta = info.get("metadata")
        return items, {
            "kind": "manifest", "name": manifest.name, "root": manifest.root,
            "inspected": str(manifest.path), "skipped": dict(info.get("skipped") or {}),
            "skipped_files": list(info.get("skipped_files") or []),
            "modes": info.get("modes"), "near_blank": info.get("near_blank"),
            "distance": info.get("near_duplicate_distance"),
            "metadata": manifest.path.parent / meta if meta else None,
            "class_names": manifest.class_names, "faces": _face_report(manifest),
            "missing": manifest.missing_files(), "warnings": [],
        }
    if not path.is_dir():
        raise DataError(f"Nothing to inspect at {path}.",
                        "give a manifest.csv, a prepared folder or a dataset folder")
    from babyemo.data.preparation.scan import scan_folder

    scan = scan_folder(path)
    items = [_Item(im.path, im.label, im.split or "all", im.sha256, im.dhash, im.width,
                   im.height, im.format) for im in scan.images]
    return items, {
        "kind": "folder", "name": scan.root.name, "root": scan.root, "inspected": str(path),
        "skipped": scan.skipped, "skipped_files": scan.skipped_files,
        "modes": dict(sorted(Counter(im.mode for im in scan.images).items())),
        "near_blank": [im.path for im in scan.images if im.std < NEAR_BLANK_STD],
        "distance": None, "metadata": None, "class_names": scan.class_names, "faces": None,
        "missing": [], "warnings": scan.warnings(),
    }


def inspect_dataset(path: str | os.PathLike[str],
                    near_duplicate_distance: int | None = None) -> DatasetReport:
    """Report on a dataset's balance, formats, duplicates, leaks and documented demographics.

    Args:
        path: ``manifest.csv``, a folder holding one, or a raw dataset folder (scanned in
            memory like :func:`babyemo.data.preparation.prepare.prepare`, nothing written).
        near_duplicate_distance: dHash Hamming distance for near-duplicates (default: the
            one recorded by ``prepare``, else chosen from the data as ``prepare`` does).

    Returns:
        The :class:`DatasetReport`.

    Raises:
        ManifestError: Unreadable manifest, or a row without a valid ``dhash``
            (:meth:`~babyemo.data.preparation.manifest.Manifest.dhashes`).
        DataError: Nothing at ``path``, or a folder without usable images or classes.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"Nothing to inspect at {path}: no such file or folder.",
                        "give a manifest.csv, a prepared folder or a dataset folder")
    items, ctx = _load(path)
    class_names: list[str] = ctx["class_names"]
    splits = [s for s in ("train", "val", "test", "all") if any(it.split == s for it in items)]
    counts = {s: dict.fromkeys(class_names, 0) for s in splits}
    for it in items:
        counts[it.split][it.label] += 1
    total = Counter(it.label for it in items)
    overall = {c: total.get(c, 0) for c in class_names}
    imbalance: dict[str, float | None] = {"all": _imbalance(overall)}
    if splits != ["all"]:
        imbalance.update({s: _imbalance(counts[s]) for s in splits})
    warnings: list[str] = list(ctx["warnings"])
    missing_files: list[str] = ctx["missing"]
    if missing_files:
        warnings.append(f"{len(missing_files)} file(s) of the manifest are missing (e.g. "
                        f"{', '.join(missing_files[:3])}): training and evaluation stop at "
                        "them; prepare the dataset again")

    exact = _duplicate_stats(exact_duplicate_groups([it.sha256 for it in items]), items)
    distance = (near_duplicate_distance if near_duplicate_distance is not None
                else ctx["distance"])
    near_groups, distance = near_duplicates([it.dhash for it in items], distance)
    near_groups = [g for g in near_groups if len({items[i].sha256 for i in g}) > 1]
    near = _duplicate_stats(near_groups, items)

    mismatches = _extension_mismatches(items)
    unreadable = [{"path": f["path"], "reason": f.get("reason", "")}
                  for f in ctx["skipped_files"] if f.get("category") == "unreadable"]
    catalogue = catalog.catalogue_notes(ctx["name"])
    metadata = None
    meta_path = ctx["metadata"]
    if meta_path is not None:
        if meta_path.is_file():
            metadata, meta_warnings = _metadata_report(meta_path, items, class_names, splits)
            warnings += meta_warnings
        else:
            warnings.append(f"dataset.json names {meta_path.name}, which is missing")

    if exact.spanning_splits:
        warnings.append(f"{exact.spanning_splits} group(s) of byte-identical images span "
                        "splits: the same image is in training and evaluation (leak)")
    if exact.conflicting_labels:
        warnings.append(f"{exact.conflicting_labels} group(s) of byte-identical images carry "
                        "conflicting labels")
    if near.spanning_splits:
        warnings.append(f"{near.spanning_splits} near-duplicate group(s) span splits (leak of "
                        "re-encoded or re-cropped copies)")
    if near.conflicting_labels:
        warnings.append(f"{near.conflicting_labels} near-duplicate group(s) carry conflicting "
                        "labels")
    ratio = imbalance["all"]
    if ratio is not None and ratio > IMBALANCE_WARNING:
        big = max(overall, key=lambda c: overall[c])
        small = min(overall, key=lambda c: overall[c])
        warnings.append(f"class imbalance {ratio:.2f}:1 (largest '{big}' {overall[big]}, "
                        f"smallest '{small}' {overall[small]})")
    for s in splits:
        missing = [c for c in class_names if counts[s][c] == 0]
        if missing:
            warnings.append(f"split '{s}' has no images of {', '.join(missing)}")
    n_unreadable = ctx["skipped"].get("unreadable", 0)
    if n_unreadable:
        warnings.append(f"{n_unreadable} unreadable file(s) skipped")
    near_blank = ctx["near_blank"]
    if near_blank:
        warnings.append(f"{len(near_blank)} near-blank image(s) (almost one grey level)")
    faces = ctx["faces"]
    if faces is not None and faces["with_face"] < faces["n_images"]:
        warnings.append(f"{faces['n_images'] - faces['with_face']} image(s) have no detected "
                        "face (used whole when training on face crops)")
    if mismatches:
        warnings.append(f"{len(mismatches)} file(s) have a name ending that does not match "
                        "their format (babyemo reads them; other tools may not)")

    return DatasetReport(
        name=ctx["name"], root=str(ctx["root"]), inspected=ctx["inspected"], kind=ctx["kind"],
        n_images=len(items), class_names=class_names, counts=counts, imbalance=imbalance,
        sizes={"width": _summary([it.width for it in items]),
               "height": _summary([it.height for it in items])},
        modes=ctx["modes"], formats=dict(Counter(it.format for it in items).most_common()),
        extension_mismatches=len(mismatches),
        extension_mismatch_examples=mismatches[:MAX_EXAMPLES],
        unreadable=unreadable, skipped=dict(ctx["skipped"]), exact_duplicates=exact,
        near_duplicates=near, near_duplicate_distance=distance, near_blank=near_blank,
        catalogue=catalogue, metadata=metadata, warnings=warnings, faces=faces,
        skipped_files=[f for f in ctx["skipped_files"] if f.get("category") != "hidden"],
        missing_files=missing_files,
    )
