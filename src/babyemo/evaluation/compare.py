"""Compare two models on the same images: ``compare_predictions(a, b) -> Comparison``.

A recipe choice made on one small split is noise unless the difference survives the
resampling of its images. This compares two prediction files of the *same* images, paired
by path: the out-of-fold ``oof.csv`` of two ``babyemo train --folds`` runs on one manifest,
or the ``predictions.csv`` of two ``babyemo evaluate --out`` on one split. It gives each
one's macro-F1, balanced accuracy and accuracy, and the difference ``B - A`` with a
*paired* bootstrap interval (:func:`babyemo.metrics.paired_bootstrap`: each resample draws
the images once and scores both on them), and a verdict on macro-F1.

Standard library, numpy and scikit-learn only (no torch): ``babyemo compare`` starts fast.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babyemo.errors import DataError
from babyemo.metrics import BOOTSTRAP_METRICS, paired_bootstrap

PREDICTION_FILES = ("oof.csv", "predictions.csv")
"""The prediction file a folder stands for, first found: a folds run's out-of-fold
predictions, else an ``evaluate --out`` folder's."""

PRIMARY_METRIC = "macro_f1"
"""The metric of :attr:`Comparison.verdict`."""

B_BETTER = "B better"
A_BETTER = "A better"
NO_DIFFERENCE = "no difference the data can show"
VERDICTS = (B_BETTER, A_BETTER, NO_DIFFERENCE)
"""A verdict: the interval of ``B - A`` lies above 0, below 0, or covers 0."""

_HINT = ("compare predictions of the same images: the oof.csv of two `babyemo train --folds` "
         "runs on one manifest, or the predictions.csv of two `babyemo evaluate --out` on "
         "one split")


@dataclass
class PredictionFile:
    """A prediction CSV with a ``true`` column, read by :func:`read_predictions`.

    Attributes:
        path: The CSV file.
        class_names: The classes of its ``prob_<class>`` columns, in column order.
        rows: ``{path: (true label, predicted label)}``, in file order.
    """

    path: Path
    class_names: list[str]
    rows: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class Comparison:
    """Two predictions of the same images compared (:func:`compare_predictions`).

    Attributes:
        a: A's prediction file.
        b: B's prediction file.
        n: Images compared (paired by path).
        class_names: The classes (A's ``prob_`` column order, then any other label).
        metrics: ``{metric: {"a", "b", "difference", "ci": [low, high], "verdict"}}`` for
            ``accuracy``, ``balanced_accuracy`` and ``macro_f1`` (see
            :func:`babyemo.metrics.paired_bootstrap`); ``difference`` is ``b - a``.
        verdict: On macro-F1: ``"B better"`` (the interval lies above 0), ``"A better"``
            (below 0) or ``"no difference the data can show"`` (it covers 0).
        n_bootstrap: Paired resamples.
        seed: Seed of the resampling.
        level: Confidence level of the intervals.
        agreement: Fraction of images on which A and B predict the same class.
    """

    a: Path
    b: Path
    n: int
    class_names: list[str]
    metrics: dict[str, dict[str, Any]]
    verdict: str
    n_bootstrap: int
    seed: int
    level: float = 0.95
    agreement: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (``babyemo compare --json``)."""
        return {"a": str(self.a), "b": str(self.b), "n": self.n,
                "class_names": list(self.class_names), "metrics": self.metrics,
                "primary_metric": PRIMARY_METRIC, "verdict": self.verdict,
                "agreement": self.agreement, "n_bootstrap": self.n_bootstrap,
                "seed": self.seed, "level": self.level}


def prediction_file(path: str | os.PathLike[str]) -> Path:
    """The prediction CSV that ``path`` names: the file itself, or in a folder the first
    of :data:`PREDICTION_FILES` (a folds run folder, an ``evaluate --out`` folder).

    Raises:
        DataError: Nothing there, or a folder without one of those files.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        for name in PREDICTION_FILES:
            if (p / name).is_file():
                return p / name
        raise DataError(f"{p} holds no {' or '.join(PREDICTION_FILES)}.",
                        "give a folds run folder, an `evaluate --out` folder, or a CSV file")
    if not p.is_file():
        raise DataError(f"No prediction file at {p}.", _HINT)
    return p


def read_predictions(path: str | os.PathLike[str]) -> PredictionFile:
    """Read a prediction CSV that has ``path``, ``true`` and ``label`` columns (the row
    schema of :mod:`babyemo.rows`, as evaluation's ``predictions.csv`` and a folds run's
    ``oof.csv`` write it); a folder stands for its :func:`prediction_file`.

    Raises:
        DataError: No such file, not a CSV with those columns (e.g. ``babyemo predict``'s
            output, which has no ``true`` column), no rows, a path on two rows, or a row
            without a prediction (an ``error``).
    """
    file = prediction_file(path)
    try:
        with open(file, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            missing = [c for c in ("path", "true", "label") if c not in header]
            if missing:
                raise DataError(f"{file} has no {', '.join(missing)} column(s) (columns: "
                                f"{', '.join(header) or 'none'}).",
                                "compare labelled predictions: " + _HINT)
            out = PredictionFile(file, [c[len("prob_"):] for c in header
                                        if c.startswith("prob_")])
            for line, row in enumerate(reader, start=2):
                key = row.get("path") or ""
                if key in out.rows:
                    raise DataError(f"{file}, line {line}: {key!r} is on two rows.",
                                    "each image once: " + _HINT)
                true, label = (row.get("true") or "").strip(), (row.get("label") or "").strip()
                if not true or not label:
                    what = (f"no prediction (error {row.get('error') or 'unknown'})" if true
                            else "no true label")
                    raise DataError(f"{file}, line {line}: {key!r} has {what}.",
                                    "compare files whose every image was classified")
                out.rows[key] = (true, label)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"Cannot read {file} ({e}).", _HINT) from e
    if not out.rows:
        raise DataError(f"{file} has no rows.", _HINT)
    return out


def _check_pairs(a: PredictionFile, b: PredictionFile) -> None:
    """Refuse two files that are not predictions of the same labelled images."""
    if set(a.class_names) != set(b.class_names):
        raise DataError(f"The class names differ: {a.path} has {a.class_names}, {b.path} "
                        f"has {b.class_names}.", "compare models of the same classes")
    only_a = [p for p in a.rows if p not in b.rows]
    only_b = [p for p in b.rows if p not in a.rows]
    if only_a or only_b:
        example = (f"{only_a[0]!r} only in A" if only_a else f"{only_b[0]!r} only in B")
        raise DataError(f"The two files are not predictions of the same images: A "
                        f"({a.path}) has {len(a.rows)} rows, B ({b.path}) {len(b.rows)}; "
                        f"{len(only_a)} path(s) only in A, {len(only_b)} only in B (e.g. "
                        f"{example}).", _HINT)
    differ = [p for p, (true, _) in a.rows.items() if b.rows[p][0] != true]
    if differ:
        p = differ[0]
        raise DataError(f"{len(differ)} image(s) have different true labels in the two files "
                        f"(e.g. {p!r}: {a.rows[p][0]!r} in A, {b.rows[p][0]!r} in B).",
                        "compare predictions made on the same manifest")


def verdict(ci: list[float] | tuple[float, float]) -> str:
    """The verdict of an interval of ``B - A``: :data:`VERDICTS`."""
    low, high = ci
    if low > 0:
        return B_BETTER
    if high < 0:
        return A_BETTER
    return NO_DIFFERENCE


def compare_predictions(a: str | os.PathLike[str], b: str | os.PathLike[str], *,
                        n_bootstrap: int = 1000, seed: int = 0,
                        level: float = 0.95) -> Comparison:
    """Compare two prediction files of the same images with a paired bootstrap.

    Args:
        a: A's prediction CSV (``path``, ``true``, ``label``, ``prob_<class>``... columns),
            or a folder: a folds run (its ``oof.csv``) or an ``evaluate --out`` folder (its
            ``predictions.csv``).
        b: B's, the same way; its rows may come in another order (paired by ``path``).
        n_bootstrap: Paired resamples (>= 100).
        seed: Seed of the resampling (the result is deterministic for a seed).
        level: Confidence level of the intervals, in (0, 1).

    Returns:
        The :class:`Comparison`; its ``difference`` is always ``B - A``.

    Raises:
        DataError: A file is missing or unreadable, lacks the ``true`` column, or the two
            differ in their images (paths), their class names or their true labels.
        ConfigError: ``n_bootstrap < 100`` or ``level`` outside (0, 1).
    """
    fa, fb = read_predictions(a), read_predictions(b)
    _check_pairs(fa, fb)
    classes = list(fa.class_names)
    seen = {label for true, pred in fa.rows.values() for label in (true, pred)}
    seen |= {pred for _, pred in fb.rows.values()}
    classes += sorted(seen - set(classes))
    index = {c: i for i, c in enumerate(classes)}
    paths = list(fa.rows)
    y_true = np.array([index[fa.rows[p][0]] for p in paths], dtype=np.int64)
    pred_a = np.array([index[fa.rows[p][1]] for p in paths], dtype=np.int64)
    pred_b = np.array([index[fb.rows[p][1]] for p in paths], dtype=np.int64)
    metrics = paired_bootstrap(y_true, pred_a, pred_b, classes, n=n_bootstrap, seed=seed,
                               level=level)
    for m in BOOTSTRAP_METRICS:
        metrics[m]["verdict"] = verdict(metrics[m]["ci"])
    return Comparison(a=fa.path, b=fb.path, n=len(paths), class_names=classes,
                      metrics=metrics, verdict=metrics[PRIMARY_METRIC]["verdict"],
                      n_bootstrap=n_bootstrap, seed=seed, level=level,
                      agreement=float(np.mean(pred_a == pred_b)))


__all__ = ["A_BETTER", "B_BETTER", "NO_DIFFERENCE", "PREDICTION_FILES", "PRIMARY_METRIC",
           "VERDICTS", "Comparison", "PredictionFile", "compare_predictions",
           "prediction_file", "read_predictions", "verdict"]
