"""Apply a reviewed label file to a new manifest (``babyemo data relabel``).

The user decides what the label audit (:mod:`babyemo.evaluation.audit`) only suggests.
A review file is a CSV with (at least) the columns ``path`` (as in the manifest) and
``label``: a class name of the manifest (the image's new or confirmed label), ``exclude``
(drop the image), or empty (no decision: unchanged), so a copy of the audit's
``label_issues.csv`` with a ``label`` column added is one. Other columns are ignored.

:func:`relabel_manifest` writes a *new* manifest (same images, same splits, the new labels,
excluded rows dropped) with the manifest writer; the original is never modified. Its
``dataset.json`` is the parent's with a ``relabel`` entry: the parent (path, SHA-256), the
review file (path, SHA-256), the counts per change (``"angry -> happy": 3``,
``"crying -> exclude": 1``) and the previous ``relabel`` entry (a chain of reviews).

Test rows are refused unless ``allow_test``: editing the labels of the test split to
raise its score makes the score meaningless. Standard library only (no torch).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babyemo.data.loading.folders import check_outputs
from babyemo.data.preparation.manifest import (
    INFO_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    Manifest,
    _path_key,
    now_iso,
    read_manifest,
    write_manifest,
)
from babyemo.errors import ConfigError, DataError
from babyemo.fs import atomic_write_bytes, sha256_file

EXCLUDE = "exclude"
"""The review label that drops an image from the new manifest."""
REVIEW_COLUMNS = ("path", "label")
"""Columns a review file must have."""


@dataclass
class RelabelResult:
    """What :func:`relabel_manifest` wrote.

    Attributes:
        manifest_path: The new ``manifest.csv``.
        manifest: The new manifest.
        parent: The original ``manifest.csv`` (unchanged).
        review: The review file.
        changes: ``{"old -> new": n}`` (``new`` may be ``exclude``), relabelled and
            excluded rows only.
        n_relabelled: Rows given another label.
        n_excluded: Rows dropped.
        n_confirmed: Reviewed rows whose label stays the same.
        n_undecided: Review rows with an empty label (left as they are).
        n_test_changed: Test rows relabelled or excluded (only with ``allow_test``).
        warnings: Problems worth saying (e.g. a class left without images).
    """

    manifest_path: Path
    manifest: Manifest
    parent: Path
    review: Path
    changes: dict[str, int]
    n_relabelled: int
    n_excluded: int
    n_confirmed: int
    n_undecided: int
    n_test_changed: int = 0
    warnings: list[str] = field(default_factory=list)


def read_review(path: Path) -> list[tuple[int, str, str]]:
    """The decisions of a review CSV: ``(line, path, label)``, label stripped (``""``: none).

    Raises:
        DataError: Missing or unreadable file, or no ``path``/``label`` column.
    """
    if not path.is_file():
        raise DataError(f"No review file at {path}.",
                        "give a CSV with the columns path,label (label: a class or exclude)")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REVIEW_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path} lacks the column(s) {', '.join(missing)}.",
                                "a review file has the columns path,label (label: a class "
                                f"name or {EXCLUDE}; empty: no decision)")
            return [(i, raw.get("path") or "", (raw.get("label") or "").strip())
                    for i, raw in enumerate(reader, start=2)
                    if raw.get("path") or (raw.get("label") or "").strip()]  # not blank
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"Cannot read {path} ({e}).", "save it as a UTF-8 CSV") from e


def relabel_manifest(manifest: str | os.PathLike[str], review: str | os.PathLike[str], *,
                     out: str | os.PathLike[str], allow_test: bool = False) -> RelabelResult:
    """Write a new manifest with the labels of a reviewed CSV (see the module doc).

    Args:
        manifest: The original ``manifest.csv`` or its folder (never modified).
        review: The review CSV (``path``, ``label``: a class name, ``exclude`` or empty).
        out: Folder of the new manifest (``manifest.csv``, ``dataset.json``, and a copy of
            the parent's ``metadata.csv`` if any); not the original's folder.
        allow_test: Accept relabelling or excluding test rows.

    Returns:
        The :class:`RelabelResult`.

    Raises:
        ConfigError: ``out`` is the original's folder, lies in the image root or cannot be
            written.
        DataError: A missing or malformed review file; a path not in the manifest, listed
            twice, or a label that is neither a class of the manifest nor ``exclude``
            (every bad row is counted, the first ones named); a test row changed without
            ``allow_test``; nothing left after the exclusions.
        ManifestError: The manifest cannot be read.
    """
    parent = read_manifest(manifest)
    review_path = Path(review).expanduser()
    out_dir = Path(out).expanduser()
    names = (MANIFEST_FILE, INFO_FILE, METADATA_FILE)
    check_outputs(folders={"--out": out_dir}, folder_files={"--out": names},
                  inputs=[parent.path, review_path], scanned=[parent.root])
    if out_dir.resolve() == parent.path.parent.resolve():
        raise ConfigError(f"--out {out_dir} is the folder of {parent.path}: the original "
                          "manifest is never modified.", "write the new manifest elsewhere")
    decisions = read_review(review_path)
    rows_by_key = {_path_key(r.path): r for r in parent.rows}
    classes = set(parent.class_names)
    problems: list[str] = []
    seen: dict[str, int] = {}
    wanted: dict[str, str] = {}
    n_undecided = 0
    for line, path, label in decisions:
        key = _path_key(path)
        if key not in rows_by_key:
            problems.append(f"line {line}: {path!r} is not in the manifest")
        elif key in seen:
            problems.append(f"line {line}: {path!r} is listed again (line {seen[key]})")
        elif label and label != EXCLUDE and label not in classes:
            problems.append(f"line {line}: label {label!r} is neither a class "
                            f"({', '.join(parent.class_names)}) nor {EXCLUDE}")
        elif not label:
            n_undecided += 1
        else:
            wanted[key] = label
        seen.setdefault(key, line)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(f"{review_path} has {len(problems)} bad row(s): "
                        f"{'; '.join(problems[:5])}{more}.",
                        f"use the manifest's paths and a class name or {EXCLUDE}")
    test_changes = [k for k, v in wanted.items()
                    if rows_by_key[k].split == "test" and v != rows_by_key[k].label]
    if test_changes and not allow_test:
        raise DataError(f"{review_path} changes {len(test_changes)} test image(s) (e.g. "
                        f"{rows_by_key[test_changes[0]].path!r}): the test split should not "
                        "be edited to raise a score.",
                        "leave test rows out of the review (report them instead), or pass "
                        "--allow-test for a correction decided without looking at scores")
    changes: Counter[str] = Counter()
    rows = []
    for row in parent.rows:
        new = wanted.get(_path_key(row.path), row.label)
        if new != row.label:
            changes[f"{row.label} -> {new}"] += 1
        if new != EXCLUDE:
            rows.append(dataclasses.replace(row, label=new))
    if not rows:
        raise DataError(f"{review_path} excludes every image of {parent.path}.",
                        "exclude fewer images")
    n_excluded = sum(n for k, n in changes.items() if k.endswith(f"-> {EXCLUDE}"))
    n_relabelled = sum(changes.values()) - n_excluded
    warnings = []
    gone = sorted(classes - {r.label for r in rows})
    if gone:
        warnings.append(f"class(es) {', '.join(gone)} have no image left: the new manifest "
                        "has fewer classes")
    review_sha = sha256_file(review_path)
    info: dict[str, Any] = {**parent.info, "root": str(parent.root), "name": parent.name}
    entry = {"parent": str(parent.path.resolve()), "parent_sha256": parent.sha256(),
             "review": str(review_path.resolve()), "review_sha256": review_sha,
             "created": now_iso(), "changes": dict(sorted(changes.items())),
             "relabelled": n_relabelled, "excluded": n_excluded,
             "confirmed": len(wanted) - sum(changes.values()), "undecided": n_undecided,
             "test_changed": len(test_changes), "allow_test": bool(allow_test),
             "previous": parent.info.get("relabel")}
    info["relabel"] = entry
    meta_file = parent.metadata_path()
    if meta_file is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / METADATA_FILE, meta_file.read_bytes())
        info["metadata"] = METADATA_FILE
    else:
        info["metadata"] = None
    path = write_manifest(rows, out_dir, info)
    return RelabelResult(manifest_path=path, manifest=read_manifest(path), parent=parent.path,
                         review=review_path, changes=entry["changes"],
                         n_relabelled=n_relabelled, n_excluded=n_excluded,
                         n_confirmed=entry["confirmed"], n_undecided=n_undecided,
                         n_test_changed=len(test_changes), warnings=warnings)


__all__ = ["EXCLUDE", "REVIEW_COLUMNS", "RelabelResult", "read_review", "relabel_manifest"]
