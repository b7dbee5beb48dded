"""Per-image metadata CSVs: read them, check them against a dataset, group subjects.

A metadata CSV has a ``path`` column (image paths as in ``manifest.csv``) and any of
:data:`METADATA_COLUMNS` or other columns. Images that share a ``subject_id`` are kept in
one split by :func:`babyemo.data.preparation.prepare.prepare` and
:func:`babyemo.data.preparation.prepare.split_manifest`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from babyemo.errors import DataError

METADATA_COLUMNS = ("age_months", "sex", "skin_tone", "ethnicity", "source", "subject_id")
"""Documented metadata columns (besides the required ``path``); other columns are kept."""


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


def subject_groups(paths_: Sequence[str], rows: dict[str, dict[str, str]]) -> list[list[int]]:
    """Indices of images that share a ``subject_id`` (groups of two or more).

    Args:
        paths_: Image paths of the dataset, in manifest order.
        rows: Metadata by path, as returned by :func:`read_metadata`.

    Returns:
        One list of indices into ``paths_`` per subject with more than one image.
    """
    by_subject: dict[str, list[int]] = {}
    for i, rel in enumerate(paths_):
        subject = rows.get(rel, {}).get("subject_id", "")
        if subject:
            by_subject.setdefault(subject, []).append(i)
    return [g for g in by_subject.values() if len(g) > 1]


def check_metadata(path: Path, paths_: Sequence[str], rows: dict[str, dict[str, str]]
                   ) -> list[str]:
    """Check that a metadata CSV describes the dataset.

    Args:
        path: The metadata CSV (for messages).
        paths_: Image paths of the dataset.
        rows: Metadata by path, as returned by :func:`read_metadata`.

    Returns:
        Warnings: rows naming images not in the dataset, images without a row.

    Raises:
        DataError: No row of the CSV names an image of the dataset.
    """
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


__all__ = ["METADATA_COLUMNS", "check_metadata", "read_metadata", "subject_groups"]
