"""Classification metrics for single-label predictions (wrappers around scikit-learn).

Every number comes from :mod:`sklearn.metrics` (Pedregosa et al., 2011,
https://scikit-learn.org/stable/modules/model_evaluation.html). Definitions used here:

- **accuracy**: fraction of samples whose predicted class equals the true class.
- **balanced accuracy**: mean over classes of per-class recall (Brodersen et al., 2010,
  "The balanced accuracy and its posterior distribution", ICPR); robust to class imbalance.
- **macro-F1**: unweighted mean over classes of per-class F1, where
  ``F1 = 2 * precision * recall / (precision + recall)``; every class counts the same
  however rare it is.
- **weighted-F1**: mean of per-class F1 weighted by each class's support (number of true
  samples).

Undefined ratios (e.g. the precision of a class that is never predicted) are 0
(``zero_division=0``), so the results never contain NaN and are JSON-safe.

Bootstrap resamples (:func:`bootstrap_ci`, :func:`paired_bootstrap`) are scored from their
confusion matrices in numpy by these same definitions (equal to scikit-learn's values; see
the tests), thousands of resamples at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from babyemo.errors import ConfigError

__all__ = ["classification_metrics", "per_class_accuracy"]


def _check_labels(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Validate inputs and return them as 1-D ``int64`` arrays.

    Raises:
        ConfigError: Empty input, mismatched shapes, non-integer values or indices outside
            ``[0, len(class_names))``.
    """
    k = len(class_names)
    if k == 0:
        raise ConfigError("class_names is empty.", "pass the class names in logit order")
    arrays = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        a = np.asarray(y)
        if a.ndim != 1:
            raise ConfigError(f"{name} must be 1-D (N,), got shape {a.shape}.",
                              "pass class indices, not one-hot vectors or logits")
        if a.size and a.dtype.kind not in "iu":
            if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                a = a.astype(np.int64)
            else:
                raise ConfigError(f"{name} must hold integer class indices, got dtype {a.dtype}.",
                                  "take argmax of the logits first")
        arrays.append(a.astype(np.int64, copy=False))
    t, p = arrays
    if t.size == 0:
        raise ConfigError("Cannot compute metrics on zero samples.",
                          "check that the split is not empty")
    if t.shape != p.shape:
        raise ConfigError(f"y_true has {t.size} samples but y_pred has {p.size}.",
                          "pass one prediction per sample")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.min() < 0 or a.max() >= k:
            bad = int(a[(a < 0) | (a >= k)][0])
            raise ConfigError(f"{name} contains class index {bad}, outside 0..{k - 1}.",
                              f"there are {k} class names: {', '.join(class_names)}")
    return t, p


def classification_metrics(y_true: Any, y_pred: Any, class_names: Sequence[str], *,
                           macro_labels: Sequence[int] | None = None) -> dict[str, Any]:
    """Summarise single-label predictions against the truth.

    Args:
        y_true: True class indices, shape ``(N,)``, integers in ``[0, K)``.
        y_pred: Predicted class indices, shape ``(N,)``, integers in ``[0, K)``.
        class_names: The ``K`` class names; index ``i`` names class ``i``.
        macro_labels: Class indices the macro-F1 may average over (default: all ``K``).
            Used when the model has classes the data cannot have (cross-dataset
            evaluation): predictions of the other classes are still wrong (they lower
            accuracy and the recall of the true class) but those classes add no F1 = 0
            term to the mean.

    Returns:
        A JSON-safe dict (Python ``int``/``float``/``list`` only, no NaN):

        - ``n``: number of samples.
        - ``accuracy``: :func:`sklearn.metrics.accuracy_score`.
        - ``balanced_accuracy``: mean per-class recall
          (:func:`sklearn.metrics.balanced_accuracy_score`; Brodersen et al., 2010).
          Classes with no true samples have no recall and are left out of the mean;
          scikit-learn's warnings about predicted classes absent from ``y_true`` and about
          a single label are silenced.
        - ``macro_f1``: unweighted mean of per-class F1
          (:func:`sklearn.metrics.f1_score`, ``average="macro"``) over the classes present
          in ``y_true`` or ``y_pred`` (scikit-learn's default label set): a class absent
          from both is not counted as F1 = 0, whereas a class only predicted (never true)
          counts with F1 = 0 (unless ``macro_labels`` leaves it out).
        - ``weighted_f1``: per-class F1 weighted by support (``average="weighted"``).
        - ``per_class``: ``{name: {"precision", "recall", "f1", "support"}}`` for all ``K``
          classes (:func:`sklearn.metrics.precision_recall_fscore_support`); undefined
          values are 0 (``zero_division=0``).
        - ``confusion_matrix``: ``K x K`` list of lists of ``int``; rows are true classes,
          columns predicted classes (:func:`sklearn.metrics.confusion_matrix` with
          ``labels=range(K)``, so absent classes still have a row and a column).

    Raises:
        ConfigError: Empty input, shapes that differ or are not ``(N,)``, non-integer
            values, or class indices outside ``[0, K)``.
    """
    t, p = _check_labels(y_true, y_pred, class_names)
    labels = list(range(len(class_names)))
    present = _macro_set(t, p, macro_labels)
    with warnings.catch_warnings():
        # sklearn warns "y_pred contains classes not in y_true" and drops those classes
        # from the mean recall; that is the documented behaviour we want. Its internal
        # confusion matrix also warns when a single label occurs (result still correct).
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        warnings.filterwarnings("ignore", message=".*single label was found.*")
        balanced = balanced_accuracy_score(t, p)
    precision, recall, f1, support = precision_recall_fscore_support(
        t, p, labels=labels, zero_division=0)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    cm = confusion_matrix(t, p, labels=labels)
    return {
        "n": int(t.size),
        "accuracy": float(accuracy_score(t, p)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(t, p, labels=labels, average="weighted",
                                      zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": cm.astype(int).tolist(),
    }


def confusion_counts(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """The confusion matrix ``(K, K) int64`` of class indices (rows true, columns
    predicted), the form in which processes of a distributed run add up their predictions
    (sums of counts, never means of per-process means).

    Args:
        y_true: True class indices ``(N,)`` in ``[0, K)``.
        y_pred: Predicted class indices ``(N,)`` in ``[0, K)``.
        num_classes: ``K``.
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def labels_from_confusion(cm: Any) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted class indices ``(N,) int64`` with confusion matrix ``cm``
    (``(K, K)`` counts, rows true): ``cm[i, j]`` pairs ``(i, j)``, in row-major order.

    Every metric of :func:`classification_metrics` depends on the pairs only through their
    counts, so ``classification_metrics(*labels_from_confusion(cm), names)`` scores summed
    confusion counts exactly as scikit-learn scores the original predictions.
    """
    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    if cm.ndim != 2 or cm.shape[1] != k or (cm < 0).any():
        raise ConfigError(f"A confusion matrix must be K x K non-negative counts; got shape "
                          f"{cm.shape}.")
    codes = np.repeat(np.arange(k * k), cm.ravel())
    return codes // k, codes % k


def _macro_set(t: np.ndarray, p: np.ndarray, macro_labels: Sequence[int] | None) -> list[int]:
    """Classes present in ``t`` or ``p``, restricted to ``macro_labels`` when given."""
    present = set(np.unique(t).tolist()) | set(np.unique(p).tolist())
    if macro_labels is not None:
        present &= {int(k) for k in macro_labels}
    return sorted(present) or sorted(set(np.unique(t).tolist()))


def per_class_accuracy(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> dict[str, float]:
    """Per-class accuracy, i.e. recall: correct predictions of a class / its true samples.

    Computed with :func:`sklearn.metrics.precision_recall_fscore_support`.

    Args:
        y_true: True class indices, shape ``(N,)``, integers in ``[0, K)``.
        y_pred: Predicted class indices, shape ``(N,)``, integers in ``[0, K)``.
        class_names: The ``K`` class names.

    Returns:
        ``{class_name: recall}`` in class order; classes with no true samples are omitted
        (their recall is undefined), so no value is NaN.

    Raises:
        ConfigError: As :func:`classification_metrics`.
    """
    t, p = _check_labels(y_true, y_pred, class_names)
    labels = list(range(len(class_names)))
    _, recall, _, support = precision_recall_fscore_support(
        t, p, labels=labels, zero_division=0)
    return {name: float(recall[i]) for i, name in enumerate(class_names) if support[i] > 0}


BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
"""Metrics that :func:`bootstrap_ci` gives intervals for."""


def bootstrap_ci(y_true: Any, y_pred: Any, class_names: Sequence[str], *, n: int = 1000,
                 seed: int = 0, level: float = 0.95,
                 macro_labels: Sequence[int] | None = None) -> dict[str, Any]:
    """Percentile bootstrap confidence intervals of accuracy, balanced accuracy, macro-F1.

    The evaluated images are resampled with replacement ``n`` times (Efron & Tibshirani,
    1993, *An Introduction to the Bootstrap*, percentile method); each metric's interval is
    the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of its ``n`` values. This
    covers sampling error of the test set only, not training randomness. Each resample is
    scored from its confusion matrix in numpy, by the definitions of
    :func:`classification_metrics` (vectorised: 1,000 resamples take milliseconds, not the
    seconds of 4,000 scikit-learn calls).

    Args:
        y_true: True class indices, shape ``(N,)``.
        y_pred: Predicted class indices, shape ``(N,)``.
        class_names: Class names (defines ``K``).
        n: Number of resamples (>= 100).
        seed: Seed of the resampling (results are deterministic for a seed).
        level: Confidence level in (0, 1).
        macro_labels: As in :func:`classification_metrics`.

    Returns:
        ``{metric: [low, high]}`` for the metrics of :data:`BOOTSTRAP_METRICS`, plus
        ``"per_class": {class: {"recall": [low, high], "f1": [low, high]}}`` (from the
        same resamples).

    Raises:
        ConfigError: Bad inputs, ``n < 100`` or ``level`` outside (0, 1).
    """
    t, p = _check_labels(y_true, y_pred, class_names)
    if not isinstance(n, int) or n < 100:
        raise ConfigError(f"The number of bootstrap resamples must be an int >= 100. Got {n!r}.")
    if not 0 < level < 1:
        raise ConfigError(f"The confidence level must be in (0, 1). Got {level!r}.")
    k = len(class_names)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in (*BOOTSTRAP_METRICS, "recall", "f1")}
    for size in _chunks(n, len(t)):  # the draws of one resample after another, in blocks
        scores = _confusion_scores(_confusions(t, p, k, rng.integers(0, len(t), (size, len(t)))),
                                   macro_labels)
        for m, v in scores.items():
            parts[m].append(v)
    values = {m: np.concatenate(v) for m, v in parts.items()}
    q = [(1 - level) / 2, (1 + level) / 2]
    out: dict[str, Any] = {m: [float(v) for v in np.quantile(values[m], q)]
                           for m in BOOTSTRAP_METRICS}
    out["per_class"] = {c: {"recall": [float(v) for v in np.quantile(values["recall"][:, j], q)],
                            "f1": [float(v) for v in np.quantile(values["f1"][:, j], q)]}
                        for j, c in enumerate(class_names)}
    return out


def _chunks(n: int, size: int, budget: int = 4_000_000) -> list[int]:
    """Resamples per block so that a block's indices stay under ``budget`` elements."""
    step = max(1, min(n, budget // max(size, 1)))
    return [min(step, n - start) for start in range(0, n, step)]


def _confusions(t: np.ndarray, p: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    """Confusion matrices ``(B, K, K)`` (rows true, columns predicted) of the resamples
    ``idx`` ``(B, N)`` of true ``t`` and predicted ``p`` class indices."""
    offset = (np.arange(len(idx)) * k * k)[:, None]
    codes = (offset + t[idx] * k + p[idx]).ravel()
    return np.bincount(codes, minlength=len(idx) * k * k).reshape(-1, k, k)


def _confusion_scores(cm: np.ndarray, macro_labels: Sequence[int] | None = None
                      ) -> dict[str, np.ndarray]:
    """The scores of :func:`classification_metrics` from confusion matrices.

    Args:
        cm: ``(B, K, K)`` counts, rows true classes, columns predicted classes.
        macro_labels: As in :func:`classification_metrics`.

    Returns:
        ``{metric: (B,) float64}`` for the metrics of :data:`BOOTSTRAP_METRICS`, plus
        ``recall`` and ``f1`` ``(B, K)``: recall ``TP / (TP + FN)``, F1
        ``2 TP / (2 TP + FP + FN)`` (0 where undefined, ``zero_division=0``). Balanced
        accuracy is the mean recall over the classes with true samples; macro-F1 the mean
        F1 over the classes true or predicted (scikit-learn's label set; of them, those in
        ``macro_labels``, else the true classes: see :func:`_macro_set`).
    """
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    true_n, pred_n = cm.sum(axis=2), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true_n > 0, tp / true_n, 0.0)
        f1 = np.where(true_n + pred_n > 0, 2 * tp / (true_n + pred_n), 0.0)
    macro = (true_n + pred_n) > 0
    if macro_labels is not None:
        keep = np.zeros(cm.shape[1], dtype=bool)
        keep[[int(c) for c in macro_labels if 0 <= int(c) < cm.shape[1]]] = True
        macro = macro & keep
        empty = ~macro.any(axis=1)
        macro[empty] = true_n[empty] > 0
    return {"accuracy": tp.sum(axis=1) / cm.sum(axis=(1, 2)),
            "balanced_accuracy": recall.sum(axis=1) / (true_n > 0).sum(axis=1),
            "macro_f1": (f1 * macro).sum(axis=1) / macro.sum(axis=1),
            "recall": recall, "f1": f1}


def paired_bootstrap(y_true: Any, pred_a: Any, pred_b: Any, class_names: Sequence[str], *,
                     n: int = 1000, seed: int = 0, level: float = 0.95
                     ) -> dict[str, dict[str, Any]]:
    """Paired percentile bootstrap of the difference ``B - A`` between two predictions of
    the same images: accuracy, balanced accuracy and macro-F1.

    Each of the ``n`` resamples draws the images with replacement once and scores *both*
    predictions on the same draw (Efron & Tibshirani, 1993, *An Introduction to the
    Bootstrap*, percentile method; paired as in Koehn, 2004, "Statistical Significance
    Tests for Machine Translation Evaluation", EMNLP). The interval of a difference is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of its ``n`` resampled values;
    pairing removes the variation the two share (which images are easy), so it is much
    narrower than comparing two separate intervals. It covers the sampling of the images
    only, not the randomness of training.

    The scores are those of :func:`classification_metrics` (no ``macro_labels``),
    computed from per-resample confusion matrices in numpy, as in :func:`bootstrap_ci`.

    Args:
        y_true: True class indices, shape ``(N,)``, integers in ``[0, K)``.
        pred_a: Class indices predicted by A, shape ``(N,)``.
        pred_b: Class indices predicted by B, shape ``(N,)``, for the same images in the
            same order.
        class_names: The ``K`` class names.
        n: Number of resamples (>= 100).
        seed: Seed of the resampling (deterministic for a seed).
        level: Confidence level in (0, 1).

    Returns:
        ``{metric: {"a", "b", "difference", "ci": [low, high]}}`` for the metrics of
        :data:`BOOTSTRAP_METRICS`: the two scores on all images, ``b - a``, and the
        interval of the difference (plain floats, JSON-safe).

    Raises:
        ConfigError: Bad inputs (see :func:`classification_metrics`), predictions of
            different lengths, ``n < 100`` or ``level`` outside (0, 1).
    """
    t, a = _check_labels(y_true, pred_a, class_names)
    _, b = _check_labels(y_true, pred_b, class_names)
    if not isinstance(n, int) or n < 100:
        raise ConfigError(f"The number of bootstrap resamples must be an int >= 100. Got {n!r}.")
    if not 0 < level < 1:
        raise ConfigError(f"The confidence level must be in (0, 1). Got {level!r}.")
    k, size = len(class_names), len(t)
    everything = np.arange(size)[None, :]
    point_a = _confusion_scores(_confusions(t, a, k, everything))
    point_b = _confusion_scores(_confusions(t, b, k, everything))
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in BOOTSTRAP_METRICS}
    for block in _chunks(n, size):
        idx = rng.integers(0, size, (block, size))  # one draw, both predictions scored on it
        sa = _confusion_scores(_confusions(t, a, k, idx))
        sb = _confusion_scores(_confusions(t, b, k, idx))
        for m in BOOTSTRAP_METRICS:
            diffs[m].append(sb[m] - sa[m])
    q = [(1 - level) / 2, (1 + level) / 2]
    out: dict[str, dict[str, Any]] = {}
    for m in BOOTSTRAP_METRICS:
        va, vb = float(point_a[m][0]), float(point_b[m][0])
        out[m] = {"a": va, "b": vb, "difference": vb - va,
                  "ci": [float(v) for v in np.quantile(np.concatenate(diffs[m]), q)]}
    return out
