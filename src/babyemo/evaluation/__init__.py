"""Evaluate a model on a manifest split, split by concern.

- :mod:`~babyemo.evaluation.report`: ``evaluate(...) -> EvalResult``: metrics with
  bootstrap CIs, the confusion matrix (rows = true class, columns = predicted).
- :mod:`~babyemo.evaluation.files`: with ``out``, ``report.json``, ``confusion.csv``,
  ``confusion.png`` (counts and row-normalised), ``predictions.csv`` (the schema of
  ``babyemo predict``'s CSV plus the true label), ``misclassified.png``,
  ``reliability.png`` and, with ``slice_by``, ``slices.csv``.
- :mod:`~babyemo.evaluation.calibration`: ECE before and after the checkpoint's
  temperature; ``calibrate_checkpoint`` / ``copy_calibration`` (``babyemo calibrate``).
- :mod:`~babyemo.evaluation.label_map`: cross-dataset evaluation (``--label-map``).
- :mod:`~babyemo.evaluation.slices`: ``--where`` conditions and ``--slice-by`` metrics.
- :mod:`~babyemo.evaluation.crossval`: ``train_folds(config, folds) -> FoldsResult``,
  K-fold cross-validation of a training recipe (``babyemo train --folds``): out-of-fold
  predictions ``oof.csv``, ``oof_logits.npz`` and ``cv.json`` with bootstrap CIs.
- :mod:`~babyemo.evaluation.compare`: ``compare_predictions(a, b) -> Comparison``, two
  prediction files of the same images with a paired bootstrap (``babyemo compare``).

The logits come from :class:`babyemo.inference.InferenceModel`. The names below are
imported on first use, so that ``babyemo.evaluation.compare`` loads without torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from babyemo.evaluation.calibration import (
        calibrate_checkpoint,
        calibration_report,
        copy_calibration,
    )
    from babyemo.evaluation.compare import Comparison, compare_predictions
    from babyemo.evaluation.crossval import FoldResult, FoldsResult, train_folds
    from babyemo.evaluation.files import REPORT_FILES, write_eval_reports
    from babyemo.evaluation.label_map import apply_label_map, parse_label_map, resolve_label_map
    from babyemo.evaluation.report import EvalReport, EvalResult, evaluate
    from babyemo.evaluation.slices import (
        MISSING_VALUE,
        SLICE_COLUMNS,
        filter_rows,
        parse_where,
        slice_metrics,
        slice_values,
        write_slices_csv,
    )

_LAZY = {
    "calibrate_checkpoint": "calibration", "calibration_report": "calibration",
    "copy_calibration": "calibration",
    "Comparison": "compare", "compare_predictions": "compare",
    "FoldResult": "crossval", "FoldsResult": "crossval", "train_folds": "crossval",
    "REPORT_FILES": "files", "write_eval_reports": "files",
    "apply_label_map": "label_map", "parse_label_map": "label_map",
    "resolve_label_map": "label_map",
    "EvalReport": "report", "EvalResult": "report", "evaluate": "report",
    "MISSING_VALUE": "slices", "SLICE_COLUMNS": "slices", "filter_rows": "slices",
    "parse_where": "slices", "slice_metrics": "slices", "slice_values": "slices",
    "write_slices_csv": "slices",
}

__all__ = ["MISSING_VALUE", "REPORT_FILES", "SLICE_COLUMNS", "Comparison", "EvalReport",
           "EvalResult", "FoldResult", "FoldsResult", "apply_label_map", "calibrate_checkpoint",
           "calibration_report", "compare_predictions", "copy_calibration", "evaluate",
           "filter_rows", "parse_label_map", "parse_where", "resolve_label_map",
           "slice_metrics", "slice_values", "train_folds", "write_eval_reports",
           "write_slices_csv"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
