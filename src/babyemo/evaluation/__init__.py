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

The logits come from :class:`babyemo.inference.InferenceModel`.
"""

from babyemo.evaluation.calibration import (
    calibrate_checkpoint,
    calibration_report,
    copy_calibration,
)
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

__all__ = ["MISSING_VALUE", "REPORT_FILES", "SLICE_COLUMNS", "EvalReport", "EvalResult",
           "apply_label_map", "calibrate_checkpoint", "calibration_report", "copy_calibration",
           "evaluate", "filter_rows", "parse_label_map", "parse_where", "resolve_label_map",
           "slice_metrics", "slice_values", "write_eval_reports", "write_slices_csv"]
