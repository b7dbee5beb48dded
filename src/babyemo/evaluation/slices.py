"""Parts of a split: rows whose metadata match conditions (``--where``), and metrics per
value of a metadata column (``--slice-by``), with their CSV."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babyemo import reports
from babyemo.calibration import DEFAULT_BINS, reliability_bins
from babyemo.data.preparation.manifest import Manifest
from babyemo.errors import ConfigError, DataError
from babyemo.metrics import bootstrap_ci, classification_metrics

if TYPE_CHECKING:
    from babyemo.evaluation.report import EvalResult


def parse_where(where: Mapping[str, str] | Sequence[str] | str | None) -> dict[str, str]:
    """``{column: value}`` from ``"column=value"`` strings (or a mapping, returned as a dict).

    Raises:
        ConfigError: An entry without ``=`` or with an empty column.
    """
    if where is None:
        return {}
    if isinstance(where, Mapping):
        return {str(k): str(v) for k, v in where.items()}
    items = [where] if isinstance(where, str) else list(where)
    out: dict[str, str] = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise ConfigError(f"Bad --where '{item}'.", "use COLUMN=VALUE, e.g. "
                              "fer_subset=PrivateTest")
        out[column.strip()] = value.strip()
    return out


def filter_rows(manifest: Manifest, split: str, conditions: Mapping[str, str], *,
                metadata: str | os.PathLike[str] | None = None) -> Manifest:
    """The manifest with only the ``split`` rows whose metadata matches every condition.

    Args:
        manifest: The dataset.
        split: The split to evaluate (``all``: every row).
        conditions: ``{column: value}``; a row matches when each column's value equals it
            (:data:`MISSING_VALUE` matches images without a value).
        metadata: A metadata CSV (default: the manifest's, see :func:`slice_values`).

    Raises:
        DataError: No metadata or column, or no row left.
    """
    rows = manifest.rows if split == "all" else manifest.rows_for(split)
    keep = [True] * len(rows)
    for column, value in conditions.items():
        values, _ = slice_values(manifest, [r.path for r in rows], column, metadata)
        keep = [k and v == value for k, v in zip(keep, values, strict=True)]
    kept = [r for r, k in zip(rows, keep, strict=True) if k]
    if not kept:
        wanted = ", ".join(f"{c}={v}" for c, v in conditions.items())
        raise DataError(f"No '{split}' row of {manifest.path} has {wanted}.",
                        "check the column values in the metadata CSV")
    return replace(manifest, rows=kept)


MISSING_VALUE = "(missing)"
"""Slice value of images without a metadata row or with an empty cell."""

SLICE_COLUMNS = ("n", "accuracy", "balanced_accuracy", "macro_f1", "ece")
"""Numbers reported per slice."""


def slice_values(manifest: Manifest, paths: Sequence[str], column: str,
                 metadata: str | os.PathLike[str] | None = None) -> tuple[list[str], Path]:
    """The value of a metadata column for each image path.

    Args:
        manifest: The dataset (its ``metadata.csv``, recorded in ``dataset.json``, is used
            when ``metadata`` is ``None``).
        paths: Image paths as in ``manifest.csv``.
        column: Metadata column name.
        metadata: A metadata CSV with a ``path`` column.

    Returns:
        ``(values, metadata file)``; images without a value get :data:`MISSING_VALUE`.

    Raises:
        DataError: No metadata, no such column, or no path of the CSV in the dataset.
    """
    from babyemo.data.preparation.metadata import check_metadata, read_metadata

    if metadata is not None:
        meta_path = Path(metadata)
    elif manifest.info.get("metadata"):
        meta_path = manifest.path.parent / str(manifest.info["metadata"])
    else:
        raise DataError(f"Slicing by '{column}' needs metadata, and {manifest.path} has none.",
                        "pass --metadata CSV (a path column; e.g. from `babyemo data "
                        "metadata`) or prepare the data with --metadata")
    columns, rows = read_metadata(meta_path)
    if column not in columns:
        raise DataError(f"The metadata {meta_path} has no column '{column}'.",
                        f"columns: {', '.join(columns) or 'none'}")
    check_metadata(meta_path, list(paths), rows)  # raises when no path matches
    values = [rows.get(p, {}).get(column, "") or MISSING_VALUE for p in paths]
    return values, meta_path


def slice_metrics(report: EvalResult, manifest: Manifest, column: str, *,
                  metadata: str | os.PathLike[str] | None = None, bootstrap: int = 0,
                  macro_labels: Sequence[int] | None = None,
                  n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Metrics of ``report``'s predictions per value of a metadata column.

    Each slice gets ``n``, accuracy, balanced accuracy and macro-F1
    (:func:`babyemo.metrics.classification_metrics`), its ECE, and with ``bootstrap`` their
    95% confidence intervals (:func:`babyemo.metrics.bootstrap_ci`). Small slices have
    wide intervals: compare slices by their intervals, not their point values.

    Args:
        report: An evaluation (``paths``, ``y_true``, ``y_pred``, ``probs``).
        manifest: The dataset evaluated (for its metadata).
        column: Metadata column, e.g. ``source``.
        metadata: Metadata CSV (default: the manifest's).
        bootstrap: Bootstrap resamples per slice (0 = none, else >= 100).
        macro_labels: As in :func:`babyemo.metrics.classification_metrics`.
        n_bins: ECE bins.

    Returns:
        ``{"column", "metadata", "groups": [{"value", "n", "accuracy",
        "balanced_accuracy", "macro_f1", "ece", "ci95"?}, ...]}``, groups sorted by value.

    Raises:
        DataError: See :func:`slice_values`.
    """
    values, meta_path = slice_values(manifest, report.paths, column, metadata)
    arr = np.asarray(values, dtype=object)
    groups = []
    for value in sorted(set(values)):
        idx = np.flatnonzero(arr == value)
        t, p = report.y_true[idx], report.y_pred[idx]
        m = classification_metrics(t, p, report.class_names, macro_labels=macro_labels)
        row: dict[str, Any] = {"value": value, "n": m["n"], "accuracy": m["accuracy"],
                               "balanced_accuracy": m["balanced_accuracy"],
                               "macro_f1": m["macro_f1"],
                               "ece": reliability_bins(report.probs[idx], t, n_bins).ece}
        if bootstrap:
            row["ci95"] = bootstrap_ci(t, p, report.class_names, n=bootstrap,
                                       macro_labels=macro_labels)
        groups.append(row)
    return {"column": column, "metadata": str(meta_path), "groups": groups}


def write_slices_csv(slices: dict[str, Any], path: Path) -> None:
    """Write :func:`slice_metrics` output as CSV: ``column, value, n, accuracy,
    balanced_accuracy, macro_f1, ece`` and, with bootstrap, ``<metric>_ci_low/high``."""
    with_ci = all("ci95" in g for g in slices["groups"])
    ci_keys = ["accuracy", "balanced_accuracy", "macro_f1"] if with_ci else []
    header = ["column", "value", *SLICE_COLUMNS,
              *[f"{k}_ci_{end}" for k in ci_keys for end in ("low", "high")]]
    rows = []
    for g in slices["groups"]:
        rows.append([slices["column"], g["value"], g["n"],
                     *[f"{g[k]:.4f}" for k in SLICE_COLUMNS[1:]],
                     *[f"{v:.4f}" for k in ci_keys for v in g["ci95"][k]]])
    reports.write_csv_rows(path, header, rows)
