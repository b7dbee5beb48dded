"""Prepare a dataset: scan its images once, group duplicates, split, write the manifest.

``prepare`` turns a catalogue name, a folder, an archive or a URL
(:mod:`babyemo.data.sources.resolve`) into ``<out>/manifest.csv`` + ``dataset.json`` (see
:mod:`babyemo.data.preparation.manifest`). Every image is read once
(:mod:`babyemo.data.preparation.scan`):
SHA-256 of the bytes (exact duplicates), Pillow header (true size, format, mode) and a
small grayscale decode for the difference hash (near duplicates) and the pixel spread
(near-blank images). Splits are seeded, stratified by label and duplicate-aware
(:mod:`babyemo.data.preparation.split`): exact duplicates, near-duplicates and (with a metadata CSV,
:mod:`babyemo.data.preparation.metadata`) images of one subject always land in the same split.

No torch here; scikit-learn is imported only when a split is made.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babyemo import paths
from babyemo.data.inspection.hashing import NEAR_BLANK_STD, format_hash
from babyemo.data.loading.folders import check_outputs
from babyemo.data.preparation.face_index import annotate_faces
from babyemo.data.preparation.lookup import remember_prepared
from babyemo.data.preparation.manifest import (
    INFO_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    Manifest,
    ManifestRow,
    new_info,
    now_iso,
    read_manifest,
    write_manifest,
)
from babyemo.data.preparation.metadata import check_metadata, read_metadata, subject_groups
from babyemo.data.preparation.scan import ScanResult, scan_folder
from babyemo.data.preparation.split import (
    DEFAULT_RATIOS,
    assign_splits,
    duplicate_ids,
    validate_ratios,
)
from babyemo.data.sources.resolve import resolve_source
from babyemo.errors import ConfigError
from babyemo.fs import atomic_write_bytes

logger = logging.getLogger(__name__)


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise ConfigError(f"Dataset name {name!r} is not a simple folder name.",
                          "use letters, digits, '.', '_' and '-'")
    return name


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
    faces: str = "none",
) -> PrepareResult:
    """Scan a dataset, split it duplicate-aware and write ``manifest.csv`` + ``dataset.json``.

    Args:
        source: Catalogue name, folder, ``.zip``/``.tar*`` archive or ``http(s)`` URL
            (default :data:`~babyemo.data.sources.resolve.DEFAULT_SOURCE`), see
            :func:`~babyemo.data.sources.resolve.resolve_source`.
        out: Output folder (default ``paths.prepared_dir() / name``).
        split: ``(train, val, test)`` fractions for a new split.
        seed: Seed of the split.
        resplit: Ignore train/val/test folders and split everything anew.
        metadata: Optional CSV with a ``path`` column (and e.g. ``subject_id``); copied to
            ``metadata.csv`` beside the manifest. Images of one subject share a split.
        name: Dataset name (default: the catalogue name or the folder name).
        near_duplicate_distance: dHash Hamming distance for near-duplicates (default:
            chosen from the data, see :mod:`babyemo.data.inspection.hashing`).
        faces: Face detector run once on every image (``"yunet"``), storing the primary
            face box and landmarks in the manifest; ``"none"`` (default) skips detection.

    Splits: class folders get a new seeded split stratified by label. Given
    ``train/``+``val/``(+``test/``) folders are kept; with ``train/`` and ``test/`` only, a
    validation split of ``val / (train + val)`` of ``train/`` is carved out; ``train/`` alone
    is split like class folders. Exact duplicates (SHA-256), near-duplicates (dHash) and one
    subject's images are never split apart in a new or carved split.

    Returns:
        A :class:`PrepareResult`. The manifest path is also remembered as the last prepared
        dataset (``babyemo train`` without ``--data`` uses it).

    Raises:
        ConfigError: Bad ratios or name; ``out`` is not a folder one can write, lies inside
            the source folder, or its manifest would replace ``metadata`` (see
            :func:`~babyemo.data.loading.folders.check_outputs`), checked before scanning.
        DataError: Source not found, bad layout, no images, one class, bad metadata.
        DownloadError: Fetching or extracting the source (or the detector's model) failed.
        RegistryError: Unknown face detector.
        MissingDependencyError: OpenCV (the face detector) is not installed.
    """
    ratios = validate_ratios(split)
    if faces != "none":
        from babyemo.faces import get_detector

        get_detector(faces)  # fail before scanning if the detector cannot be made
    if name is not None:
        _check_name(name)
    folder, default_name, source_text = resolve_source(source)
    name = name or default_name
    out_dir = Path(out).expanduser() if out is not None else paths.prepared_dir() / name
    check_outputs(folders={"output folder": out_dir}, inputs=[metadata], scanned=[folder],
                  folder_files={"output folder": (MANIFEST_FILE, INFO_FILE)})
    scan = scan_folder(folder)
    paths_ = [im.path for im in scan.images]
    extra_groups: list[list[int]] = []
    meta_columns: list[str] = []
    meta_bytes: bytes | None = None
    warnings: list[str] = scan.warnings()
    if metadata is not None:
        meta_path = Path(metadata).expanduser()
        meta_columns, meta_rows = read_metadata(meta_path)
        warnings += check_metadata(meta_path, paths_, meta_rows)
        extra_groups = subject_groups(paths_, meta_rows)
        meta_bytes = meta_path.read_bytes()
    ids, distance = duplicate_ids([im.sha256 for im in scan.images],
                                  [im.dhash for im in scan.images], extra_groups,
                                  near_duplicate_distance)
    splits, split_info, notes = _split_records(scan, ids, ratios, seed, resplit)
    warnings += notes
    rows = [ManifestRow(im.path, im.label, s, im.sha256, im.width, im.height, im.format,
                        format_hash(im.dhash)) for im, s in zip(scan.images, splits, strict=True)]
    face_summary = annotate_faces(rows, scan.root, faces) if faces != "none" else None
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
        faces=face_summary,
    )
    if meta_bytes is not None:
        atomic_write_bytes(out_dir / METADATA_FILE, meta_bytes)
    manifest_path = write_manifest(rows, out_dir, info)
    manifest = read_manifest(manifest_path)
    remember_prepared(manifest_path)
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
        ConfigError: Bad ratios; an ``out`` that is not a folder one can write, or lies
            inside the dataset's image root (see
            :func:`~babyemo.data.loading.folders.check_outputs`).
        ManifestError: Unreadable manifest or a bad ``dhash`` value.
    """
    ratios = validate_ratios(split)
    manifest = read_manifest(manifest_path)
    if out is not None:  # in place (the default) rewrites the files it read, as asked
        check_outputs(folders={"output folder": Path(out).expanduser()},
                      folder_files={"output folder": (MANIFEST_FILE, INFO_FILE)},
                      scanned=[manifest.root])
    hashes = manifest.dhashes()
    paths_ = [r.path for r in manifest.rows]
    extra: list[list[int]] = []
    meta_file = manifest.metadata_path()
    if meta_file is not None:
        _, meta_rows = read_metadata(meta_file)
        extra = subject_groups(paths_, meta_rows)
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
    if meta_file is not None and not same_folder:
        atomic_write_bytes(out_dir / METADATA_FILE, meta_file.read_bytes())
    written = write_manifest(manifest.rows, out_dir, info)
    remember_prepared(written)
    return read_manifest(written)


__all__ = ["PrepareResult", "prepare", "split_manifest"]
